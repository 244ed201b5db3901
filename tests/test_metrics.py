"""Metrics against scikit-learn, brute force and hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from cutslots.metrics import ari, masks_to_labels, miou, mse_per_image, summarize


def _random_labels(rng: np.random.Generator, shape: tuple[int, ...], num_labels: int) -> np.ndarray:
    return rng.integers(0, num_labels, size=shape)


@pytest.mark.parametrize("shape", [(5, 8, 8), (3, 2, 6, 7), (4, 1, 17)])
@pytest.mark.parametrize("num_true,num_pred", [(1, 1), (1, 4), (3, 3), (6, 2), (7, 9)])
def test_ari_matches_sklearn(shape: tuple[int, ...], num_true: int, num_pred: int) -> None:
    rng = np.random.default_rng(sum(shape) * 100 + num_true * 10 + num_pred)
    true = _random_labels(rng, shape, num_true)
    pred = _random_labels(rng, shape, num_pred)
    expected = [adjusted_rand_score(t.ravel(), p.ravel()) for t, p in zip(true, pred)]
    np.testing.assert_allclose(ari(true, pred), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 8, 8), (3, 2, 6, 7)])
def test_ari_fg_matches_sklearn_on_foreground_pixels(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(7)
    true = _random_labels(rng, shape, 4)
    pred = _random_labels(rng, shape, 5)
    expected = []
    for t, p in zip(true, pred):
        fg = t.ravel() != 0
        expected.append(adjusted_rand_score(t.ravel()[fg], p.ravel()[fg]))
    np.testing.assert_allclose(ari(true, pred, ignore_background=True), expected, rtol=0, atol=1e-12)


def test_ari_invariant_to_label_values_and_permutation() -> None:
    rng = np.random.default_rng(3)
    true = _random_labels(rng, (4, 10, 10), 5)
    pred = _random_labels(rng, (4, 10, 10), 5)
    relabel = np.array([-3, 40, 7, 1000, 2])  # arbitrary, non-contiguous, negative values
    np.testing.assert_allclose(ari(true, relabel[pred]), ari(true, pred), atol=1e-12)
    np.testing.assert_array_equal(ari(true, relabel[true]), np.ones(4))


def test_ari_degenerate_cases_follow_sklearn() -> None:
    single = np.zeros((1, 4, 4), dtype=np.int64)
    assert ari(single, single + 5)[0] == adjusted_rand_score(single.ravel(), single.ravel() + 5) == 1.0
    # One cluster against a split: sklearn gives 0.
    split = single.copy()
    split[0, :2] = 1
    assert ari(single, split)[0] == pytest.approx(adjusted_rand_score(single.ravel(), split.ravel()), abs=1e-12)
    # A single foreground pixel: every pair agrees (there is none), sklearn gives 1.0.
    one_fg = single.copy()
    one_fg[0, 1, 1] = 3
    assert ari(one_fg, split, ignore_background=True)[0] == adjusted_rand_score([3], [split[0, 1, 1]]) == 1.0


def test_ari_fg_is_nan_without_foreground() -> None:
    true = np.zeros((2, 4, 4), dtype=np.int64)
    true[1, 0, 0] = 1
    true[1, 3, 3] = 2
    pred = np.zeros((2, 4, 4), dtype=np.int64)
    pred[1, 3, 3] = 1
    scores = ari(true, pred, ignore_background=True)
    assert math.isnan(scores[0])
    assert scores[1] == 1.0


def test_ari_accepts_torch_and_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    true, pred = _random_labels(rng, (3, 5, 5), 3), _random_labels(rng, (3, 5, 5), 3)
    np.testing.assert_array_equal(ari(torch.from_numpy(true), torch.from_numpy(pred)), ari(true, pred))
    with pytest.raises(TypeError, match="pred_labels"):
        ari(true, pred.astype(np.float32))
    with pytest.raises(ValueError, match="same shape"):
        ari(true, pred[:, :4])
    with pytest.raises(ValueError, match="true_labels"):
        ari(true[0], pred[0])
    with pytest.raises(TypeError, match="true_labels"):
        ari(true.tolist(), pred)


def _miou_brute_force(true: np.ndarray, pred: np.ndarray) -> float:
    """Best injective assignment by enumeration; true ids present, predicted ids present."""
    true_ids, pred_ids = np.unique(true), np.unique(pred)

    def iou(t: int, p: int) -> float:
        a, b = true == t, pred == p
        return (a & b).sum() / (a | b).sum()

    best = 0.0
    slots = list(pred_ids) + [None] * len(true_ids)  # None: left unmatched
    for choice in itertools.permutations(slots, len(true_ids)):
        total = sum(iou(t, p) for t, p in zip(true_ids, choice) if p is not None)
        best = max(best, total)
    return best / len(true_ids)


def test_miou_matches_brute_force_matching() -> None:
    rng = np.random.default_rng(11)
    for num_true, num_pred in [(3, 3), (4, 2), (2, 4)]:
        true = _random_labels(rng, (3, 6, 6), num_true)
        pred = _random_labels(rng, (3, 6, 6), num_pred)
        expected = [_miou_brute_force(t, p) for t, p in zip(true, pred)]
        np.testing.assert_allclose(miou(true, pred), expected, atol=1e-12)


def test_miou_perfect_and_permuted() -> None:
    true = np.zeros((1, 4, 4), dtype=np.int64)
    true[0, :2, :2] = 1
    true[0, 2:, 1:] = 2
    assert miou(true, true)[0] == 1.0
    assert miou(true, np.array([2, 0, 1])[true])[0] == 1.0


def test_miou_single_object_and_empty_predicted_mask() -> None:
    true = np.zeros((1, 4, 4), dtype=np.int64)
    true[0, :2, :2] = 1  # one 4-pixel object on 12 background pixels
    pred = np.zeros_like(true)  # everything in slot 0, slot 1 empty
    # background <-> slot 0: IoU 12/16; the object gets nothing (or the empty slot): 0.
    assert miou(true, pred)[0] == pytest.approx((12 / 16 + 0.0) / 2)
    assert miou(true, pred, num_segments=2)[0] == pytest.approx((12 / 16 + 0.0) / 2)
    # Object predicted as its left half only: IoU 2/4; background slot also has 2 extra pixels.
    pred[0, :2, 0] = 1
    pred[0, :2, 1] = 0
    assert miou(true, pred)[0] == pytest.approx((12 / 14 + 2 / 4) / 2)


def test_miou_surplus_predicted_segments_are_not_penalised() -> None:
    true = np.zeros((1, 4, 4), dtype=np.int64)
    true[0, :, 2:] = 1
    pred = np.zeros_like(true)
    pred[0, :2, 2:] = 1
    pred[0, 2:, 2:] = 2  # the object split in two halves
    assert miou(true, pred)[0] == pytest.approx((1.0 + 0.5) / 2)
    assert miou(true, pred, num_segments=7)[0] == pytest.approx((1.0 + 0.5) / 2)


def test_miou_rejects_labels_outside_num_segments() -> None:
    labels = np.zeros((1, 3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="num_segments"):
        miou(labels, labels + 2, num_segments=2)
    with pytest.raises(ValueError, match="num_segments"):
        miou(labels, labels, num_segments=0)


def test_mse_per_image_sums_over_pixels() -> None:
    rng = np.random.default_rng(5)
    images = rng.uniform(size=(3, 3, 4, 5))
    recons = images + rng.normal(size=images.shape)
    expected = [((x - y) ** 2).sum() for x, y in zip(images, recons)]
    np.testing.assert_allclose(mse_per_image(images, recons), expected, rtol=1e-12)
    zeros = torch.zeros(2, 3, 4, 4)
    np.testing.assert_allclose(mse_per_image(zeros, zeros + 0.5), [3 * 16 * 0.25] * 2)


def test_mse_per_image_rejects_bad_input() -> None:
    ok = np.zeros((1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        mse_per_image(ok + 2.0, ok)
    with pytest.raises(ValueError, match="same shape"):
        mse_per_image(ok, ok[:, :2])
    with pytest.raises(ValueError, match="recons"):
        mse_per_image(ok, ok * np.nan)
    with pytest.raises(TypeError, match="images"):
        mse_per_image(ok.astype(np.int64), ok)


def test_masks_to_labels_argmax_over_slots() -> None:
    masks = np.zeros((1, 3, 2, 2))
    masks[0, 2, 0, 0] = 0.9
    masks[0, 1, 1, 1] = 0.7
    masks[0, :, 0, 1] = 0.5  # a three-way tie goes to slot 0
    expected = np.array([[[2, 0], [0, 1]]])
    np.testing.assert_array_equal(masks_to_labels(masks), expected)
    as_torch = masks_to_labels(torch.from_numpy(masks))
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.int64
    np.testing.assert_array_equal(as_torch.numpy(), expected)
    video = np.stack([masks, masks[:, ::-1]], axis=1)  # (B, T, K, H, W)
    np.testing.assert_array_equal(masks_to_labels(video)[:, 0], expected)
    with pytest.raises(ValueError, match="masks"):
        masks_to_labels(masks[0])


def test_summarize_excludes_and_counts_nans() -> None:
    values = np.array([0.5, np.nan, 1.0, 0.0, np.nan])
    summary = summarize({"ari_fg": values, "all_nan": np.full(2, np.nan), "mse": torch.tensor([1.0, 3.0])})
    assert summary["ari_fg"] == {
        "mean": pytest.approx(np.nanmean(values)),
        "std": pytest.approx(np.nanstd(values)),
        "n": 3,
        "n_nan": 2,
    }
    assert math.isnan(summary["all_nan"]["mean"]) and summary["all_nan"]["n"] == 0
    assert summary["mse"]["mean"] == pytest.approx(2.0) and summary["mse"]["n_nan"] == 0
    with pytest.raises(ValueError, match="mse"):
        summarize({"mse": np.array([1.0, np.inf])})
