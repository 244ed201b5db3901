"""Positional embeddings added to (B, C, H, W) feature maps.

- ``build_grid``: the 4-channel linear ramp grid (x, y, 1 - x, 1 - y) of Slot Attention
  (Locatello et al., 2020); x runs along the width, y along the height, both from 0 to 1.
- ``SoftPositionEmbed``: that grid projected by a Linear layer to ``channels`` and added
  (used by the Slot Attention encoder and by the spatial broadcast decoder).
- ``LearnedPositionEmbedding``: a free (1, C, H, W) parameter added to the features; the cut
  model adds it before partitioning (Pervez et al., 2023, Alg. 2) so that the learned edge
  weights can depend on position.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cutslots.checks import check_positive_int


def build_grid(h: int, w: int) -> Tensor:
    """Linear ramp grid of shape (1, 4, h, w) with channels (x, y, 1 - x, 1 - y).

    ``x[i, j] = j / (w - 1)`` and ``y[i, j] = i / (h - 1)`` (0 when the side has one pixel).
    """
    check_positive_int("h", h)
    check_positive_int("w", w)
    ys = torch.linspace(0.0, 1.0, h)
    xs = torch.linspace(0.0, 1.0, w)
    y, x = torch.meshgrid(ys, xs, indexing="ij")  # both (h, w)
    grid = torch.stack([x, y, 1.0 - x, 1.0 - y], dim=0)
    return grid.unsqueeze(0)


def _check_features(features: Tensor, channels: int, size: tuple[int, int]) -> None:
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    expected = (channels, *size)
    if features.dim() != 4 or tuple(features.shape[1:]) != expected:
        raise ValueError(f"features must have shape (B, {channels}, {size[0]}, {size[1]}), got {tuple(features.shape)}")


class SoftPositionEmbed(nn.Module):
    """Adds ``Linear(build_grid(H, W))`` to features of shape (B, channels, H, W)."""

    grid: Tensor

    def __init__(self, channels: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        check_positive_int("channels", channels)
        if not isinstance(resolution, (tuple, list)) or len(resolution) != 2:
            raise ValueError(f"resolution must be a pair (H, W), got {resolution!r}")
        check_positive_int("resolution[0]", resolution[0])
        check_positive_int("resolution[1]", resolution[1])
        self.channels = channels
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.proj = nn.Linear(4, channels)
        # Not persistent: the grid is a function of the resolution, not a learned state.
        self.register_buffer("grid", build_grid(*self.resolution), persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        """features: (B, C, H, W) -> (B, C, H, W)."""
        _check_features(features, self.channels, self.resolution)
        # Linear acts on the last axis, so move the 4 grid channels there and back.
        embedding = self.proj(self.grid.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return features + embedding


class LearnedPositionEmbedding(nn.Module):
    """Adds a learned parameter of shape (1, channels, h, w) to (B, channels, h, w) features."""

    def __init__(self, channels: int, h: int, w: int) -> None:
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("h", h)
        check_positive_int("w", w)
        self.channels = channels
        self.resolution = (h, w)
        # Small init so the embedding starts as a mild perturbation of the features.
        self.embedding = nn.Parameter(0.02 * torch.randn(1, channels, h, w))

    def forward(self, features: Tensor) -> Tensor:
        """features: (B, C, h, w) -> (B, C, h, w)."""
        _check_features(features, self.channels, self.resolution)
        return features + self.embedding
