"""Spatial broadcast decoder (Watters et al., 2019) as used by Slot Attention.

Each slot is decoded on its own: tiled onto a ``broadcast`` x ``broadcast`` grid, given a soft
position embedding, upsampled by stride-2 transposed 5x5 convolutions to ``out_size``, passed
through ``hidden_layers`` stride-1 5x5 convolutions there (Slot Attention's CLEVR decoder has 1;
Watters et al.'s full-grid decoder 4) and ``pointwise_layers`` 1x1 convolutions of
``pointwise_channels``, then mapped to 4 channels (RGB + alpha logit). Alpha logits are
normalised with a softmax across slots, so the masks partition every pixel, and the image is the
mask-weighted sum of the per-slot RGB reconstructions. RGB is left unbounded (no squashing), in
the [0, 1] image scale.

Why the 1x1 layers: on a broadcast grid of the image size the first 5x5 layer sees a slot plus a
linear position embedding, so each of its channels is a hinge ``relu(a x + b y + f(slot))``
whose direction is fixed and only whose offset the slot sets (away from the zero-padded border).
One such layer paints every object as the same family of blurred convex bumps; a pixelwise layer
on top composes the hinges (docs/discovery.md, "A pixelwise decoder head") at a quarter of the
products of a 5x5 layer of 32 channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cutslots.checks import check_nonnegative_int, check_positive_int
from cutslots.nn.position import SoftPositionEmbed


def _num_upsamplings(out_size: int, broadcast: int) -> int:
    """n with out_size == broadcast * 2**n; raises if there is none."""
    ratio, remainder = divmod(out_size, broadcast)
    if remainder != 0 or ratio & (ratio - 1) != 0:
        raise ValueError(
            f"out_size must be broadcast * 2**n for an integer n >= 0 (broadcast={broadcast}), got out_size={out_size}"
        )
    return ratio.bit_length() - 1


class SpatialBroadcastDecoder(nn.Module):
    """forward(slots (B, K, D)) -> recons (B, K, 3, H, W), masks (B, K, H, W), image (B, 3, H, W)
    with H = W = out_size."""

    def __init__(
        self,
        slot_dim: int,
        *,
        out_size: int = 128,
        broadcast: int = 8,
        channels: int = 64,
        hidden_layers: int = 1,
        pointwise_layers: int = 0,
        pointwise_channels: int = 64,
    ) -> None:
        super().__init__()
        for name, value in [
            ("slot_dim", slot_dim),
            ("out_size", out_size),
            ("broadcast", broadcast),
            ("channels", channels),
            ("hidden_layers", hidden_layers),
            ("pointwise_channels", pointwise_channels),
        ]:
            check_positive_int(name, value)
        check_nonnegative_int("pointwise_layers", pointwise_layers)
        self.slot_dim = slot_dim
        self.out_size = out_size
        self.broadcast = broadcast
        self.position = SoftPositionEmbed(slot_dim, (broadcast, broadcast))

        layers: list[nn.Module] = []
        in_channels = slot_dim
        for _ in range(_num_upsamplings(out_size, broadcast)):
            # kernel 5, padding 2, output_padding 1: exactly doubles the side.
            layers += [
                nn.ConvTranspose2d(in_channels, channels, 5, stride=2, padding=2, output_padding=1),
                nn.ReLU(),
            ]
            in_channels = channels
        for _ in range(hidden_layers):
            layers += [nn.ConvTranspose2d(in_channels, channels, 5, stride=1, padding=2), nn.ReLU()]
            in_channels = channels
        for _ in range(pointwise_layers):
            layers += [nn.Conv2d(in_channels, pointwise_channels, 1), nn.ReLU()]
            in_channels = pointwise_channels
        layers.append(nn.ConvTranspose2d(in_channels, 4, 3, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, slots: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not isinstance(slots, Tensor) or not slots.is_floating_point():
            raise TypeError("slots must be a floating-point torch.Tensor")
        if slots.dim() != 3 or slots.shape[2] != self.slot_dim or slots.shape[1] < 1:
            raise ValueError(f"slots must have shape (B, K, {self.slot_dim}) with K >= 1, got {tuple(slots.shape)}")
        batch, num_slots, dim = slots.shape
        size = self.broadcast
        grid = slots.reshape(batch * num_slots, dim, 1, 1).expand(-1, -1, size, size)
        out = self.net(self.position(grid))  # (B*K, 4, H, W)
        out = out.reshape(batch, num_slots, 4, self.out_size, self.out_size)
        recons, alpha = out[:, :, :3], out[:, :, 3]
        masks = torch.softmax(alpha, dim=1)  # over slots: every pixel is shared out in full
        image = (masks.unsqueeze(2) * recons).sum(dim=1)
        return recons, masks, image
