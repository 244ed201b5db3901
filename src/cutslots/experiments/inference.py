"""Inference drivers for video: run a model over clips and collect its slot tracks.

A model tracks B clips of T >= 2 frames with K slots as a :class:`ClipTracks`: each frame's
masks (B, T, K, H, W) in that frame's own slot order, and the matchings (B, T-1, K, K) of
consecutive frames, which :mod:`cutslots.metrics.tracking` turns into tracks and scores.

- Frame-pair model (cut + matching): its own matchings ``M`` (:func:`frame_pair_tracks`).
- Baseline (Slot Attention): single-frame slots, consecutive frames matched by the Hungarian
  algorithm on slot inner products (:func:`single_frame_tracks`,
  :func:`inner_product_matchings`).

Both trackers also return the grouping's own masks: tracked with the same matchings, they say
whether the grouping (the k-partition, the attention) follows the objects through the clip, or
only the decoder does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from cutslots.models.encoders import check_images
from cutslots.models.frame_pair import FramePairAutoencoder


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
