"""Image encoders producing the feature grid that a grouping module splits into slots.

Both encoders take images (B, 3, H, W) in [0, 1], rescale them to [-1, 1] and return features
(B, C, out_size, out_size). The first convolution downsamples by the integer factor
``H // out_size`` (chosen per call from the input size, same weights), so the output grid is
always ``out_size`` x ``out_size``: 128x128 images with ``out_size=64`` use stride 2 (the
64x64 feature grid of Pervez et al., 2023, App. D), 64x64 images use stride 1. The factor
must be at most the first kernel's width so that no pixel is skipped.

- ``CNNEncoder`` (CLEVR setting, as in Slot Attention): four 5x5 convolutions with ReLU.
- ``ResNetEncoder`` (ClevrTex setting): a 5x5 stem convolution followed by ``blocks`` residual
  blocks of two 3x3 convolutions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cutslots.checks import check_positive_int

_STEM_KERNEL = 5
# Values this far outside [0, 1] are rounding noise from resizing, not a wrong scale.
_RANGE_TOLERANCE = 1e-3


def check_images(images: Tensor) -> None:
    """Raise unless ``images`` is a finite float tensor (B, 3, H, W) with values in [0, 1]."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor in [0, 1], got dtype {images.dtype}")
    if images.numel() == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")
    # One pass and one host sync: a NaN anywhere makes the extrema NaN.
    low, high = (float(v) for v in torch.aminmax(images.detach()))
    if math.isnan(low) or math.isnan(high):
        raise ValueError("images must be finite, found NaN")
    if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
        raise ValueError(f"images must have values in [0, 1], found range [{low:.4g}, {high:.4g}]")


def _downsample_factor(images: Tensor, out_size: int) -> int:
    """Stride of the stem convolution mapping (H, W) to (out_size, out_size)."""
    h, w = images.shape[-2:]
    factor = h // out_size
    if h != w or h % out_size != 0 or not 1 <= factor <= _STEM_KERNEL:
        raise ValueError(
            f"images must be square with side out_size * f for an integer f in "
            f"[1, {_STEM_KERNEL}] (out_size={out_size}), got {h}x{w}"
        )
    return factor


class _StridedStem(nn.Conv2d):
    """5x5 'same'-padded convolution whose stride is given at call time."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, _STEM_KERNEL, padding=_STEM_KERNEL // 2)

    def forward(self, x: Tensor, stride: int = 1) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, stride=stride, padding=self.padding)


class CNNEncoder(nn.Module):
    """Four 5x5 convolutions (3 -> C -> C -> C -> C), each followed by ReLU.

    forward(images (B, 3, H, W) in [0, 1]) -> features (B, C, out_size, out_size).
    """

    def __init__(self, channels: int = 64, out_size: int = 64) -> None:
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("out_size", out_size)
        self.channels = channels
        self.out_size = out_size
        self.stem = _StridedStem(3, channels)
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 5, padding=2) for _ in range(3))

    def forward(self, images: Tensor) -> Tensor:
        check_images(images)
        stride = _downsample_factor(images, self.out_size)
        x = F.relu(self.stem(images * 2.0 - 1.0, stride))
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


class _ResidualBlock(nn.Module):
    """relu(x + conv3x3(relu(conv3x3(x)))), channels preserved."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class ResNetEncoder(nn.Module):
    """5x5 stem convolution + ReLU, then ``blocks`` residual blocks at full feature resolution.

    forward(images (B, 3, H, W) in [0, 1]) -> features (B, C, out_size, out_size).
    """

    def __init__(self, channels: int = 100, blocks: int = 4, out_size: int = 64) -> None:
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("blocks", blocks)
        check_positive_int("out_size", out_size)
        self.channels = channels
        self.out_size = out_size
        self.stem = _StridedStem(3, channels)
        self.blocks = nn.Sequential(*(_ResidualBlock(channels) for _ in range(blocks)))

    def forward(self, images: Tensor) -> Tensor:
        check_images(images)
        stride = _downsample_factor(images, self.out_size)
        return self.blocks(F.relu(self.stem(images * 2.0 - 1.0, stride)))
