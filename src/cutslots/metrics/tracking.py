"""Tracking metrics: slot tracks through a clip from frame-to-frame matchings (paper §4, Table 2).

Conventions (B clips of T >= 2 frames, K slots):

- ``true_labels`` (B, T, H, W) int: ground-truth object ids, 0 = background, same id in every
  frame for the same object.
- ``masks`` (B, T, K, H, W): each frame's soft slot masks, in that frame's own slot order.
- ``matchings`` (B, T-1, K, K): ``matchings[b, t, i, j]`` weighs pairing slot ``i`` of frame
  ``t`` with slot ``j`` of frame ``t + 1`` (a soft ``M`` or a 0/1 permutation).

Tracking. Every pair is first made hard: ``links[b, t, j]`` is the slot of frame ``t`` that
slot ``j`` of frame ``t + 1`` continues, from the Hungarian matching maximising the total
weight (``"hungarian"``, a permutation) or from ``argmax_i M[i, j]`` (``"argmax"``; two slots
may then continue the same one, a merge). Frame 0's slot ``k`` starts track ``k`` and every
slot inherits the track of the slot it continues. A pixel's space-time label is the track of
its argmax slot, so ARI and ARI-FG are computed over the whole clip (B, T, H, W): an object
that changes track between frames is an error, like an object split between two slots.

Matching accuracy, per clip: over every consecutive pair (t, t+1) and every object id g != 0
with at least one pixel in both frames, let ``a`` / ``b`` be g's majority slot in frame t /
t+1 (the argmax slot covering most of g's pixels; ties go to the lowest slot index). The event
is correct when ``links[t, b] == a``. The score is correct events / events (NaN without any).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from cutslots.metrics.arrays import ArrayLike, as_array
from cutslots.metrics.segmentation import ari, masks_to_labels

TrackMethod = Literal["hungarian", "argmax"]
TRACK_METHODS: tuple[str, ...] = ("hungarian", "argmax")
# (key of evaluate_tracks' result, column title) of the paper's Table 2 layout.
TABLE2_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ari", "ARI"),
    ("ari_fg", "ARI-FG"),
    ("matching_accuracy", "Matching acc."),
)


def _check_matchings(matchings: ArrayLike) -> np.ndarray:
    m = as_array(matchings, "matchings")
    if m.ndim != 4 or m.shape[2] != m.shape[3] or m.shape[2] < 1 or m.shape[1] < 1:
        raise ValueError(f"matchings must have shape (B, T-1, K, K) with T >= 2, K >= 1, got {tuple(m.shape)}")
    if not np.issubdtype(m.dtype, np.floating) and not np.issubdtype(m.dtype, np.integer):
        raise TypeError(f"matchings must be numeric, got dtype {m.dtype}")
    if not np.isfinite(m).all():
        raise ValueError("matchings contains NaN or inf values")
    return m


def _check_clip_masks(masks: ArrayLike, matchings: np.ndarray) -> np.ndarray:
    arr = as_array(masks, "masks")
    if arr.ndim != 5:
        raise ValueError(f"masks must have shape (B, T, K, H, W), got {tuple(arr.shape)}")
    batch, steps, slots = matchings.shape[0], matchings.shape[1] + 1, matchings.shape[2]
    if arr.shape[:3] != (batch, steps, slots):
        raise ValueError(
            f"masks (B, T, K, H, W) = {tuple(arr.shape)} does not fit matchings (B, T-1, K, K) = "
            f"{tuple(matchings.shape)}: expected B={batch}, T={steps}, K={slots}"
        )
    return arr


def hard_links(matchings: ArrayLike, method: TrackMethod = "hungarian") -> np.ndarray:
    """Hard frame-to-frame links, (B, T-1, K, K) -> (B, T-1, K) int64 (module docstring)."""
    m = _check_matchings(matchings)
    if method not in TRACK_METHODS:
        raise ValueError(f"method must be one of {TRACK_METHODS}, got {method!r}")
    if method == "argmax":
        return m.argmax(axis=2).astype(np.int64)  # over frame-t slots i, for each slot j of t+1
    links = np.empty(m.shape[:3], dtype=np.int64)
    for b in range(m.shape[0]):
        for t in range(m.shape[1]):
            rows, cols = linear_sum_assignment(m[b, t], maximize=True)
            links[b, t, cols] = rows
    return links


def chain_identities(links: ArrayLike) -> np.ndarray:
    """Track id of every slot of every frame, links (B, T-1, K) -> (B, T, K) int64.

    Frame 0's slot k is track k; slot j of frame t+1 takes the track of slot ``links[:, t, j]``.
    """
    arr = as_array(links, "links")
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer) or arr.shape[2] < 1:
        raise ValueError(f"links must be an integer array of shape (B, T-1, K), got {arr.dtype} {tuple(arr.shape)}")
    num_slots = arr.shape[2]
    if arr.size and (arr.min() < 0 or arr.max() >= num_slots):
        raise ValueError(f"links must lie in [0, K={num_slots}), got range [{arr.min()}, {arr.max()}]")
    ids = np.empty((arr.shape[0], arr.shape[1] + 1, num_slots), dtype=np.int64)
    ids[:, 0] = np.arange(num_slots)
    for t in range(arr.shape[1]):
        ids[:, t + 1] = np.take_along_axis(ids[:, t], arr[:, t], axis=1)
    return ids


def track_labels(masks: ArrayLike, matchings: ArrayLike, method: TrackMethod = "hungarian") -> np.ndarray:
    """Space-time track labels, masks (B, T, K, H, W) + matchings (B, T-1, K, K) -> (B, T, H, W)."""
    m = _check_matchings(matchings)
    slot_labels = masks_to_labels(_check_clip_masks(masks, m))  # (B, T, H, W)
    ids = chain_identities(hard_links(m, method))
    batch, steps = slot_labels.shape[:2]
    flat = np.take_along_axis(ids, slot_labels.reshape(batch, steps, -1), axis=2)
    return flat.reshape(slot_labels.shape)


def matching_accuracy(true_labels: ArrayLike, slot_labels: ArrayLike, links: ArrayLike) -> np.ndarray:
    """Matching accuracy per clip (module docstring) -> (B,) float64, NaN for clips without events.

    ``true_labels``, ``slot_labels``: (B, T, H, W) ints, the latter each frame's argmax slot in
    its own order; ``links``: (B, T-1, K) from :func:`hard_links`.
    """
    true = as_array(true_labels, "true_labels")
    slot = as_array(slot_labels, "slot_labels")
    link = as_array(links, "links")
    for name, arr in (("true_labels", true), ("slot_labels", slot), ("links", link)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if true.ndim != 4 or true.shape != slot.shape:
        raise ValueError(
            f"true_labels and slot_labels must both have shape (B, T, H, W), "
            f"got {tuple(true.shape)} and {tuple(slot.shape)}"
        )
    if link.ndim != 3 or link.shape[:2] != (true.shape[0], true.shape[1] - 1):
        raise ValueError(
            f"links must have shape (B, T-1, K) = ({true.shape[0]}, {true.shape[1] - 1}, K), got {tuple(link.shape)}"
        )
    if slot.min() < 0 or slot.max() >= link.shape[2]:
        raise ValueError(f"slot_labels must lie in [0, K={link.shape[2]}), got range [{slot.min()}, {slot.max()}]")

    scores = np.full(true.shape[0], np.nan)
    for b in range(true.shape[0]):
        correct = total = 0
        for t in range(true.shape[1] - 1):
            now, nxt = true[b, t], true[b, t + 1]
            for g in np.intersect1d(now, nxt):
                if g == 0:
                    continue
                a = np.bincount(slot[b, t][now == g]).argmax()  # argmax: ties -> lowest slot
                c = np.bincount(slot[b, t + 1][nxt == g]).argmax()
                correct += int(link[b, t, c] == a)
                total += 1
        if total:
            scores[b] = correct / total
    return scores


def evaluate_tracks(
    true_labels: ArrayLike, masks: ArrayLike, matchings: ArrayLike, method: TrackMethod = "hungarian"
) -> dict[str, np.ndarray]:
    """Per-clip scores: {"ari", "ari_fg", "matching_accuracy"} -> (B,) float64 each.

    true_labels (B, T, H, W), masks (B, T, K, H, W), matchings (B, T-1, K, K).
    """
    m = _check_matchings(matchings)
    arr = _check_clip_masks(masks, m)
    true = as_array(true_labels, "true_labels")
    expected = arr.shape[:2] + arr.shape[3:]
    if true.shape != expected:
        raise ValueError(
            f"true_labels must have shape (B, T, H, W) = {expected} to match masks, got {tuple(true.shape)}"
        )
    tracks = track_labels(arr, m, method)
    return {
        "ari": ari(true, tracks),
        "ari_fg": ari(true, tracks, ignore_background=True),
        "matching_accuracy": matching_accuracy(true, masks_to_labels(arr), hard_links(m, method)),
    }
