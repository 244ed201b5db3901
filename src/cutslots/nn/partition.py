"""k-partition of a feature grid by k relaxed s-t cuts (Pervez et al., 2023, Alg. 1).

A 3-layer CNN (3x3 convolutions, ReLU between) maps features ``(B, C, H, W)`` to ``6 n``
channels: channels ``6 i .. 6 i + 5`` are the edge weights of cut ``i`` in the order of
``cutslots.qp.EDGE_CHANNELS`` (right, left, down, up, source, sink). A non-negative
activation (softplus by default, as the authors use) keeps them valid cut capacities. The n
cut QPs are solved as one batch of ``B n`` by a single :class:`cutslots.qp.GridCutQP`.

A pixel's vertex variable ``p`` is larger the more the pixel leans to the source side of its
cut (the relaxation does not confine it between ``p_t`` and ``p_s``), so a high ``p`` means
"belongs to this part". Normalising ``p`` with a softmax over the
parts gives soft masks that sum to 1 at every pixel; the temperature sets how hard they are
(``-> 0``: one-hot at the argmax of ``p``; large: uniform).

What the relaxation implies for users (derivation in ``docs/cut-qp.md``):
``p`` is affine in the weights with slope ``1/gamma``, so ``gamma`` and the temperature both
scale the mask logits; only the antisymmetric part of a pair of opposite neighbour edges
moves ``p`` (the smoothing comes from the fixed grid Laplacian of the QP).

- :class:`ParallelCuts`: features -> ``p (B, n, H, W)`` and ``weights (B, n, 6, H, W)``.
- :class:`UnaryScores`: the ablations of the cut with the same CNN, one output channel ``u``
  per part: ``p = u`` (``"identity"``) or ``p = (L_grid + 2 I)^-1 u`` (``"green_filter"``, the
  fixed filter the paper's relaxation applies to the divergence of its weights).
- :class:`KPartition`: k cuts, one softmax -> k masks and masked features.
- :class:`BackgroundKPartition`: a background/foreground 2-partition times a
  (k-1)-partition of the foreground.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cutslots.checks import check_finite, check_positive_float, check_positive_int
from cutslots.qp import GridCutQP
from cutslots.qp.cut import Engine
from cutslots.qp.cut_closed_form import dct_matrix, grid_laplacian_eigenvalues
from cutslots.qp.grid_graph import CutForm

WeightActivation = Literal["softplus", "relu", "none"]
WEIGHT_ACTIVATIONS: tuple[str, ...] = ("softplus", "relu", "none")
# What turns the CNN output into part scores p: the cut QP, or one of its two ablations.
Relaxation = Literal["cut", "identity", "green_filter"]
RELAXATIONS: tuple[str, ...] = ("cut", "identity", "green_filter")
_NUM_EDGE_CHANNELS = 6


@dataclass
class PartitionOutput:
    """Result of a partition layer.

    Attributes:
        masks: ``(B, k, H, W)`` soft masks, non-negative, summing to 1 over k.
        values: ``(B, C, H, W)`` what the masks cut out: the features (or the ``values`` passed
            to ``forward``), through the optional feature MLP.
        p: ``(B, n, H, W)`` raw vertex variables of the n cuts (n = k for ``KPartition``;
            n = k + 1 for ``BackgroundKPartition``: background cut, foreground cut, then the
            k - 1 object cuts).
        weights: ``(B, n, 6, H, W)`` the edge weights the cuts were solved with
            (``(B, n, 1, H, W)``, the unaries, for the ablations of :class:`UnaryScores`).
    """

    masks: Tensor
    values: Tensor
    p: Tensor
    weights: Tensor

    @property
    def features(self) -> Tensor:
        """``(B, k, C, H, W)`` the masked values of Alg. 1, built on demand (k x the memory)."""
        return self.masks.unsqueeze(2) * self.values.unsqueeze(1)


def check_features(features: Tensor, channels: int, height: int, width: int) -> None:
    """Raise unless ``features`` is a float32/float64 (B >= 1, channels, height, width); in debug
    mode (:mod:`cutslots.checks`) also unless it is finite."""
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"features must be float32 or float64, got {features.dtype}")
    expected = (channels, height, width)
    if features.dim() != 4 or tuple(features.shape[1:]) != expected or features.shape[0] < 1:
        raise ValueError(
            f"features must have shape (B, {channels}, {height}, {width}) with B >= 1 "
            f"(the layer's channels and grid), got {tuple(features.shape)}"
        )
    check_finite("features", features)


def score_cnn(in_channels: int, hidden: int, out_channels: int, init_scale: float) -> nn.Sequential:
    """The 3-layer CNN (3x3 convolutions, ReLU between) of the partitions; ``init_scale``
    multiplies the default initialisation of its last layer (weights and bias)."""
    init_scale = check_positive_float("init_scale", init_scale)
    cnn = nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, out_channels, 3, padding=1),
    )
    with torch.no_grad():
        for param in cnn[-1].parameters():
            param.mul_(init_scale)
    return cnn


def pixel_mlp(channels: int, hidden: int) -> nn.Module:
    """Per-pixel 2-layer MLP as 1x1 convolutions: (B, C, H, W) -> (B, C, H, W)."""
    return nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))


class ParallelCuts(nn.Module):
    """n relaxed s-t cuts whose edge weights a CNN reads off the features.

    forward(features (B, C, H, W)) -> ``p (B, n, H, W)``, ``weights (B, n, 6, H, W)``.

    Args:
        in_channels: C.
        num_cuts: n.
        height: grid height (the features' spatial size).
        width: grid width.
        gamma: QP regulariser in cutslots' convention ``1/2 gamma |z|^2`` (paper's gamma x 2).
        hidden: channels of the CNN's two hidden layers.
        weight_activation: applied to the CNN output: ``"softplus"``, ``"relu"`` or ``"none"``.
        form: passed to :class:`cutslots.qp.GridCutQP`.
        engine: passed to :class:`cutslots.qp.GridCutQP`.
        init_scale: multiplies the initial weights of the CNN's last layer (> 0).
    """

    def __init__(
        self,
        in_channels: int,
        num_cuts: int,
        *,
        height: int,
        width: int,
        gamma: float,
        hidden: int = 64,
        weight_activation: WeightActivation = "softplus",
        form: CutForm = "paper",
        engine: Engine = "auto",
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_cuts", num_cuts)
        check_positive_int("hidden", hidden)
        if weight_activation not in WEIGHT_ACTIVATIONS:
            raise ValueError(f"weight_activation must be one of {WEIGHT_ACTIVATIONS}, got {weight_activation!r}")
        self.in_channels, self.num_cuts = in_channels, num_cuts
        self.weight_activation = weight_activation
        self.cnn = score_cnn(in_channels, hidden, _NUM_EDGE_CHANNELS * num_cuts, init_scale)
        self.qp = GridCutQP(height, width, gamma, form=form, engine=engine)
        self.height, self.width = self.qp.height, self.qp.width

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        check_features(features, self.in_channels, self.height, self.width)
        batch, _, h, w = features.shape
        raw = self.cnn(features)
        if self.weight_activation == "softplus":
            raw = F.softplus(raw)
        elif self.weight_activation == "relu":
            raw = F.relu(raw)
        weights = raw.reshape(batch, self.num_cuts, _NUM_EDGE_CHANNELS, h, w)
        # All B * n cuts share the grid, so they are one batch for the solver.
        solution = self.qp(weights.reshape(batch * self.num_cuts, _NUM_EDGE_CHANNELS, h, w))
        return solution.p.reshape(batch, self.num_cuts, h, w), weights


class UnaryScores(nn.Module):
    """Ablations of :class:`ParallelCuts`: the same CNN outputs one channel ``u`` per part.

    forward(features (B, C, H, W)) -> ``p (B, n, H, W)``, ``u (B, n, 1, H, W)``, with
    ``p = u`` for ``"identity"`` and ``p = (L_grid + 2 I)^-1 u`` for ``"green_filter"``: the
    free-boundary grid Laplacian's fixed smoothing, the part of the paper's relaxation that
    does not depend on the weights (``docs/cut-qp.md``), here applied to unconstrained scores
    instead of the divergence of non-negative edge weights. Applied in the DCT basis, which
    diagonalises it; autograd differentiates the two matrix products.

    Args: as :class:`ParallelCuts`; ``relaxation`` is ``"identity"`` or ``"green_filter"``.
    """

    def __init__(
        self,
        in_channels: int,
        num_cuts: int,
        *,
        height: int,
        width: int,
        relaxation: Relaxation,
        hidden: int = 64,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("num_cuts", num_cuts),
            ("height", height),
            ("width", width),
            ("hidden", hidden),
        ):
            check_positive_int(name, value)
        if relaxation not in ("identity", "green_filter"):
            raise ValueError(f"relaxation must be 'identity' or 'green_filter', got {relaxation!r}")
        self.in_channels, self.num_cuts, self.height, self.width = in_channels, num_cuts, height, width
        self.relaxation = relaxation
        self.cnn = score_cnn(in_channels, hidden, num_cuts, init_scale)
        self.register_buffer("dct_h", dct_matrix(height, torch.float32), persistent=False)  # (H, H)
        self.register_buffer("dct_w", dct_matrix(width, torch.float32), persistent=False)  # (W, W)
        green = 1 / (grid_laplacian_eigenvalues(height, width, torch.float32, "cpu") + 2)
        self.register_buffer("green", green, persistent=False)  # (H, W) spectrum of (L + 2I)^-1

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        check_features(features, self.in_channels, self.height, self.width)
        u = self.cnn(features)  # (B, n, H, W)
        if self.relaxation == "identity":
            return u, u.unsqueeze(2)
        dct_h, dct_w = self.dct_h.to(u.dtype), self.dct_w.to(u.dtype)
        spectrum = dct_h @ u @ dct_w.T  # (B, n, H, W) DCT-II along both axes
        p = dct_h.T @ (spectrum * self.green.to(u.dtype)) @ dct_w  # (B, n, H, W)
        return p, u.unsqueeze(2)


def part_scores(
    relaxation: Relaxation,
    in_channels: int,
    num_cuts: int,
    *,
    height: int,
    width: int,
    gamma: float,
    hidden: int,
    weight_activation: WeightActivation,
    form: CutForm,
    engine: Engine,
    init_scale: float,
) -> ParallelCuts | UnaryScores:
    """The scorer of a partition: :class:`ParallelCuts` for ``"cut"``, else the ablation."""
    if relaxation == "cut":
        return ParallelCuts(
            in_channels,
            num_cuts,
            height=height,
            width=width,
            gamma=gamma,
            hidden=hidden,
            weight_activation=weight_activation,
            form=form,
            engine=engine,
            init_scale=init_scale,
        )
    if relaxation not in RELAXATIONS:
        raise ValueError(f"relaxation must be one of {RELAXATIONS}, got {relaxation!r}")
    return UnaryScores(
        in_channels, num_cuts, height=height, width=width, relaxation=relaxation, hidden=hidden, init_scale=init_scale
    )


class KPartition(nn.Module):
    """k-partition of features ``(B, C, H, W)`` by k parallel cuts (Alg. 1).

    ``masks = softmax(p / temperature)`` over the k parts; they cut out
    ``values = mlp(features)`` (``mlp`` = identity unless ``feature_mlp``), and
    ``PartitionOutput.features`` gives the masked values ``masks[:, i] * values``.
    ``forward(features, values=None)``: the cuts read ``features``; ``values`` (B, C', H, W),
    when given, is what the masks cut out instead (e.g. features plus a position embedding the
    cut should not see). forward -> :class:`PartitionOutput` with n = k.

    ``in_channels``, ``height``, ``width``, ``gamma``, ``hidden``, ``weight_activation``, ``form``,
    ``engine`` and ``init_scale`` are those of :class:`ParallelCuts`.

    Args:
        num_parts: k (>= 1).
        temperature: softmax temperature over the parts (> 0).
        feature_mlp: apply a per-pixel 2-layer MLP (1x1 convs, ``hidden`` wide) to the
            values before masking.
        relaxation: ``"cut"`` (the QP), or an ablation of :class:`UnaryScores`; the
            ablations ignore ``gamma``, ``weight_activation``, ``form`` and ``engine``.
    """

    min_parts = 1

    def __init__(
        self,
        in_channels: int,
        num_parts: int,
        *,
        height: int,
        width: int,
        gamma: float = 1.0,
        temperature: float = 0.5,
        hidden: int = 64,
        weight_activation: WeightActivation = "softplus",
        feature_mlp: bool = False,
        form: CutForm = "paper",
        engine: Engine = "auto",
        relaxation: Relaxation = "cut",
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        check_positive_int("num_parts", num_parts)
        if num_parts < self.min_parts:
            raise ValueError(
                f"num_parts must be >= {self.min_parts} (background + at least one object), got {num_parts}"
            )
        if not isinstance(feature_mlp, bool):
            raise TypeError(f"feature_mlp must be a bool, got {type(feature_mlp).__name__}")
        self.num_parts = num_parts
        self.temperature = check_positive_float("temperature", temperature)
        self.cuts = part_scores(
            relaxation,
            in_channels,
            self.num_cuts,
            height=height,
            width=width,
            gamma=gamma,
            hidden=hidden,
            weight_activation=weight_activation,
            form=form,
            engine=engine,
            init_scale=init_scale,
        )
        self.feature_mlp = pixel_mlp(in_channels, hidden) if feature_mlp else None

    @property
    def num_cuts(self) -> int:
        """n, the cuts solved per image."""
        return self.num_parts

    def part_masks(self, p: Tensor) -> Tensor:
        """p (B, n, H, W) -> masks (B, k, H, W)."""
        return torch.softmax(p / self.temperature, dim=1)

    def forward(self, features: Tensor, values: Tensor | None = None) -> PartitionOutput:
        p, weights = self.cuts(features)  # validates features
        masks = self.part_masks(p)  # (B, k, H, W)
        values = features if values is None else values
        if self.feature_mlp is not None:
            values = self.feature_mlp(values)  # (B, C, H, W)
        return PartitionOutput(masks, values, p, weights)


class BackgroundKPartition(KPartition):
    """Background slot plus a (k-1)-partition of the foreground.

    One :class:`ParallelCuts` solves k + 1 cuts: cuts 0 and 1 form the background/foreground
    2-partition, cuts 2 .. k the object partition. With

        ``bg, fg = softmax(p[:, 0:2] / bg_temperature)``   (over these 2 cuts)
        ``obj    = softmax(p[:, 2:]  / temperature)``      (over the k - 1 object cuts)

    the masks are ``[bg, fg * obj_1, ..., fg * obj_{k-1}]``, which sum to ``bg + fg = 1``.
    ``bg_temperature`` (default 0.1) thus applies only to the background/foreground split and
    ``temperature`` (default 0.5) only to the split of the foreground among the objects.
    forward -> :class:`PartitionOutput` with n = k + 1.

    Args: as :class:`KPartition`, with ``num_parts`` = k >= 2 counting the background.
    """

    min_parts = 2

    def __init__(self, in_channels: int, num_parts: int, *, bg_temperature: float = 0.1, **options: Any) -> None:
        super().__init__(in_channels, num_parts, **options)
        self.bg_temperature = check_positive_float("bg_temperature", bg_temperature)

    @property
    def num_cuts(self) -> int:
        return self.num_parts + 1

    def part_masks(self, p: Tensor) -> Tensor:
        bg_fg = torch.softmax(p[:, :2] / self.bg_temperature, dim=1)  # (B, 2, H, W)
        objects = torch.softmax(p[:, 2:] / self.temperature, dim=1)  # (B, k - 1, H, W)
        return torch.cat([bg_fg[:, :1], bg_fg[:, 1:] * objects], dim=1)  # (B, k, H, W)
