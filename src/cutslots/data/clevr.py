"""CLEVR with masks (deepmind/multi_object_datasets), streamed from its published TFRecord.

Published format: one GZIP TFRecord file ``clevr_with_masks_train.tfrecords`` (~100,000
records) of ``tf.train.Example``. String features hold one ONE-BYTE ``bytes_list`` entry per
value: ``image`` [240, 320, 3] uint8 (row-major), ``mask`` [11, 240, 320, 1] with values 0/255
(mask 0 is the background); ``visibility`` is a float_list [11].

Output per scene, following Slot Attention's preprocessing (crop rows 29:221, cols 64:256,
then resize to ``resolution``; bilinear for the image, nearest for labels):

- ``image``: (3, R, R) float32 in [0, 1]
- ``mask``: (R, R) int64 labels, argmax of the 11 masks (0 = background; a pixel covered by
  no mask is background)
- ``visibility``: (11,) float32
- ``index``: record index in the file

Splits are record index ranges ``[start, end)`` (``end=None``: to the end of the file). The
file has no official split; the paper does not state the one it used. The default follows
Slot Attention's "first 70K scenes for training" and halves the rest into val/test (our
choice). A split that runs past the end of the file is an error, never silently shortened.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset

from cutslots.data.errors import DatasetFormatError, missing_dataset
from cutslots.data.tfrecord_io import ExampleView, current_shard, iter_records
from cutslots.data.transforms import crop_box, image_to_tensor, resize_image, resize_mask

FILE_NAME = "clevr_with_masks_train.tfrecords"
SOURCE = (
    "https://github.com/deepmind/multi_object_datasets "
    "(gs://multi-object-datasets/clevr_with_masks/clevr_with_masks_train.tfrecords)"
)
IMAGE_SHAPE = (240, 320, 3)
NUM_ENTITIES = 11  # background + up to 10 objects
CROP_BOX = (64, 29, 256, 221)  # PIL box (left, top, right, bottom): rows 29:221, cols 64:256
DEFAULT_SPLITS: dict[str, tuple[int, int | None]] = {
    "train": (0, 70_000),
    "val": (70_000, 85_000),
    "test": (85_000, None),
}


class ClevrWithMasks(IterableDataset):
    """Streams scenes of one split, sharded over DataLoader workers and DDP ranks
    (record ``i`` goes to reader ``i % n``; see ``tfrecord_io``).

    ``root``: folder holding ``clevr_with_masks_train.tfrecords``. ``max_objects``: keep only
    scenes with at most this many visible objects (``visibility[1:] > 0``; e.g. 6 for CLEVR6).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        resolution: int = 128,
        splits: Mapping[str, tuple[int, int | None]] = DEFAULT_SPLITS,
        max_objects: int | None = None,
    ) -> None:
        super().__init__()
        root = Path(root)
        if not root.exists():
            raise missing_dataset(root, f"<root>/{FILE_NAME} (GZIP TFRecord)", SOURCE)
        if not root.is_dir():
            raise DatasetFormatError(f"{root}: expected a folder holding {FILE_NAME}")
        self.path = root / FILE_NAME
        if not self.path.is_file():
            raise missing_dataset(self.path, f"<root>/{FILE_NAME} (GZIP TFRecord)", SOURCE)
        if split not in splits:
            raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
        start, end = splits[split]
        if start < 0 or (end is not None and end <= start):
            raise ValueError(f"splits[{split!r}] must be [start, end) with 0 <= start < end")
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        if max_objects is not None and not 0 <= max_objects < NUM_ENTITIES:
            raise ValueError(f"max_objects must be in [0, {NUM_ENTITIES - 1}], got {max_objects}")
        self.start, self.end = start, end
        self.resolution = resolution
        self.max_objects = max_objects

    def __iter__(self) -> Iterator[dict[str, torch.Tensor | int]]:
        shard = current_shard()
        records = iter_records(
            self.path,
            compression="gzip",
            keep=lambda i: i >= self.start and shard.owns(i),
            stop=self.end,
        )
        for index, data in records:
            scene = self._decode(ExampleView(data, f"{self.path}: record {index}"))
            n_objects = int((scene["visibility"][1:] > 0).sum())
            if self.max_objects is None or n_objects <= self.max_objects:
                yield {**scene, "index": index}

    def _decode(self, view: ExampleView) -> dict[str, torch.Tensor]:
        height, width, channels = IMAGE_SHAPE
        image = view.uint8_values("image", height * width * channels).reshape(IMAGE_SHAPE)
        masks = view.uint8_values("mask", NUM_ENTITIES * height * width)
        cropped = crop_box(torch.from_numpy(masks.reshape(NUM_ENTITIES, height, width)), CROP_BOX)
        labels = cropped.argmax(dim=0)  # ties and all-zero pixels go to the lower index (0)
        visibility = view.float_values("visibility", NUM_ENTITIES)
        return {
            "image": resize_image(crop_box(image_to_tensor(image), CROP_BOX), self.resolution),
            "mask": resize_mask(labels, self.resolution),
            "visibility": torch.from_numpy(np.ascontiguousarray(visibility)),
        }
