"""Segmentation and reconstruction metrics, following the ClevrTex evaluation conventions.

Label maps are integer arrays of shape (B, H, W) for images or (B, T, H, W) for videos; a video
is scored as one segmentation over all of its frames, so its ids must be consistent over time.
Inputs may be numpy arrays or torch tensors; every metric returns a float64 numpy array with
one value per item, shape (B,).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import overload

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from cutslots.metrics.arrays import ArrayLike, as_array


def _label_maps(true_labels: ArrayLike, pred_labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate two label maps and flatten them to int64 arrays of shape (B, N)."""
    maps = []
    for name, x in (("true_labels", true_labels), ("pred_labels", pred_labels)):
        arr = as_array(x, name)
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise TypeError(f"{name} must hold integer labels, got dtype {arr.dtype}")
        if arr.ndim not in (3, 4):
            raise ValueError(f"{name} must have shape (B, H, W) or (B, T, H, W), got {tuple(arr.shape)}")
        if arr.size == 0:
            raise ValueError(f"{name} must be non-empty, got shape {tuple(arr.shape)}")
        maps.append(arr)
    true, pred = maps
    if true.shape != pred.shape:
        raise ValueError(
            f"true_labels and pred_labels must have the same shape, got {tuple(true.shape)} and {tuple(pred.shape)}"
        )
    batch = true.shape[0]
    return true.reshape(batch, -1).astype(np.int64), pred.reshape(batch, -1).astype(np.int64)


def _pairs_per_item(codes: np.ndarray, num_items: int, num_labels: int) -> np.ndarray:
    """Sum over labels of C(count, 2) per item; codes = item * num_labels + label. -> (num_items,) int64."""
    counts = np.bincount(codes, minlength=num_items * num_labels).reshape(num_items, num_labels)
    return (counts * (counts - 1) // 2).sum(axis=1)


def ari(true_labels: ArrayLike, pred_labels: ArrayLike, ignore_background: bool = False) -> np.ndarray:
    """Adjusted Rand index per item, (B, H, W) or (B, T, H, W) label maps -> (B,) float64.

    Label values are arbitrary integers (only equality matters). With ``ignore_background``
    (ARI-FG) pixels whose true label is 0 are excluded. Degenerate cases follow
    ``sklearn.metrics.adjusted_rand_score``: when the two labelings agree on every pair of
    pixels (e.g. both are a single cluster, or only one pixel is scored) the score is 1.0.
    An item with no scored pixel (ARI-FG of an image without foreground) gets NaN; use
    :func:`summarize`, which excludes and counts NaNs.
    """
    true, pred = _label_maps(true_labels, pred_labels)
    batch = true.shape[0]
    valid = true != 0 if ignore_background else np.ones(true.shape, dtype=bool)
    item = np.broadcast_to(np.arange(batch)[:, None], true.shape)[valid]
    # Compact the label values over the whole batch so the contingency codes stay small.
    true_values, t = np.unique(true[valid], return_inverse=True)
    pred_values, p = np.unique(pred[valid], return_inverse=True)
    num_t, num_p = len(true_values), len(pred_values)

    same_true = _pairs_per_item(item * num_t + t, batch, num_t)
    same_pred = _pairs_per_item(item * num_p + p, batch, num_p)
    # Contingency cells n_ij as (item, true, pred) codes; only non-empty cells are materialised.
    cells, cell_counts = np.unique((item * num_t + t) * num_p + p, return_counts=True)
    same_both = np.zeros(batch, dtype=np.int64)
    np.add.at(same_both, cells // (num_t * num_p), cell_counts * (cell_counts - 1) // 2)
    num_pixels = valid.sum(axis=1)

    scores = np.empty(batch, dtype=np.float64)
    for b in range(batch):
        n = int(num_pixels[b])
        if n == 0:
            scores[b] = np.nan
            continue
        # Pair confusion counts as Python ints: products below overflow int64 for large videos.
        tp = int(same_both[b])
        fn = int(same_true[b]) - tp
        fp = int(same_pred[b]) - tp
        tn = n * (n - 1) // 2 - tp - fn - fp
        if fn == 0 and fp == 0:
            scores[b] = 1.0
        else:
            scores[b] = 2 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    return scores


def miou(true_labels: ArrayLike, pred_labels: ArrayLike, num_segments: int | None = None) -> np.ndarray:
    """Mean IoU per item after Hungarian matching, (B, H, W) or (B, T, H, W) -> (B,) float64.

    True segments are the ids present in the true map (background 0 included), so each is
    non-empty. Predicted segments are ``0..num_segments-1`` when ``num_segments`` is given
    (slots that win no pixel are empty masks), otherwise the ids present in the prediction.
    True and predicted segments are matched one-to-one maximising the total IoU
    (``scipy.optimize.linear_sum_assignment``). The score is the sum of matched IoUs divided
    by the number of true segments: a true segment left without a predicted partner, or matched
    to an empty one, contributes 0; surplus predicted segments are not penalised.
    """
    true, pred = _label_maps(true_labels, pred_labels)
    if num_segments is not None:
        if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError(f"num_segments must be a positive int or None, got {num_segments!r}")
        if pred.min() < 0 or pred.max() >= num_segments:
            raise ValueError(
                f"pred_labels must lie in [0, num_segments={num_segments}), got range [{pred.min()}, {pred.max()}]"
            )
    scores = np.empty(true.shape[0], dtype=np.float64)
    for b in range(true.shape[0]):
        _, t = np.unique(true[b], return_inverse=True)
        if num_segments is None:
            _, p = np.unique(pred[b], return_inverse=True)
            num_p = int(p.max()) + 1
        else:
            p, num_p = pred[b], num_segments
        num_t = int(t.max()) + 1
        inter = np.bincount(t * num_p + p, minlength=num_t * num_p).reshape(num_t, num_p)
        union = inter.sum(axis=1)[:, None] + np.bincount(p, minlength=num_p)[None, :] - inter
        iou = inter / union  # union >= true area > 0
        rows, cols = linear_sum_assignment(iou, maximize=True)
        scores[b] = iou[rows, cols].sum() / num_t
    return scores


def mse_per_image(images: ArrayLike, recons: ArrayLike) -> np.ndarray:
    """Squared error summed over C*H*W per image, (B, C, H, W) pair -> (B,) float64.

    ``images`` must lie in [0, 1] (the scale the reported MSE assumes); ``recons`` may not.
    """
    arrays = []
    for name, x in (("images", images), ("recons", recons)):
        arr = as_array(x, name)
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
        if arr.ndim != 4:
            raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(arr.shape)}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains non-finite values")
        arrays.append(arr.astype(np.float64))
    x, y = arrays
    if x.shape != y.shape:
        raise ValueError(f"images and recons must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.min() < 0.0 or x.max() > 1.0:
        raise ValueError(f"images must lie in [0, 1], got range [{x.min()}, {x.max()}]")
    return ((x - y) ** 2).reshape(x.shape[0], -1).sum(axis=1)


@overload
def masks_to_labels(masks: torch.Tensor) -> torch.Tensor: ...


@overload
def masks_to_labels(masks: np.ndarray) -> np.ndarray: ...


def masks_to_labels(masks: ArrayLike) -> ArrayLike:
    """Argmax over the slot axis: (B, K, H, W) -> (B, H, W), or (B, T, K, H, W) -> (B, T, H, W).

    Returns int64 of the input's kind (numpy or torch); ties go to the lowest slot index.
    """
    arr = as_array(masks, "masks")
    if arr.ndim not in (4, 5) or arr.shape[-3] == 0:
        raise ValueError(f"masks must have shape (B, K, H, W) or (B, T, K, H, W) with K >= 1, got {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError("masks contains non-finite values")
    if isinstance(masks, torch.Tensor):
        return masks.argmax(dim=-3)
    return np.argmax(arr, axis=-3).astype(np.int64)


def summarize(per_image: Mapping[str, ArrayLike]) -> dict[str, dict[str, float]]:
    """Aggregate per-item metric arrays: {name: (N,)} -> {name: {mean, std, n, n_nan}}.

    NaNs (e.g. ARI-FG of images without foreground) are excluded from mean and std
    (population std, ddof=0) and counted in ``n_nan``; ``n`` counts the values used. With no
    usable value, mean and std are NaN. Infinite values are rejected.
    """
    summary: dict[str, dict[str, float]] = {}
    for name, values in per_image.items():
        arr = as_array(values, f"per_image[{name!r}]")
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(
                f"per_image[{name!r}] must be a 1-D numeric array, got shape {arr.shape} dtype {arr.dtype}"
            )
        arr = arr.astype(np.float64)
        if np.isinf(arr).any():
            raise ValueError(f"per_image[{name!r}] contains infinite values")
        nan = np.isnan(arr)
        kept = arr[~nan]
        summary[name] = {
            "mean": float(kept.mean()) if kept.size else float("nan"),
            "std": float(kept.std()) if kept.size else float("nan"),
            "n": int(kept.size),
            "n_nan": int(nan.sum()),
        }
    return summary
