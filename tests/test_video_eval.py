"""Video evaluation: hard links, chained tracks, space-time ARI, matching accuracy, Table 2."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch import Tensor, nn

from cutslots.models.autoencoder import SlotAutoencoder
from cutslots.models.decoder import SpatialBroadcastDecoder
from cutslots.models.frame_pair import FramePairAutoencoder
from cutslots.nn.matcher import SlotMatcher
from cutslots.video_eval import (
    ClipTracks,
    chain_identities,
    collate_clips,
    evaluate_tracks,
    format_table2,
    frame_pair_tracks,
    hard_links,
    inner_product_matchings,
    matching_accuracy,
    single_frame_tracks,
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


def test_inner_product_matchings_brute_force() -> None:
    slots = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    m = inner_product_matchings(slots)
    assert m.shape == (2, 2, 4, 4) and set(m.unique().tolist()) == {0.0, 1.0}
    for b, t in itertools.product(range(2), range(2)):
        scores = (slots[b, t] @ slots[b, t + 1].T).numpy()
        best = max(itertools.permutations(range(4)), key=lambda p: sum(scores[i, p[i]] for i in range(4)))
        np.testing.assert_array_equal(m[b, t].numpy(), np.eye(4)[list(best)])


# ----------------------------------------------------------------- model adapters

COLOURS = torch.eye(3)
ORDERS = [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]]  # band k of frame t shows colour ORDERS[t][k]


class BandGrouping(nn.Module):
    """features (B, C, h, w) -> slot k = mean feature of vertical band k of 3, its mask = band k."""

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        slots = torch.stack([band.mean(dim=(-2, -1)) for band in features.chunk(3, dim=-1)], dim=1)
        return {"slots": slots, "masks": _band_masks(features.shape[0], features.shape[-1])}


def _band_masks(batch: int, size: int) -> Tensor:
    """(batch, 3, size, size): mask k is 1 on vertical band k of 3."""
    band = torch.arange(size) // (size // 3)  # (W,)
    masks = (band[None, :] == torch.arange(3)[:, None]).float()  # (3, W)
    return masks[None, :, None, :].expand(batch, 3, size, size)


def _assert_grouping_masks_are_bands(tracks: ClipTracks) -> None:
    # Slot k of every frame holds band k in that frame's own order: the grouping masks are the bands.
    assert tracks.grouping_masks is not None and tracks.grouping_masks.shape == (1, 4, 3, 12, 12)
    for t in range(4):
        torch.testing.assert_close(tracks.grouping_masks[0, t], _band_masks(1, 12)[0])


def _band_video() -> Tensor:
    video = torch.zeros(1, len(ORDERS), 3, 12, 12)
    for t, order in enumerate(ORDERS):
        for k, colour in enumerate(order):
            video[0, t, :, :, 4 * k : 4 * k + 4] = COLOURS[colour][:, None, None]
    return video


def _decoder() -> SpatialBroadcastDecoder:
    torch.manual_seed(0)
    return SpatialBroadcastDecoder(3, out_size=12, broadcast=3, channels=8)


def _assert_tracks_follow_colours(matchings: Tensor) -> None:
    ids = chain_identities(hard_links(matchings))[0]  # (T, K)
    for colour in range(3):
        slots = [order.index(colour) for order in ORDERS]
        assert len({int(ids[t, k]) for t, k in enumerate(slots)}) == 1  # one track per colour


def test_single_frame_baseline_tracks_band_colours() -> None:
    model = SlotAutoencoder(nn.Identity(), BandGrouping(), _decoder())
    tracks = single_frame_tracks(model, _band_video())
    assert tracks.masks.shape == (1, 4, 3, 12, 12) and tracks.matchings.shape == (1, 3, 3, 3)
    _assert_tracks_follow_colours(tracks.matchings)
    _assert_grouping_masks_are_bands(tracks)


def test_frame_pair_model_tracks_band_colours_with_masks_in_each_frames_order() -> None:
    model = FramePairAutoencoder(nn.Identity(), BandGrouping(), _decoder(), matcher=SlotMatcher(3, 3, gamma=1.0, temperature=0.01))
    tracks = frame_pair_tracks(model, _band_video())
    masks = tracks.masks
    assert masks.shape == (1, 4, 3, 12, 12) and tracks.matchings.shape == (1, 3, 3, 3)
    _assert_tracks_follow_colours(tracks.matchings)
    _assert_grouping_masks_are_bands(tracks)
    # Each frame is decoded from its own slots (the last one too, via the reversed pair), so the
    # mask of the slot showing a colour is the same in every frame.
    for colour in range(3):
        per_frame = [masks[0, t, order.index(colour)] for t, order in enumerate(ORDERS)]
        for mask in per_frame[1:]:
            torch.testing.assert_close(mask, per_frame[0], atol=1e-3, rtol=0)


# ----------------------------------------------------------------- batching and Table 2


def test_collate_clips_stacks_and_rejects_mixed_lengths_and_sizes() -> None:
    def clip(steps: int, size: int) -> dict[str, Tensor]:
        return {"video": torch.zeros(steps, 3, size, size), "mask": torch.zeros(steps, size, size, dtype=torch.long)}

    batch = collate_clips([clip(3, 8), clip(3, 8)])
    assert batch["video"].shape == (2, 3, 3, 8, 8) and batch["mask"].shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"same length and size: items\[1\]\['video'\] has shape \(4, 3, 8, 8\)"):
        collate_clips([clip(3, 8), clip(4, 8)])
    with pytest.raises(ValueError, match=r"items\[1\]\['video'\] has shape \(3, 3, 6, 6\)"):
        collate_clips([clip(3, 8), clip(3, 6)])
    with pytest.raises(ValueError, match="of the same T, H, W"):
        collate_clips([{"video": torch.zeros(3, 3, 8, 8), "mask": torch.zeros(2, 8, 8)}])
    with pytest.raises(ValueError, match="non-empty"):
        collate_clips([])


def test_table2_layout_mean_and_std_in_percent() -> None:
    results = {
        "Slot Attention": {
            "ari": np.array([0.5, 0.7]),
            "ari_fg": torch.tensor([float("nan"), 0.9], dtype=torch.float64),
            "matching_accuracy": np.array([1.0, 0.5]),
        },
        "Ours": {"ari": np.array([0.8]), "ari_fg": np.array([0.85]), "matching_accuracy": np.array([0.25])},
    }
    lines = format_table2(results).splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["Method", "ARI", "ARI-FG", "Matching acc."]
    assert set(lines[1]) <= {"-", "+"}
    # mean +- population std over clips, NaN excluded: ARI (50, 70) -> 60 +- 10.
    assert [c.strip() for c in lines[2].split("|")] == ["Slot Attention", "60.0 ± 10.0", "90.0 ± 0.0", "75.0 ± 25.0"]
    assert [c.strip() for c in lines[3].split("|")] == ["Ours", "80.0 ± 0.0", "85.0 ± 0.0", "25.0 ± 0.0"]
    with pytest.raises(ValueError, match=r"results\['Ours'\] lacks \['matching_accuracy'\]"):
        format_table2({"Ours": {"ari": np.ones(1), "ari_fg": np.ones(1)}})
    with pytest.raises(ValueError, match="non-empty mapping"):
        format_table2({})


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
    with pytest.raises(ValueError, match=r"video must be a \(B, T, 3, H, W\) tensor with T >= 2"):
        single_frame_tracks(nn.Identity(), torch.zeros(1, 1, 3, 12, 12))
    with pytest.raises(TypeError, match="model must be a FramePairAutoencoder"):
        frame_pair_tracks(nn.Identity(), _band_video())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"slots must be a \(B, T, K, D\) tensor with T >= 2"):
        inner_product_matchings(torch.zeros(1, 1, 3, 2))
