"""Encoders, decoder and the autoencoders of the paper's experiments."""

from cutslots.models.autoencoder import SlotAutoencoder
from cutslots.models.builders import build_autoencoder, build_encoder, build_grouping, build_video_model
from cutslots.models.decoder import SpatialBroadcastDecoder
from cutslots.models.encoders import CNNEncoder, ResNetEncoder
from cutslots.models.frame_pair import FramePairAutoencoder

__all__ = [
    "CNNEncoder",
    "FramePairAutoencoder",
    "ResNetEncoder",
    "SlotAutoencoder",
    "SpatialBroadcastDecoder",
    "build_autoencoder",
    "build_encoder",
    "build_grouping",
    "build_video_model",
]
