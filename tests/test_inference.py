"""Video inference drivers: inner-product matchings, slot tracks of both model kinds, clip batches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from cutslots.experiments.inference import (
    ClipTracks,
    collate_clips,
    frame_pair_tracks,
    inner_product_matchings,
    single_frame_tracks,
)
from cutslots.metrics import chain_identities, hard_links
from cutslots.models.autoencoder import SlotAutoencoder
from cutslots.models.decoder import SpatialBroadcastDecoder
from cutslots.models.frame_pair import FramePairAutoencoder
from cutslots.nn.matcher import SlotMatcher


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
    model = FramePairAutoencoder(
        nn.Identity(), BandGrouping(), _decoder(), matcher=SlotMatcher(3, 3, gamma=1.0, temperature=0.01)
    )
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


# ----------------------------------------------------------------- batching


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


# ----------------------------------------------------------------- errors


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match=r"video must be a \(B, T, 3, H, W\) tensor with T >= 2"):
        single_frame_tracks(nn.Identity(), torch.zeros(1, 1, 3, 12, 12))
    with pytest.raises(TypeError, match="model must be a FramePairAutoencoder"):
        frame_pair_tracks(nn.Identity(), _band_video())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"slots must be a \(B, T, K, D\) tensor with T >= 2"):
        inner_product_matchings(torch.zeros(1, 1, 3, 2))
