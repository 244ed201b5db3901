"""Builders of the two compared image models from the same encoder and decoder.

``build_cut_autoencoder`` (the paper's cut model) and ``build_slot_attention_autoencoder``
(the Slot Attention baseline) differ only in the grouping. The feature grid is the encoder
output: half the image side (64 x 64 for 128 px images, paper App. D).
"""

from __future__ import annotations

from typing import Literal

from cutslots.models.autoencoder import SlotAttentionGrouping, SlotAutoencoder
from cutslots.models.decoder import SpatialBroadcastDecoder
from cutslots.models.encoders import CNNEncoder, ResNetEncoder
from cutslots.nn.cut_slots import CutSlotGrouping, Pooling, PositionUse
from cutslots.nn.partition import Relaxation, WeightActivation, check_positive_int
from cutslots.qp.cut import Engine
from cutslots.qp.grid_graph import CutForm

EncoderKind = Literal["cnn", "resnet"]
ENCODERS: tuple[str, ...] = ("cnn", "resnet")
# The decoder broadcasts slots onto this grid and doubles it up to the image size (Slot
# Attention's CLEVR decoder); a larger grid (up to the image size) has fewer upsamplings.
DECODER_BROADCAST = 8
# The encoder's first convolution halves the image side (paper App. D: 128 px -> 64 x 64).
_ENCODER_DOWNSAMPLING = 2


def _feature_size(image_size: int) -> int:
    """Side of the encoder's feature grid; checks that the decoder can reach ``image_size``."""
    check_positive_int("image_size", image_size)
    ratio, remainder = divmod(image_size, DECODER_BROADCAST)
    if remainder != 0 or ratio < 2 or ratio & (ratio - 1) != 0:
        raise ValueError(
            f"image_size must be {DECODER_BROADCAST} * 2**n with n >= 1 (16, 32, 64, 128, ...), "
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
    decoder_broadcast: int = DECODER_BROADCAST,
    decoder_layers: int = 1,
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
) -> SlotAutoencoder:
    """The cut model: encoder -> :class:`CutSlotGrouping` -> spatial broadcast decoder.

    Images are ``image_size`` square (a power of two >= 16); features are
    ``image_size // 2`` square. ``encoder_channels=None`` uses the encoder's default width.
    ``decoder_broadcast``: the grid the spatial broadcast decoder starts from, ``decoder_layers``
    its stride-1 layers at the image size (see
    :class:`~cutslots.models.decoder.SpatialBroadcastDecoder`). Other arguments: see
    :class:`CutSlotGrouping` and :mod:`cutslots.models.encoders`.
    """
    size = _feature_size(image_size)
    enc = _encoder(encoder, encoder_channels, resnet_blocks, size)
    grouping = CutSlotGrouping(
        enc.channels, num_slots, slot_dim, size, size, gamma, background_slot=background_slot,
        temperature=temperature, bg_temperature=bg_temperature, partition_hidden=partition_hidden,
        mlp_hidden=mlp_hidden, weight_activation=weight_activation, feature_mlp=feature_mlp,
        form=form, engine=engine, relaxation=relaxation, init_scale=init_scale,
        position_embedding=position_embedding, pooling=pooling,
    )
    decoder = SpatialBroadcastDecoder(slot_dim, image_size, decoder_broadcast, decoder_channels,
                                      hidden_layers=decoder_layers)
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
    decoder_broadcast: int = DECODER_BROADCAST,
    decoder_layers: int = 1,
    mlp_hidden: int = 128,
) -> SlotAutoencoder:
    """The Slot Attention baseline with the same encoder and decoder as
    :func:`build_cut_autoencoder`; ``mlp_hidden`` is Slot Attention's MLP width."""
    size = _feature_size(image_size)
    enc = _encoder(encoder, encoder_channels, resnet_blocks, size)
    grouping = SlotAttentionGrouping(
        enc.channels, num_slots, slot_dim, iters, (size, size), mlp_hidden
    )
    decoder = SpatialBroadcastDecoder(slot_dim, image_size, decoder_broadcast, decoder_channels,
                                      hidden_layers=decoder_layers)
    return SlotAutoencoder(enc, grouping, decoder)
