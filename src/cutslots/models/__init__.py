"""Encoders, decoder and the autoencoders of the paper's experiments."""

from cutslots.models.autoencoder import SlotAttentionGrouping, SlotAutoencoder
from cutslots.models.builders import build_cut_autoencoder, build_slot_attention_autoencoder
from cutslots.models.decoder import SpatialBroadcastDecoder
from cutslots.models.encoders import CNNEncoder, ResNetEncoder
from cutslots.models.frame_pair import FramePairAutoencoder

__all__ = [
    "CNNEncoder",
    "FramePairAutoencoder",
    "ResNetEncoder",
    "SlotAttentionGrouping",
    "SlotAutoencoder",
    "SpatialBroadcastDecoder",
    "build_cut_autoencoder",
    "build_slot_attention_autoencoder",
]
