"""Tracking metrics: hard links, chained tracks, space-time ARI, matching accuracy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from cutslots.metrics import (
    chain_identities,
    evaluate_tracks,
    hard_links,
    matching_accuracy,
    track_labels,
)

# ----------------------------------------------------------------- hand-built clips

# sigma[t][g]: the slot holding object g (0 = background) in frame t.
SIGMA = np.array([[0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 2, 1]])


def _clip() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """true (1, T, 6, 6) with objects 0..2 in every frame, masks (1, T, 3, 6, 6) whose argmax
    slot of object g in frame t is SIGMA[t, g], and soft matchings (1, T-1, 3, 3) linking them."""
    rng = np.random.default_rng(0)
    steps = len(SIGMA)
    true = rng.integers(0, 3, size=(1, steps, 6, 6))
    true[0, :, 0, :3] = [0, 1, 2]  # every object visible in every frame
    slot = SIGMA[np.arange(steps)[:, None, None], true[0]]  # (T, 6, 6)
    masks = 0.5 * np.eye(3)[slot].transpose(0, 3, 1, 2) + 0.4 * rng.random((steps, 3, 6, 6))
    matchings = np.full((steps - 1, 3, 3), 0.15)
    for t in range(steps - 1):
        matchings[t, SIGMA[t], SIGMA[t + 1]] = 0.7
    return true, masks[None], matchings[None]


@pytest.mark.parametrize("method", ["hungarian", "argmax"])
def test_chained_permutations_give_perfect_space_time_scores(method: str) -> None:
    true, masks, matchings = _clip()
    tracks = track_labels(masks, matchings, method)
    assert adjusted_rand_score(true.ravel(), tracks.ravel()) == pytest.approx(1.0)
    np.testing.assert_array_equal(tracks, true)  # frame 0's slot order is SIGMA[0] = identity
    scores = evaluate_tracks(true, masks, matchings, method)
    np.testing.assert_allclose(scores["ari"], [1.0])
    np.testing.assert_allclose(scores["ari_fg"], [1.0])
    np.testing.assert_allclose(scores["matching_accuracy"], [1.0])


@pytest.mark.parametrize("method", ["hungarian", "argmax"])
def test_one_broken_link_swaps_two_objects_from_then_on(method: str) -> None:
    true, masks, matchings = _clip()
    # Pair (1, 2) links object 1 to object 2's slot and vice versa.
    matchings[0, 1][:, [SIGMA[2, 1], SIGMA[2, 2]]] = matchings[0, 1][:, [SIGMA[2, 2], SIGMA[2, 1]]]
    expected = true.copy()
    expected[:, 2:] = np.array([0, 2, 1])[true[:, 2:]]  # objects 1 and 2 trade tracks from frame 2
    np.testing.assert_array_equal(track_labels(masks, matchings, method), expected)
    scores = evaluate_tracks(true, masks, matchings, method)
    want_ari = adjusted_rand_score(true.ravel(), expected.ravel())
    fg = true.ravel() != 0
    want_fg = adjusted_rand_score(true.ravel()[fg], expected.ravel()[fg])
    assert want_ari < 0.9
    np.testing.assert_allclose(scores["ari"], [want_ari])
    np.testing.assert_allclose(scores["ari_fg"], [want_fg])
    # Objects 1, 2 in each of 3 pairs: both wrong at pair (1, 2) -> 4 / 6.
    np.testing.assert_allclose(scores["matching_accuracy"], [4 / 6])


def test_hard_links_hand_case_argmax_may_merge_hungarian_does_not() -> None:
    m = np.array([[[[0.6, 0.5, 0.0], [0.4, 0.45, 0.1], [0.0, 0.05, 0.9]]]])
    np.testing.assert_array_equal(hard_links(m, "argmax"), [[[0, 0, 2]]])
    np.testing.assert_array_equal(hard_links(m, "hungarian"), [[[0, 1, 2]]])  # 1.95 > 1.8


def test_hungarian_links_maximise_the_total_weight() -> None:
    m = np.random.default_rng(3).random((2, 2, 4, 4))
    links = hard_links(m, "hungarian")
    for b, t in itertools.product(range(2), range(2)):
        best = max(itertools.permutations(range(4)), key=lambda p: sum(m[b, t, i, p[i]] for i in range(4)))
        np.testing.assert_array_equal(links[b, t, list(best)], np.arange(4))  # links[j] = i with best[i] = j


def test_chain_identities_hand_case() -> None:
    ids = chain_identities(np.array([[[1, 2, 0], [0, 0, 2]]]))
    np.testing.assert_array_equal(ids, [[[0, 1, 2], [1, 2, 0], [1, 1, 0]]])


def test_matching_accuracy_hand_cases() -> None:
    true = np.zeros((2, 3, 1, 8), dtype=np.int64)
    true[0, :, 0] = [[0, 1, 1, 1, 2, 2, 3, 3], [0, 1, 1, 2, 2, 2, 0, 0], [2, 2, 1, 1, 0, 0, 3, 3]]
    slot = np.zeros_like(true)
    slot[0, :, 0] = [[0, 2, 2, 1, 1, 1, 0, 0], [1, 0, 0, 2, 2, 2, 1, 1], [0, 1, 2, 1, 0, 0, 0, 0]]
    # Majority slots: frame 0: obj 1 -> 2, obj 2 -> 1 (obj 3 leaves in frame 1: no event);
    # frame 1: obj 1 -> 0, obj 2 -> 2; frame 2 (ties -> lowest slot): obj 1 -> 1, obj 2 -> 0.
    links = np.array([[[2, 1, 0], [2, 0, 1]], [[0, 1, 2], [0, 1, 2]]])
    # Pair 0: links[0][0] = 2 right, links[0][2] = 0 != 1 wrong; pair 1: links[1][1] = 0 and
    # links[1][0] = 2 right -> 3 / 4. Clip 1 is all background: no event, NaN.
    scores = matching_accuracy(true, slot, links)
    np.testing.assert_allclose(scores, [0.75, np.nan])


# ----------------------------------------------------------------- errors


def test_bad_input_errors() -> None:
    true, masks, matchings = _clip()
    with pytest.raises(ValueError, match=r"does not fit matchings.*expected B=1, T=3, K=3"):
        evaluate_tracks(true, masks, matchings[:, :2])
    with pytest.raises(ValueError, match=r"true_labels must have shape \(B, T, H, W\) = \(1, 4, 6, 6\)"):
        evaluate_tracks(true[:, :3], masks, matchings)
    with pytest.raises(ValueError, match=r"matchings must have shape \(B, T-1, K, K\)"):
        track_labels(masks, matchings[..., :2])
    with pytest.raises(ValueError, match="matchings contains NaN"):
        hard_links(np.full((1, 1, 2, 2), np.nan))
    with pytest.raises(ValueError, match="method must be one of"):
        hard_links(matchings, "greedy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"links must lie in \[0, K=3\)"):
        chain_identities(np.array([[[0, 3, 1]]]))
    with pytest.raises(ValueError, match=r"slot_labels must lie in \[0, K=2\)"):
        matching_accuracy(true[:, :2], np.full((1, 2, 6, 6), 2), np.zeros((1, 1, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"links must have shape \(B, T-1, K\) = \(1, 3, K\)"):
        matching_accuracy(true, true, np.zeros((1, 2, 3), dtype=np.int64))
