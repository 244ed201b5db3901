"""Cut slot grouping (Pervez et al., 2023, Alg. 2) and builders of the two compared models.

``CutSlotGrouping``: a learned position embedding is added to the encoder features, the
features are k-partitioned by relaxed s-t cuts (:mod:`cutslots.nn.partition`), each part's
masked features are averaged over the H x W grid and an MLP turns the k averages into slots.
It follows the grouping contract of :class:`cutslots.models.autoencoder.SlotAutoencoder`, so
encoder -> ``CutSlotGrouping`` -> spatial broadcast decoder is the paper's cut model.

``build_cut_autoencoder`` and ``build_slot_attention_autoencoder`` build that model and the
Slot Attention baseline from the same encoder and decoder, so only the grouping differs.
The feature grid is the encoder output: half the image side (64 x 64 for 128 px images).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from cutslots.models.autoencoder import SlotAttentionGrouping, SlotAutoencoder
from cutslots.models.decoder import SpatialBroadcastDecoder
from cutslots.models.encoders import CNNEncoder, ResNetEncoder
from cutslots.nn.partition import BackgroundKPartition, KPartition, WeightActivation
from cutslots.nn.position import LearnedPositionEmbedding
from cutslots.qp.cut import Engine
from cutslots.qp.grid_graph import CutForm

EncoderKind = Literal["cnn", "resnet"]
ENCODERS: tuple[str, ...] = ("cnn", "resnet")
# The decoder broadcasts slots onto this grid and doubles it up to the image size.
_DECODER_BROADCAST = 8
# The encoder's first convolution halves the image side (paper App. D: 128 px -> 64 x 64).
_ENCODER_DOWNSAMPLING = 2


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class CutSlotGrouping(nn.Module):
    """features (B, C, H, W) -> {"slots": (B, k, slot_dim), "masks": (B, k, H, W)}.

    slots = MLP(mean over H x W of partition(features + position).features), k = num_slots.

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
        weight_activation, feature_mlp, form, engine: as :class:`KPartition`.
    """

    def __init__(
        self,
        in_channels: int,
        num_slots: int,
        slot_dim: int,
        height: int,
        width: int,
        gamma: float,
        background_slot: bool = True,
        temperature: float = 0.5,
        bg_temperature: float = 0.1,
        partition_hidden: int = 64,
        mlp_hidden: int = 128,
        weight_activation: WeightActivation = "softplus",
        feature_mlp: bool = False,
        form: CutForm = "paper",
        engine: Engine = "auto",
    ) -> None:
        super().__init__()
        _check_positive_int("num_slots", num_slots)
        _check_positive_int("slot_dim", slot_dim)
        _check_positive_int("mlp_hidden", mlp_hidden)
        if not isinstance(background_slot, bool):
            raise TypeError(f"background_slot must be a bool, got {type(background_slot).__name__}")
        if background_slot and num_slots < 2:
            raise ValueError(f"num_slots must be >= 2 with a background slot, got {num_slots}")
        self.num_slots, self.slot_dim = num_slots, slot_dim
        self.position = LearnedPositionEmbedding(in_channels, height, width)
        self.partition: KPartition | BackgroundKPartition
        if background_slot:
            self.partition = BackgroundKPartition(
                in_channels, num_slots, height, width, gamma, temperature, bg_temperature,
                partition_hidden, weight_activation, feature_mlp, form, engine,
            )
        else:
            self.partition = KPartition(
                in_channels, num_slots, height, width, gamma, temperature,
                partition_hidden, weight_activation, feature_mlp, form, engine,
            )
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, slot_dim)
        )

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        out = self.partition(self.position(features))  # both validate (B, C, H, W)
        pooled = out.features.mean(dim=(-2, -1))  # (B, k, C)
        return {"slots": self.mlp(pooled), "masks": out.masks}


def _feature_size(image_size: int) -> int:
    """Side of the encoder's feature grid; checks that the decoder can reach ``image_size``."""
    _check_positive_int("image_size", image_size)
    ratio, remainder = divmod(image_size, _DECODER_BROADCAST)
    if remainder != 0 or ratio < 2 or ratio & (ratio - 1) != 0:
        raise ValueError(
            f"image_size must be {_DECODER_BROADCAST} * 2**n with n >= 1 (16, 32, 64, 128, ...), "
            f"got {image_size}"
        )
    return image_size // _ENCODER_DOWNSAMPLING


def _encoder(
    kind: EncoderKind, channels: int | None, resnet_blocks: int, out_size: int
) -> CNNEncoder | ResNetEncoder:
    """``channels=None`` keeps the encoder's own default (64 for CNN, 100 for ResNet)."""
    if kind == "cnn":
        return CNNEncoder(out_size=out_size) if channels is None else CNNEncoder(channels, out_size)
    if kind == "resnet":
        if channels is None:
            return ResNetEncoder(blocks=resnet_blocks, out_size=out_size)
        return ResNetEncoder(channels, resnet_blocks, out_size)
    raise ValueError(f"encoder must be one of {ENCODERS}, got {kind!r}")


def build_cut_autoencoder(
    image_size: int = 128,
    encoder: EncoderKind = "cnn",
    num_slots: int = 12,
    slot_dim: int = 64,
    gamma: float = 1.0,
    temperature: float = 0.5,
    bg_temperature: float = 0.1,
    background_slot: bool = True,
    encoder_channels: int | None = None,
    resnet_blocks: int = 4,
    decoder_channels: int = 64,
    partition_hidden: int = 64,
    mlp_hidden: int = 128,
    weight_activation: WeightActivation = "softplus",
    feature_mlp: bool = False,
    form: CutForm = "paper",
    engine: Engine = "auto",
) -> SlotAutoencoder:
    """The cut model: encoder -> :class:`CutSlotGrouping` -> spatial broadcast decoder.

    Images are ``image_size`` square (a power of two >= 16); features are
    ``image_size // 2`` square. ``encoder_channels=None`` uses the encoder's default width.
    Other arguments: see :class:`CutSlotGrouping` and :mod:`cutslots.models.encoders`.
    """
    size = _feature_size(image_size)
    enc = _encoder(encoder, encoder_channels, resnet_blocks, size)
    grouping = CutSlotGrouping(
        enc.channels, num_slots, slot_dim, size, size, gamma, background_slot, temperature,
        bg_temperature, partition_hidden, mlp_hidden, weight_activation, feature_mlp, form, engine,
    )
    decoder = SpatialBroadcastDecoder(slot_dim, image_size, _DECODER_BROADCAST, decoder_channels)
    return SlotAutoencoder(enc, grouping, decoder)


def build_slot_attention_autoencoder(
    image_size: int = 128,
    encoder: EncoderKind = "cnn",
    num_slots: int = 12,
    slot_dim: int = 64,
    iters: int = 3,
    encoder_channels: int | None = None,
    resnet_blocks: int = 4,
    decoder_channels: int = 64,
    mlp_hidden: int = 128,
) -> SlotAutoencoder:
    """The Slot Attention baseline with the same encoder and decoder as
    :func:`build_cut_autoencoder`; ``mlp_hidden`` is Slot Attention's MLP width."""
    size = _feature_size(image_size)
    enc = _encoder(encoder, encoder_channels, resnet_blocks, size)
    grouping = SlotAttentionGrouping(
        enc.channels, num_slots, slot_dim, iters, (size, size), mlp_hidden
    )
    decoder = SpatialBroadcastDecoder(slot_dim, image_size, _DECODER_BROADCAST, decoder_channels)
    return SlotAutoencoder(enc, grouping, decoder)
