"""Metrics of object-centric models, on arrays only: numpy arrays or torch tensors in, float64
numpy arrays out (no models, no datasets). The submodules, by what they score:

- :mod:`cutslots.metrics.segmentation`: segmentations of images (B, H, W) and clips
  (B, T, H, W) and reconstructions, with the ClevrTex conventions: ARI, ARI-FG, mIoU after
  Hungarian matching, summed squared error, slot masks to label maps, summaries over items.
- :mod:`cutslots.metrics.tracking`: slots tracked through a clip by frame-to-frame matchings
  (paper §4, Table 2): hard links, track ids, space-time labels, matching accuracy.
- :mod:`cutslots.metrics.arrays`: the array inputs they accept.
"""

from cutslots.metrics.arrays import ArrayLike, as_array
from cutslots.metrics.segmentation import (
    ari,
    masks_to_labels,
    miou,
    mse_per_image,
    summarize,
)
from cutslots.metrics.tracking import (
    TABLE2_COLUMNS,
    TRACK_METHODS,
    TrackMethod,
    chain_identities,
    evaluate_tracks,
    hard_links,
    matching_accuracy,
    track_labels,
)

__all__ = [
    "TABLE2_COLUMNS",
    "TRACK_METHODS",
    "ArrayLike",
    "TrackMethod",
    "ari",
    "as_array",
    "chain_identities",
    "evaluate_tracks",
    "hard_links",
    "masks_to_labels",
    "matching_accuracy",
    "miou",
    "mse_per_image",
    "summarize",
    "track_labels",
]
