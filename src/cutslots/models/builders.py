"""Models from a config's model section (:class:`cutslots.config.ModelConfig`).

The compared image models share encoder and decoder and differ only in the grouping
(``model.grouping.kind``): the paper's cut model, the Slot Attention baseline (optionally with
random-walker diffusion) or the random-walker k-partition. The feature
grid is the encoder output: half the image side (64 x 64 for 128 px images, paper App. D).
Video models add the SlotMatcher of ``model.matching`` to the cut model.
"""

from __future__ import annotations

from torch import nn

from cutslots.checks import check_positive_int
from cutslots.config import (
    CutGroupingConfig,
    EncoderConfig,
    ModelConfig,
    RandomWalkerGroupingConfig,
    SlotAttentionGroupingConfig,
)
from cutslots.models.autoencoder import SlotAutoencoder
from cutslots.models.decoder import SpatialBroadcastDecoder
from cutslots.models.encoders import CNNEncoder, ResNetEncoder
from cutslots.models.frame_pair import FramePairAutoencoder
from cutslots.nn.grouping import CutSlotGrouping, RandomWalkerGrouping, SlotAttentionGrouping
from cutslots.nn.matcher import SlotMatcher

# The encoder's first convolution halves the image side (paper App. D: 128 px -> 64 x 64).
_ENCODER_DOWNSAMPLING = 2
_MIN_IMAGE_SIZE = 16


def _feature_size(image_size: int, broadcast: int) -> int:
    """Side of the encoder's feature grid; checks that the decoder can reach ``image_size``."""
    check_positive_int("image_size", image_size)
    ratio, remainder = divmod(image_size, broadcast)
    if image_size < _MIN_IMAGE_SIZE or image_size % _ENCODER_DOWNSAMPLING or remainder or ratio & (ratio - 1):
        raise ValueError(
            f"image_size must be even, >= {_MIN_IMAGE_SIZE} and decoder.broadcast ({broadcast}) "
            f"* 2**n, got {image_size}"
        )
    return image_size // _ENCODER_DOWNSAMPLING


def build_encoder(encoder: EncoderConfig, out_size: int) -> CNNEncoder | ResNetEncoder:
    """``encoder.channels=None`` keeps the encoder's own default (64 for CNN, 100 for ResNet)."""
    width = {} if encoder.channels is None else {"channels": encoder.channels}
    if encoder.kind == "cnn":
        return CNNEncoder(out_size=out_size, **width)
    return ResNetEncoder(blocks=encoder.resnet_blocks, out_size=out_size, **width)


def build_grouping(model: ModelConfig, in_channels: int, size: int) -> nn.Module:
    """The grouping of ``model.grouping`` on a ``size`` x ``size`` feature grid."""
    grouping = model.grouping
    if isinstance(grouping, SlotAttentionGroupingConfig):
        return SlotAttentionGrouping(
            in_channels,
            model.num_slots,
            slot_dim=model.slot_dim,
            resolution=(size, size),
            iters=grouping.iters,
            hidden_dim=grouping.mlp_hidden,
            diffusion=grouping.diffusion,
            edge_hidden=grouping.edge_hidden,
            edge_init=grouping.edge_init,
        )
    if isinstance(grouping, RandomWalkerGroupingConfig):
        return RandomWalkerGrouping(
            in_channels,
            model.num_slots,
            slot_dim=model.slot_dim,
            height=size,
            width=size,
            hidden=grouping.hidden,
            mlp_hidden=grouping.mlp_hidden,
            init_scale=grouping.init_scale,
            position_embedding=grouping.position_embedding,
            pooling=grouping.pooling,
            mode=grouping.mode,
            iterations=grouping.iterations,
            unaries=grouping.unaries,
            temperature=grouping.temperature,
            unary_floor=grouping.unary_floor,
        )
    assert isinstance(grouping, CutGroupingConfig)
    return CutSlotGrouping(
        in_channels,
        model.num_slots,
        slot_dim=model.slot_dim,
        height=size,
        width=size,
        gamma=grouping.gamma,
        background_slot=grouping.background_slot,
        temperature=grouping.temperature,
        bg_temperature=grouping.bg_temperature,
        partition_hidden=grouping.hidden,
        mlp_hidden=grouping.mlp_hidden,
        weight_activation=grouping.weight_activation,
        form=grouping.form,
        relaxation=grouping.relaxation,
        init_scale=grouping.init_scale,
        position_embedding=grouping.position_embedding,
        pooling=grouping.pooling,
    )


def build_autoencoder(model: ModelConfig, image_size: int) -> SlotAutoencoder:
    """encoder -> grouping -> spatial broadcast decoder, for square images of ``image_size``."""
    size = _feature_size(image_size, model.decoder.broadcast)
    encoder = build_encoder(model.encoder, size)
    decoder = SpatialBroadcastDecoder(
        model.slot_dim,
        out_size=image_size,
        broadcast=model.decoder.broadcast,
        channels=model.decoder.channels,
        hidden_layers=model.decoder.layers,
        pointwise_layers=model.decoder.pointwise_layers,
        pointwise_channels=model.decoder.pointwise_channels,
    )
    return SlotAutoencoder(encoder, build_grouping(model, encoder.channels, size), decoder)


def build_video_model(model: ModelConfig, image_size: int) -> nn.Module:
    """The video model: a cut grouping gives a :class:`FramePairAutoencoder` (its SlotMatcher
    from ``model.matching``); Slot Attention gives the single-frame autoencoder."""
    base = build_autoencoder(model, image_size)
    if isinstance(model.grouping, SlotAttentionGroupingConfig):
        return base
    matcher = SlotMatcher(
        model.num_slots,
        model.slot_dim,
        gamma=model.matching.gamma,
        temperature=model.matching.temperature,
        form=model.matching.form,
    )
    return FramePairAutoencoder(base.encoder, base.grouping, base.decoder, matcher=matcher)
