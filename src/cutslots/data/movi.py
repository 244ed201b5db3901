"""MOVi-A (google-research/kubric, challenges/movi) streamed from its TFDS TFRecord shards.

Layout (TFDS): ``<root>/movi_a/<S>x<S>/1.0.0/`` with ``dataset_info.json``, ``features.json``
and uncompressed shards ``movi_a-<split>.tfrecord-NNNNN-of-MMMMM`` of ``tf.train.Example``
(S = 128 or 256; splits ``train``/``validation``). The shard count is read from the names,
never assumed; all M shards must be present. Features used: ``video`` (bytes_list, one RGB
PNG per frame) and ``segmentations`` (one mode-L PNG per frame: 0 background, object =
instance index + 1); the others are ignored.

Frames are centre-cropped to ``int(crop_fraction * S)`` and resized to ``resolution``
(bilinear video, nearest labels). Modes:

- ``"clip"``: ``video`` (T, 3, R, R) float32 in [0, 1], ``mask`` (T, R, R) int64, ``index``
- ``"pairs"``: one item per consecutive frame pair t, t+1: ``frames`` (2, 3, R, R),
  ``mask`` (2, R, R), ``index``, ``frame`` (= t)

``index`` numbers records across the shards in shard order; record ``i`` goes to reader
``i % n`` of the n DataLoader workers x DDP ranks (see ``tfrecord_io``). Every reader walks
all shards but seeks past the records it does not own. Records stream in file order: shuffle
downstream (e.g. a shuffle buffer) if needed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset

from cutslots.data.errors import DatasetFormatError, missing_dataset
from cutslots.data.tfrecord_io import ExampleView, Shard, current_shard, iter_records
from cutslots.data.transforms import (
    center_crop,
    center_crop_size,
    decode_png,
    image_to_tensor,
    resize_image,
    resize_mask,
)

SOURCE = "gs://kubric-public/tfds/movi_a (https://github.com/google-research/kubric/tree/main/challenges/movi)"
VERSION = "1.0.0"
SOURCE_RESOLUTIONS = (128, 256)
MODES = ("clip", "pairs")
_SHARD = re.compile(r"movi_a-(?P<split>.+)\.tfrecord-(?P<i>\d{5})-of-(?P<n>\d{5})")


def _owned(shard: Shard, offset: int, index: int) -> bool:
    """Whether record ``index`` of a file whose first record is global record ``offset`` is
    this worker's."""
    return shard.owns(offset + index)


class MoviA(IterableDataset):
    """Streams MOVi-A clips or frame pairs of one split.

    ``root``: the TFDS data dir holding ``movi_a/``. ``source_resolution``: which published
    config to read (128 or 256). ``resolution``: output side after crop and resize.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        mode: str = "clip",
        source_resolution: int = 128,
        resolution: int = 128,
        crop_fraction: float = 0.8,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if source_resolution not in SOURCE_RESOLUTIONS:
            raise ValueError(f"source_resolution must be one of {SOURCE_RESOLUTIONS}, got {source_resolution}")
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.mode = mode
        self.source_resolution = source_resolution
        self.resolution = resolution
        self.crop_size = center_crop_size(source_resolution, source_resolution, crop_fraction)
        self.folder = Path(root) / "movi_a" / f"{source_resolution}x{source_resolution}" / VERSION
        layout = (
            f"<root>/movi_a/{source_resolution}x{source_resolution}/{VERSION}/{{dataset_info.json,"
            " features.json, movi_a-<split>.tfrecord-NNNNN-of-MMMMM}"
        )
        if not self.folder.is_dir():
            raise missing_dataset(self.folder, layout, SOURCE)
        for name in ("dataset_info.json", "features.json"):
            if not (self.folder / name).is_file():
                raise missing_dataset(self.folder / name, layout, SOURCE)
        self.shards = self._find_shards(split)

    def _find_shards(self, split: str) -> list[Path]:
        """The split's shard files in order; all of ``-of-MMMMM`` must exist."""
        found: dict[str, dict[int, tuple[int, Path]]] = {}
        for path in self.folder.glob("movi_a-*.tfrecord-*"):
            match = _SHARD.fullmatch(path.name)
            if match is not None:
                shards = found.setdefault(match["split"], {})
                shards[int(match["i"])] = (int(match["n"]), path)
        if split not in found:
            raise DatasetFormatError(
                f"{self.folder}: no shards movi_a-{split}.tfrecord-NNNNN-of-MMMMM (splits found: {sorted(found)})"
            )
        totals = {n for n, _ in found[split].values()}
        if len(totals) != 1:
            raise DatasetFormatError(f"{self.folder}: {split} shards disagree on the shard count: {sorted(totals)}")
        total = totals.pop()
        for i in range(total):
            if i not in found[split]:
                missing = self.folder / f"movi_a-{split}.tfrecord-{i:05d}-of-{total:05d}"
                raise DatasetFormatError(f"missing shard {missing}")
        if max(found[split]) >= total:
            raise DatasetFormatError(f"{self.folder}: {split} shard index {max(found[split])} out of 0..{total - 1}")
        return [found[split][i][1] for i in range(total)]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor | int]]:
        shard = current_shard()
        offset = 0  # global index of the current shard file's first record
        for path in self.shards:
            records = iter_records(path, keep=functools.partial(_owned, shard, offset))
            while True:
                try:
                    local, data = next(records)
                except StopIteration as done:  # its value is the file's record count
                    offset += done.value
                    break
                where = f"{path}: record {local}"
                video, mask = self._decode(ExampleView(data, where), where)
                if self.mode == "clip":
                    yield {"video": video, "mask": mask, "index": offset + local}
                    continue
                for t in range(video.shape[0] - 1):
                    yield {
                        # clone: a view would ship the whole clip to the main process
                        "frames": video[t : t + 2].clone(),
                        "mask": mask[t : t + 2].clone(),
                        "index": offset + local,
                        "frame": t,
                    }

    def _decode(self, view: ExampleView, where: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``video`` (T, 3, R, R) float32 and ``mask`` (T, R, R) int64 of one record."""
        frames, segmentations = view.bytes_values("video"), view.bytes_values("segmentations")
        if len(frames) != len(segmentations) or len(frames) < 2:
            raise DatasetFormatError(
                f"{where}: {len(frames)} video frames and {len(segmentations)} segmentations,"
                " expected the same number, at least 2"
            )
        side = (self.source_resolution, self.source_resolution)
        video, labels = [], []
        for t, (frame, segmentation) in enumerate(zip(frames, segmentations)):
            rgb = decode_png(frame, ("RGB",), f"{where}: video frame {t}")
            seg = decode_png(segmentation, ("L",), f"{where}: segmentation frame {t}")
            for name, shape in (("video", rgb.shape[:2]), ("segmentation", seg.shape)):
                if shape != side:
                    raise DatasetFormatError(f"{where}: {name} frame {t} has size {shape}, expected {side}")
            video.append(image_to_tensor(rgb))
            labels.append(torch.from_numpy(seg.astype(np.int64)))
        return (
            resize_image(center_crop(torch.stack(video), self.crop_size), self.resolution),
            resize_mask(center_crop(torch.stack(labels), self.crop_size), self.resolution),
        )
