"""Network layers built on the QP core (no datasets, no training code)."""

from cutslots.nn.grouping import CutSlotGrouping, SlotAttentionGrouping
from cutslots.nn.matcher import SlotMatcher
from cutslots.nn.partition import BackgroundKPartition, KPartition, PartitionOutput
from cutslots.nn.position import LearnedPositionEmbedding, SoftPositionEmbed
from cutslots.nn.slot_attention import SlotAttention

__all__ = [
    "BackgroundKPartition",
    "CutSlotGrouping",
    "KPartition",
    "LearnedPositionEmbedding",
    "PartitionOutput",
    "SlotAttention",
    "SlotAttentionGrouping",
    "SlotMatcher",
    "SoftPositionEmbed",
]
