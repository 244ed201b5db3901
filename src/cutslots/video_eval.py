"""Video evaluation: slot tracks through a clip from frame-to-frame matchings (paper §4, Table 2).

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

Baseline (Slot Attention): single-frame slots, consecutive frames matched by the Hungarian
algorithm on slot inner products (:func:`inner_product_matchings`).

Both trackers also return the grouping's own masks (:class:`ClipTracks`): tracked with the same
matchings, they say whether the grouping (the k-partition, the attention) follows the objects
through the clip, or only the decoder does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from cutslots.metrics import ArrayLike, _to_numpy, ari, masks_to_labels, summarize
from cutslots.models.encoders import check_images
from cutslots.models.frame_pair import FramePairAutoencoder

TrackMethod = Literal["hungarian", "argmax"]
TRACK_METHODS: tuple[str, ...] = ("hungarian", "argmax")
# (result key, column title) of the paper's Table 2 layout.
TABLE2_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ari", "ARI"),
    ("ari_fg", "ARI-FG"),
    ("matching_accuracy", "Matching acc."),
)


def _check_matchings(matchings: ArrayLike) -> np.ndarray:
    m = _to_numpy(matchings, "matchings")
    if m.ndim != 4 or m.shape[2] != m.shape[3] or m.shape[2] < 1 or m.shape[1] < 1:
        raise ValueError(f"matchings must have shape (B, T-1, K, K) with T >= 2, K >= 1, got {tuple(m.shape)}")
    if not np.issubdtype(m.dtype, np.floating) and not np.issubdtype(m.dtype, np.integer):
        raise TypeError(f"matchings must be numeric, got dtype {m.dtype}")
    if not np.isfinite(m).all():
        raise ValueError("matchings contains NaN or inf values")
    return m


def _check_clip_masks(masks: ArrayLike, matchings: np.ndarray) -> np.ndarray:
    arr = _to_numpy(masks, "masks")
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
    arr = _to_numpy(links, "links")
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
    true = _to_numpy(true_labels, "true_labels")
    slot = _to_numpy(slot_labels, "slot_labels")
    link = _to_numpy(links, "links")
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
    true = _to_numpy(true_labels, "true_labels")
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


def inner_product_matchings(slots: Tensor) -> Tensor:
    """Baseline matching: Hungarian on <s_i, t_j> per consecutive pair, (B, T, K, D) -> (B, T-1, K, K) 0/1."""
    if not isinstance(slots, Tensor) or slots.dim() != 4 or slots.shape[1] < 2:
        shape = tuple(slots.shape) if isinstance(slots, Tensor) else type(slots).__name__
        raise ValueError(f"slots must be a (B, T, K, D) tensor with T >= 2, got {shape}")
    scores = torch.einsum("btid,btjd->btij", slots[:, :-1], slots[:, 1:]).detach().cpu().double().numpy()
    out = np.zeros(scores.shape)
    for b in range(scores.shape[0]):
        for t in range(scores.shape[1]):
            rows, cols = linear_sum_assignment(scores[b, t], maximize=True)
            out[b, t, rows, cols] = 1.0
    return torch.from_numpy(out).to(slots.device, slots.dtype)


def _check_video(video: Tensor) -> tuple[int, int]:
    if not isinstance(video, Tensor) or video.dim() != 5 or video.shape[1] < 2:
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise ValueError(f"video must be a (B, T, 3, H, W) tensor with T >= 2, got {shape}")
    check_images(video.flatten(0, 1))
    return video.shape[0], video.shape[1]


@dataclass(frozen=True)
class ClipTracks:
    """A model's tracking of B clips of T frames with K slots, each frame in its own slot order.

    ``masks`` (B, T, K, H, W): the decoder masks; ``matchings`` (B, T-1, K, K); ``grouping_masks``
    (B, T, K, h, w): the grouping's own masks (the k-partition, the attention), in the same slot
    order, so the same matchings track them; None when the grouping returns no masks.
    """

    masks: Tensor
    matchings: Tensor
    grouping_masks: Tensor | None


@torch.no_grad()
def single_frame_tracks(model: nn.Module, video: Tensor) -> ClipTracks:
    """Baseline: a single-image autoencoder (e.g. Slot Attention's ``SlotAutoencoder``) on every
    frame, slots of consecutive frames matched by :func:`inner_product_matchings`.

    video (B, T, 3, H, W) -> :class:`ClipTracks`.
    """
    batch, steps = _check_video(video)
    out = model(video.flatten(0, 1))
    if not isinstance(out, dict) or "masks" not in out or "slots" not in out:
        raise ValueError("model must return a dict with 'masks' (N, K, H, W) and 'slots' (N, K, D)")
    slots = out["slots"].unflatten(0, (batch, steps))  # (B, T, K, D)
    grouping = out.get("grouping_masks")
    return ClipTracks(
        masks=out["masks"].unflatten(0, (batch, steps)),  # (B, T, K, H, W)
        matchings=inner_product_matchings(slots),  # (B, T-1, K, K)
        grouping_masks=None if grouping is None else grouping.unflatten(0, (batch, steps)),  # (B, T, K, h, w)
    )


@torch.no_grad()
def frame_pair_tracks(model: FramePairAutoencoder, video: Tensor) -> ClipTracks:
    """A frame-pair model on a clip: video (B, T, 3, H, W) -> :class:`ClipTracks`.

    The matchings are the model's ``M`` for every pair (t, t+1). Frame t's masks come from
    decoding it in the frame-1 role (``s + r``) of its pair with frame t+1 (the last frame: with
    frame T-2), so each frame's masks are in its own slot order, as tracking requires.
    """
    if not isinstance(model, FramePairAutoencoder):
        raise TypeError(f"model must be a FramePairAutoencoder, got {type(model).__name__}")
    batch, steps = _check_video(video)
    grouped = model.frame_slots(video.flatten(0, 1))
    slots = grouped["slots"].unflatten(0, (batch, steps))  # (B, T, K, D)
    pairs = model.decoder_slots(slots[:, :-1].flatten(0, 1), slots[:, 1:].flatten(0, 1))
    last = model.decoder_slots(slots[:, -1], slots[:, -2])
    frame_slots = torch.cat(
        [pairs["frame1"].unflatten(0, (batch, steps - 1)), last["frame1"][:, None]], dim=1
    )  # (B, T, K, D)
    _, masks, _ = model.decoder(frame_slots.flatten(0, 1))  # masks: (B * T, K, H, W)
    grouping = grouped.get("masks")
    return ClipTracks(
        masks=masks.unflatten(0, (batch, steps)),
        matchings=pairs["matching"].unflatten(0, (batch, steps - 1)),
        grouping_masks=None if grouping is None else grouping.unflatten(0, (batch, steps)),
    )


def collate_clips(items: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Stack clip items {"video": (T, 3, H, W), "mask": (T, H, W)} into a batch (a DataLoader
    ``collate_fn``); clips of different lengths or sizes raise ValueError."""
    if not isinstance(items, Sequence) or len(items) == 0:
        raise ValueError("items must be a non-empty sequence of clip dicts")
    batch: dict[str, Tensor] = {}
    for key in ("video", "mask"):
        tensors = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or not isinstance(item.get(key), Tensor):
                raise ValueError(f"items[{i}] must be a dict with a tensor under {key!r}")
            if item[key].shape != items[0][key].shape:
                raise ValueError(
                    f"all clips in a batch must have the same length and size: items[{i}][{key!r}] has shape "
                    f"{tuple(item[key].shape)}, items[0][{key!r}] has {tuple(items[0][key].shape)}"
                )
            tensors.append(item[key])
        batch[key] = torch.stack(tensors)
    video, mask = batch["video"], batch["mask"]
    if video.dim() != 5 or mask.shape != video.shape[:2] + video.shape[3:]:
        raise ValueError(
            f"clip 'video' must be (T, 3, H, W) and 'mask' (T, H, W) of the same T, H, W, "
            f"got {tuple(video.shape[1:])} and {tuple(mask.shape[1:])}"
        )
    return batch


def format_table2(results: Mapping[str, Mapping[str, ArrayLike]]) -> str:
    """The paper's Table 2 layout: one row per method, columns ARI, ARI-FG, matching accuracy.

    ``results``: {method: {"ari", "ari_fg", "matching_accuracy": per-clip (N,) arrays}} as
    returned by :func:`evaluate_tracks` (concatenated over batches). Cells are
    ``mean ± std`` over clips in percent; NaN clips are excluded (see ``metrics.summarize``).
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping {method: {metric: per-clip values}}")
    header = ["Method"] + [title for _, title in TABLE2_COLUMNS]
    rows = []
    for method, scores in results.items():
        missing = [key for key, _ in TABLE2_COLUMNS if key not in scores]
        if missing:
            expected = [key for key, _ in TABLE2_COLUMNS]
            raise ValueError(f"results[{method!r}] lacks {missing}; expected keys {expected}")
        summary = summarize({key: scores[key] for key, _ in TABLE2_COLUMNS})
        cells = [f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}" for s in summary.values()]
        rows.append([str(method)] + cells)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header] + rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
