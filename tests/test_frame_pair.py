"""FramePairAutoencoder: combination rule, training signal, loss, errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from cutslots.models.decoder import SpatialBroadcastDecoder
from cutslots.models.encoders import CNNEncoder
from cutslots.models.frame_pair import FramePairAutoencoder
from cutslots.nn.grouping import SlotAttentionGrouping
from cutslots.nn.matcher import SlotMatcher

COLOURS = torch.eye(3)  # band k of a frame is pure red / green / blue


class BandGrouping(nn.Module):
    """features (B, C, h, w) -> slot k = mean feature of vertical band k (3 bands), with masks."""

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        bands = features.chunk(3, dim=-1)
        slots = torch.stack([band.mean(dim=(-2, -1)) for band in bands], dim=1)  # (B, 3, C)
        masks = torch.zeros(features.shape[0], 3, *features.shape[-2:])
        width = features.shape[-1] // 3
        for k in range(3):
            masks[:, k, :, k * width : (k + 1) * width] = 1.0
        return {"slots": slots, "masks": masks}


def _band_frames(orders: list[list[int]]) -> Tensor:
    """One 12x12 frame per order: band k has colour COLOURS[order[k]] -> (len(orders), 3, 12, 12)."""
    frames = torch.zeros(len(orders), 3, 12, 12)
    for i, order in enumerate(orders):
        for k, colour in enumerate(order):
            frames[i, :, :, 4 * k : 4 * k + 4] = COLOURS[colour][:, None, None]
    return frames


def _band_model() -> FramePairAutoencoder:
    torch.manual_seed(0)
    return FramePairAutoencoder(
        nn.Identity(),
        BandGrouping(),
        SpatialBroadcastDecoder(3, out_size=12, broadcast=3, channels=8),
        matcher=SlotMatcher(3, 3, gamma=1.0, temperature=0.01),
    )


def _tiny_model(num_slots: int = 3, dim: int = 8) -> FramePairAutoencoder:
    torch.manual_seed(0)
    return FramePairAutoencoder(
        CNNEncoder(channels=8, out_size=8),
        SlotAttentionGrouping(8, num_slots, slot_dim=dim, iters=2, resolution=(8, 8), hidden_dim=16),
        SpatialBroadcastDecoder(dim, out_size=16, broadcast=4, channels=8),
        matcher=SlotMatcher(num_slots, dim, gamma=1.0, temperature=0.2),
    )


def _moving_squares() -> Tensor:
    """Two pairs of 16x16 frames; a bright square moves by 2 pixels between the frames."""
    frames = torch.full((2, 2, 3, 16, 16), 0.1)
    for b, (y, x) in enumerate([(2, 3), (8, 6)]):
        frames[b, 0, b, y : y + 5, x : x + 5] = 0.9
        frames[b, 1, b, y + 2 : y + 7, x + 2 : x + 7] = 0.9
    return frames


def test_frame_two_is_decoded_in_frame_one_slot_order() -> None:
    # Frame 2 shows the bands of frame 1 permuted, so its slots are frame 1's slots permuted:
    # t = P s. The matcher recovers P, M t = s, and both frames get the same decoder input.
    model = _band_model()
    frames = torch.stack([_band_frames([[0, 1, 2], [2, 0, 1]]), _band_frames([[1, 2, 0], [1, 2, 0]])])
    with torch.no_grad():
        out = model(frames)
    expected = torch.tensor([[[0.0, 1, 0], [0, 0, 1], [1, 0, 0]], [[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]])
    torch.testing.assert_close(out["matching"], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(out["masks"][:, 1], out["masks"][:, 0], atol=1e-3, rtol=0)
    torch.testing.assert_close(out["recon"][:, 1], out["recon"][:, 0], atol=1e-3, rtol=0)
    # Per frame, the slots are the band colours in the frame's own order.
    torch.testing.assert_close(out["slots"][0, 1], COLOURS[[2, 0, 1]])
    assert out["grouping_masks"].shape == (2, 2, 3, 12, 12)
    assert out["paired_slots"].shape == (2, 3, 3)


def test_pair_of_tensors_equals_stacked_frames() -> None:
    model = _band_model()
    first, second = _band_frames([[0, 1, 2]]), _band_frames([[2, 1, 0]])
    with torch.no_grad():
        stacked = model(torch.stack([first, second], dim=1))
        paired = model((first, second))
    torch.testing.assert_close(paired["recon"], stacked["recon"])


def test_loss_is_sum_of_two_frame_mses() -> None:
    model = _tiny_model()
    frames = _moving_squares()
    with torch.no_grad():
        out = model(frames)
        loss = model.loss(frames, out)
    want = sum(((out["recon"][:, f] - frames[:, f]) ** 2).mean() for f in range(2))
    torch.testing.assert_close(loss, want)


def test_frame_two_masks_follow_frame_one_slot_order() -> None:
    # Same frame 2, frame 1 with bands 0 and 1 swapped: frame 1's slots 0 and 1 swap, so the
    # matching and frame 2's decoded masks (in frame 1's order) swap slots 0 and 1 as well.
    model = _band_model()
    second = _band_frames([[2, 0, 1]])
    with torch.no_grad():
        a = model((_band_frames([[0, 1, 2]]), second))
        b = model((_band_frames([[1, 0, 2]]), second))
    torch.testing.assert_close(a["slots"][:, 1], b["slots"][:, 1])
    swap = [1, 0, 2]
    torch.testing.assert_close(b["matching"], a["matching"][:, swap])
    torch.testing.assert_close(b["masks"][:, 1], a["masks"][:, 1, swap])
    assert float((a["masks"][:, 1, 0] - a["masks"][:, 1, 1]).abs().max()) > 1e-3  # the swap is visible


def test_loss_decreases_on_one_tiny_batch() -> None:
    model = _tiny_model()
    frames = _moving_squares()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def evaluate() -> float:
        torch.manual_seed(1)  # same Slot Attention initial noise for both evaluations
        with torch.no_grad():
            return float(model.loss(frames, model(frames)))

    before = evaluate()
    for _ in range(40):
        optimizer.zero_grad()
        loss = model.loss(frames, model(frames))
        loss.backward()
        optimizer.step()
    assert evaluate() < 0.5 * before


def test_bad_input_errors() -> None:
    model = _band_model()
    with pytest.raises(ValueError, match=r"frames must have shape \(B, 2, 3, H, W\), got \(1, 3, 3, 12, 12\)"):
        model(torch.zeros(1, 3, 3, 12, 12))
    with pytest.raises(ValueError, match=r"same shape.*\(1, 3, 12, 12\) and \(1, 3, 6, 6\)"):
        model((torch.zeros(1, 3, 12, 12), torch.zeros(1, 3, 6, 6)))
    with pytest.raises(TypeError, match="frames must be"):
        model([torch.zeros(1, 3, 12, 12)] * 3)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        model(torch.full((1, 2, 3, 12, 12), 2.0))
    frames = _band_frames([[0, 1, 2], [1, 2, 0]])[None]
    with torch.no_grad():
        out = model(frames)
    with pytest.raises(ValueError, match=r"out\['recon'\] has shape \(1, 2, 3, 12, 12\), frames has shape"):
        model.loss(torch.zeros(1, 2, 3, 24, 24), out)
    with pytest.raises(ValueError, match="out must contain 'recon'"):
        model.loss(frames, {})
    with pytest.raises(TypeError, match="matcher must be a SlotMatcher"):
        FramePairAutoencoder(nn.Identity(), BandGrouping(), nn.Identity(), matcher=nn.Identity())  # type: ignore[arg-type]
    # Grouping slots (B, 3, 3) do not fit a matcher built for 4 slots of dimension 3.
    wrong = FramePairAutoencoder(
        nn.Identity(), BandGrouping(), nn.Identity(), matcher=SlotMatcher(4, 3, gamma=1.0, temperature=1.0)
    )
    with pytest.raises(ValueError, match=r"s \(1, 3, 3\) and t \(1, 3, 3\)"):
        wrong(frames)
