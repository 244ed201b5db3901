"""Cut slot grouping (Pervez et al., 2023, Alg. 2).

``CutSlotGrouping``: a learned position embedding is added to the encoder features (unless
``position_embedding=False``), the
features are k-partitioned by relaxed s-t cuts (:mod:`cutslots.nn.partition`), each part's
masked features are averaged over the H x W grid and an MLP turns the k averages into slots.
It follows the grouping contract of :class:`cutslots.models.autoencoder.SlotAutoencoder`, so
encoder -> ``CutSlotGrouping`` -> spatial broadcast decoder is the paper's cut model
(:func:`cutslots.models.builders.build_cut_autoencoder`).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from cutslots.nn.partition import (BackgroundKPartition, KPartition, Relaxation, WeightActivation,
                                   check_positive_int)
from cutslots.nn.position import LearnedPositionEmbedding
from cutslots.qp.cut import Engine
from cutslots.qp.grid_graph import CutForm

Pooling = Literal["mean", "masked_mean"]
POOLINGS: tuple[str, ...] = ("mean", "masked_mean")
# Mask mass (in pixels) added to the denominator of the masked mean: a part with almost no
# pixels gets a slot near 0 instead of its few pixels' features blown up.
_POOLING_EPS = 1.0


class CutSlotGrouping(nn.Module):
    """features (B, C, H, W) -> {"slots": (B, k, slot_dim), "masks": (B, k, H, W)}.

    slots = MLP(pool(partition(features + position).features)), k = num_slots, where ``pool``
    is the mean over the H x W grid of the masked features (``"mean"``, Alg. 2: a part's
    slot scales with its area) or their mean over the part itself, ``sum(m f) / (sum(m) + 1)``
    (``"masked_mean"``: a small part's slot describes its pixels as fully as a large one's).

    Args:
        in_channels: C.
        num_slots: k (>= 2 with a background slot, >= 1 without).
        slot_dim: D.
        height, width: the feature grid.
        gamma: cut QP regulariser, cutslots' convention ``1/2 gamma |z|^2`` (paper's x 2).
        background_slot: slot 0 is a background slot (:class:`BackgroundKPartition`) if True,
            else all slots come from one :class:`KPartition`.
        temperature: softmax temperature among the object slots.
        bg_temperature: temperature of the background/foreground split (background only).
        partition_hidden: width of the edge-weight CNN (and of the optional feature MLP).
        mlp_hidden: hidden width of the slot MLP.
        weight_activation, feature_mlp, form, engine, relaxation, init_scale: as
            :class:`KPartition`.
        position_embedding: add the learned position embedding (Alg. 2) before partitioning.
        pooling: ``"mean"`` or ``"masked_mean"`` (above).
    """

    def __init__(
        self,
        in_channels: int,
        num_slots: int,
        slot_dim: int,
        height: int,
        width: int,
        gamma: float,
        *,
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
        position_embedding: bool = True,
        pooling: Pooling = "mean",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        check_positive_int("num_slots", num_slots)
        check_positive_int("slot_dim", slot_dim)
        check_positive_int("mlp_hidden", mlp_hidden)
        if not isinstance(background_slot, bool):
            raise TypeError(f"background_slot must be a bool, got {type(background_slot).__name__}")
        if background_slot and num_slots < 2:
            raise ValueError(f"num_slots must be >= 2 with a background slot, got {num_slots}")
        if not isinstance(position_embedding, bool):
            raise TypeError(f"position_embedding must be a bool, got {type(position_embedding).__name__}")
        self.num_slots, self.slot_dim = num_slots, slot_dim
        self.position = LearnedPositionEmbedding(in_channels, height, width) if position_embedding else nn.Identity()
        options = dict(temperature=temperature, hidden=partition_hidden, weight_activation=weight_activation,
                       feature_mlp=feature_mlp, form=form, engine=engine, relaxation=relaxation,
                       init_scale=init_scale)
        self.partition: KPartition | BackgroundKPartition
        if background_slot:
            self.partition = BackgroundKPartition(in_channels, num_slots, height, width, gamma,
                                                  bg_temperature=bg_temperature, **options)
        else:
            self.partition = KPartition(in_channels, num_slots, height, width, gamma, **options)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, slot_dim)
        )

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        out = self.partition(self.position(features))  # validates (B, C, H, W)
        pooled = out.features.sum(dim=(-2, -1))  # (B, k, C)
        if self.pooling == "mean":
            pooled = pooled / (out.masks.shape[-2] * out.masks.shape[-1])
        else:
            pooled = pooled / (out.masks.sum(dim=(-2, -1)).unsqueeze(-1) + _POOLING_EPS)  # (B, k, C)
        return {"slots": self.mlp(pooled), "masks": out.masks}
