"""The groupings: encoder features -> slots and their masks.

All follow the grouping contract of :class:`cutslots.models.autoencoder.SlotAutoencoder`:
``features (B, C, H, W) -> {"slots": (B, K, D), "masks": (B, K, H, W)}``.

- :class:`CutSlotGrouping` (Pervez et al., 2023, Alg. 2): a learned position embedding is
  added to the encoder features, the features are k-partitioned by relaxed s-t cuts
  (:mod:`cutslots.nn.partition`), each part's masked features are pooled and an MLP turns the
  k pooled vectors into slots.
- :class:`SlotAttentionGrouping` (Locatello et al., 2020): soft position embedding, LayerNorm
  and a 2-layer MLP on every feature vector, then :class:`~cutslots.nn.slot_attention.SlotAttention`;
  optionally with every iteration's attention diffused by the random walker over learned edges.
- :class:`RandomWalkerGrouping`: the k-partition of the cut model with the random walker
  (:class:`~cutslots.qp.RandomWalkerQP`) in place of the cuts: CNN edges and unaries, masks = x.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cutslots.checks import check_positive_float, check_positive_int
from cutslots.nn.partition import BackgroundKPartition, KPartition, Relaxation, WeightActivation, score_cnn
from cutslots.nn.position import LearnedPositionEmbedding, SoftPositionEmbed
from cutslots.nn.slot_attention import SlotAttention
from cutslots.qp import RandomWalkerQP
from cutslots.qp.cut import Engine
from cutslots.qp.grid_graph import CutForm

Pooling = Literal["mean", "masked_mean"]
# Where the learned position embedding goes: into what is cut and what is pooled (Alg. 2),
# into the pooled features only (the cut sees appearance alone), or nowhere.
PositionUse = Literal["cut_and_pool", "pool_only", "none"]
POSITION_USES: tuple[str, ...] = ("cut_and_pool", "pool_only", "none")
POOLINGS: tuple[str, ...] = ("mean", "masked_mean")
# How Slot Attention's attention is used: as is, or diffused by the random walker.
Diffusion = Literal["none", "random_walker"]
DIFFUSIONS: tuple[str, ...] = ("none", "random_walker")
# How the random-walker k-partition turns CNN scores into unaries.
Unaries = Literal["softplus", "softmax", "balanced"]
UNARIES: tuple[str, ...] = ("softplus", "softmax", "balanced")
# Mask mass (in pixels) added to the denominator of the masked mean: a part with almost no
# pixels gets a slot near 0 instead of its few pixels' features blown up.
_POOLING_EPS = 1.0


def pool(masks: Tensor, values: Tensor, pooling: Pooling) -> Tensor:
    """masks (B, k, H, W), values (B, C, H, W) -> (B, k, C): the masked values' mean over the
    grid (``"mean"``, Alg. 2) or over each part, ``sum(m f) / (sum(m) + 1)`` (``"masked_mean"``)."""
    pooled = torch.einsum("bkhw,bchw->bkc", masks, values)  # (B, k, C)
    if pooling == "mean":
        return pooled / (masks.shape[-2] * masks.shape[-1])
    return pooled / (masks.sum(dim=(-2, -1)).unsqueeze(-1) + _POOLING_EPS)  # (B, k, C)


def _check_pooling(pooling: Pooling) -> Pooling:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return pooling


def _position_embedding(use: PositionUse, channels: int, height: int, width: int) -> nn.Module:
    """The learned position embedding of a partition grouping, or the identity for ``"none"``."""
    if use not in POSITION_USES:
        raise ValueError(f"position_embedding must be one of {POSITION_USES}, got {use!r}")
    return nn.Identity() if use == "none" else LearnedPositionEmbedding(channels, height, width)


def _slot_mlp(channels: int, hidden: int, slot_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, slot_dim))


class CutSlotGrouping(nn.Module):
    """features (B, C, H, W) -> {"slots": (B, k, slot_dim), "masks": (B, k, H, W)}.

    slots = MLP(pool(masks, features + position)), masks = partition(features + position),
    k = num_slots (``position_embedding="cut_and_pool"``, Alg. 2; ``"pool_only"`` cuts the
    features without the position, ``"none"`` uses no position embedding), where ``pool``
    is the mean over the H x W grid of the masked features (``"mean"``, Alg. 2: a part's
    slot scales with its area) or their mean over the part itself, ``sum(m f) / (sum(m) + 1)``
    (``"masked_mean"``: a small part's slot describes its pixels as fully as a large one's).
    ``weight_activation``, ``feature_mlp``, ``form``, ``engine``, ``relaxation`` and ``init_scale``
    are passed to :class:`KPartition`.

    Args:
        in_channels: C.
        num_slots: k (>= 2 with a background slot, >= 1 without).
        slot_dim: D.
        height: height of the feature grid.
        width: width of the feature grid.
        gamma: cut QP regulariser, cutslots' convention ``1/2 gamma |z|^2`` (paper's x 2).
        background_slot: slot 0 is a background slot (:class:`BackgroundKPartition`) if True,
            else all slots come from one :class:`KPartition`.
        temperature: softmax temperature among the object slots.
        bg_temperature: temperature of the background/foreground split (background only).
        partition_hidden: width of the edge-weight CNN (and of the optional feature MLP).
        mlp_hidden: hidden width of the slot MLP.
        position_embedding: ``"cut_and_pool"``, ``"pool_only"`` or ``"none"`` (above).
        pooling: ``"mean"`` or ``"masked_mean"`` (above).
    """

    def __init__(
        self,
        in_channels: int,
        num_slots: int,
        *,
        slot_dim: int,
        height: int,
        width: int,
        gamma: float = 1.0,
        background_slot: bool = True,
        temperature: float = 0.5,
        bg_temperature: float = 0.1,
        partition_hidden: int = 64,
        mlp_hidden: int = 128,
        weight_activation: WeightActivation = "softplus",
        feature_mlp: bool = False,
        form: CutForm = "paper",
        engine: Engine = "auto",
        relaxation: Relaxation = "cut",
        init_scale: float = 1.0,
        position_embedding: PositionUse = "cut_and_pool",
        pooling: Pooling = "mean",
    ) -> None:
        super().__init__()
        self.pooling = _check_pooling(pooling)
        check_positive_int("num_slots", num_slots)
        check_positive_int("slot_dim", slot_dim)
        check_positive_int("mlp_hidden", mlp_hidden)
        if not isinstance(background_slot, bool):
            raise TypeError(f"background_slot must be a bool, got {type(background_slot).__name__}")
        if background_slot and num_slots < 2:
            raise ValueError(f"num_slots must be >= 2 with a background slot, got {num_slots}")
        self.position = _position_embedding(position_embedding, in_channels, height, width)
        self.num_slots, self.slot_dim = num_slots, slot_dim
        self.position_use = position_embedding
        options: dict[str, Any] = dict(
            height=height,
            width=width,
            gamma=gamma,
            temperature=temperature,
            hidden=partition_hidden,
            weight_activation=weight_activation,
            feature_mlp=feature_mlp,
            form=form,
            engine=engine,
            relaxation=relaxation,
            init_scale=init_scale,
        )
        self.partition: KPartition = (
            BackgroundKPartition(in_channels, num_slots, bg_temperature=bg_temperature, **options)
            if background_slot
            else KPartition(in_channels, num_slots, **options)
        )
        self.mlp = _slot_mlp(in_channels, mlp_hidden, slot_dim)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        positioned = self.position(features)  # (B, C, H, W); validates the shape
        cut_input = features if self.position_use == "pool_only" else positioned
        out = self.partition(cut_input, values=positioned)  # pool_only pools what was not cut
        pooled = pool(out.masks, out.values, self.pooling)  # (B, k, C)
        return {"slots": self.mlp(pooled), "masks": out.masks}  # (B, k, D), (B, k, H, W)


class SlotAttentionGrouping(nn.Module):
    """features (B, C, h, w) -> {"slots": (B, K, slot_dim), "masks": (B, K, h, w)}.

    ``resolution`` is the (h, w) of the features, needed by the position embedding;
    ``hidden_dim`` is the width of Slot Attention's MLP. ``diffusion="random_walker"``: a small
    CNN reads edge weights ``(B, 2, h, w)`` (softplus) off the features, and every iteration's
    attention, as unaries, is diffused over them by :class:`~cutslots.qp.RandomWalkerQP` before
    the slots are updated: topology-aware attention, still with exchangeable slots. The masks
    are the last iteration's (diffused) attention. The edge CNN's last layer starts at
    ``edge_init`` everywhere (its bias is ``softplus^-1(edge_init)``, its weights 0.1x the default):
    the attention unaries sum to 1 per pixel, so small edges make the first diffusions nearly the
    identity, and the slots separate before the walker smooths their attention (edges that start
    at softplus(0) = 0.69 averaged the attention of the still-alike slots: a collapse).
    """

    def __init__(
        self,
        in_channels: int,
        num_slots: int,
        *,
        slot_dim: int,
        resolution: tuple[int, int],
        iters: int = 3,
        hidden_dim: int = 128,
        diffusion: Diffusion = "none",
        edge_hidden: int = 32,
        edge_init: float = 0.05,
    ) -> None:
        super().__init__()
        edge_init = check_positive_float("edge_init", edge_init)
        if diffusion not in DIFFUSIONS:
            raise ValueError(f"diffusion must be one of {DIFFUSIONS}, got {diffusion!r}")
        self.position = SoftPositionEmbed(in_channels, resolution)
        self.norm = nn.LayerNorm(in_channels)
        self.mlp = nn.Sequential(nn.Linear(in_channels, in_channels), nn.ReLU(), nn.Linear(in_channels, slot_dim))
        self.slot_attention = SlotAttention(num_slots, slot_dim, iters=iters, hidden_dim=hidden_dim)
        self.edges: nn.Module | None = None
        if diffusion == "random_walker":
            edges = score_cnn(in_channels, edge_hidden, 2, init_scale=0.1)
            last = edges[-1]
            assert isinstance(last, nn.Conv2d) and last.bias is not None
            with torch.no_grad():
                last.bias.fill_(math.log(math.expm1(edge_init)))  # softplus(bias) = edge_init
            self.edges = edges
            self.walker = RandomWalkerQP(*resolution, on_nonconvergence="warn")

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        features = self.position(features)  # (B, C, h, w); validates the shape
        batch, _, h, w = features.shape
        tokens = self.mlp(self.norm(features.flatten(2).transpose(1, 2)))  # (B, h*w, D)
        diffuse = None
        if self.edges is not None:
            edges = F.softplus(self.edges(features))  # (B, 2, h, w)

            def diffuse(attention: Tensor) -> Tensor:  # (B, K, h*w) -> (B, K, h*w)
                return self.walker(edges, attention.unflatten(2, (h, w))).flatten(2)

        slots, attention = self.slot_attention(tokens, diffuse=diffuse)  # (B, K, D), (B, K, h*w)
        return {"slots": slots, "masks": attention.reshape(batch, -1, h, w)}


class RandomWalkerGrouping(nn.Module):
    """features (B, C, H, W) -> {"slots": (B, k, slot_dim), "masks": (B, k, H, W)}: a k-partition
    by the random walker, in the paper's style (Alg. 1-2 with the cut replaced).

    The 3-layer CNN of the partitions outputs 2 edge channels (through softplus) and k unary
    scores s. ``unaries="softplus"``: ``u = softplus(s) + unary_floor`` (every pixel has some
    unary; the parts do not compete for it); ``"softmax"``: ``u = softmax(s / temperature)``
    over the parts, Alg. 1's masks with the cuts' output replaced by the scores, which the
    walker then diffuses over the edges. ``"balanced"``: the softplus unaries, each part's
    divided by its mean over the image, so every part brings the same unary mass to every
    image: no part can fade out of every image (a dead slot). The masks are the random
    walker's solution ``x`` (:class:`~cutslots.qp.RandomWalkerQP`, plain or IRLS), which sums
    to 1 over the parts.
    Position embedding and slot pooling as :class:`CutSlotGrouping`.
    """

    def __init__(
        self,
        in_channels: int,
        num_slots: int,
        *,
        slot_dim: int,
        height: int,
        width: int,
        hidden: int = 64,
        mlp_hidden: int = 128,
        init_scale: float = 1.0,
        position_embedding: PositionUse = "cut_and_pool",
        pooling: Pooling = "mean",
        mode: Literal["plain", "irls"] = "plain",
        iterations: int = 0,
        unaries: Unaries = "softplus",
        temperature: float = 0.5,
        unary_floor: float = 1e-3,
    ) -> None:
        super().__init__()
        if unaries not in UNARIES:
            raise ValueError(f"unaries must be one of {UNARIES}, got {unaries!r}")
        self.unaries = unaries
        self.temperature = check_positive_float("temperature", temperature)
        check_positive_int("num_slots", num_slots)
        check_positive_int("slot_dim", slot_dim)
        self.position = _position_embedding(position_embedding, in_channels, height, width)
        self.num_slots, self.slot_dim = num_slots, slot_dim
        self.position_use, self.pooling = position_embedding, _check_pooling(pooling)
        self.unary_floor = check_positive_float("unary_floor", unary_floor)
        self.cnn = score_cnn(in_channels, hidden, 2 + num_slots, init_scale)
        self.walker = RandomWalkerQP(height, width, mode=mode, iterations=iterations, on_nonconvergence="warn")
        self.mlp = _slot_mlp(in_channels, mlp_hidden, slot_dim)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        positioned = self.position(features)  # (B, C, H, W)
        scores = self.cnn(features if self.position_use == "pool_only" else positioned)  # (B, 2 + k, H, W)
        edges = F.softplus(scores[:, :2]).contiguous()  # (B, 2, H, W)
        if self.unaries == "softmax":
            unaries = F.softmax(scores[:, 2:] / self.temperature, dim=1)  # (B, k, H, W)
        else:
            unaries = F.softplus(scores[:, 2:]) + self.unary_floor  # (B, k, H, W)
            if self.unaries == "balanced":
                unaries = unaries / unaries.mean((2, 3), keepdim=True)  # (B, k, H, W), mean 1 per part
        masks = self.walker(edges, unaries)  # (B, k, H, W)
        return {"slots": self.mlp(pool(masks, positioned, self.pooling)), "masks": masks}
