"""ClevrTex (karazijal/clevrtex) read from its published folder of PNG/JSON files.

Layout: ``clevrtex_<variant>/<idx // 1000>/CLEVRTEX_<variant>_<idx:06d>.png`` (320x240 render,
RGB or RGBA; alpha is dropped), ``..._flat.png`` (palette PNG, pixel value = object id,
0 = background, id i = ``objects[i-1]`` of the JSON) and ``....json``; other passes such as
``_depth_0001.png`` are ignored. Indices must be contiguous from 0.

Official split over the N sorted indices: test ``[0, int(0.1 N))``, val
``[int(0.1 N), int(0.2 N))``, train ``[int(0.2 N), N)``. ``outd`` has no split (``split="test"``
or ``None`` give all of it); ``camo`` keeps the split but, like ``outd``, is evaluation-only,
so asking for ``train`` of either is an error. ``split=None`` gives all images of any variant.

Output per image, after the official centred crop of ``int(0.8 * min(W, H))`` (192: PIL box
(64, 24, 256, 216)) and resize to ``resolution`` (bilinear image, nearest mask):
``image`` (3, R, R) float32 in [0, 1], ``mask`` (R, R) int64 object ids, ``index`` (int),
``num_objects`` (int, from the JSON).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch.utils.data import Dataset

from cutslots.data.errors import DatasetFormatError, missing_dataset
from cutslots.data.transforms import (
    center_box,
    center_crop_size,
    crop_box,
    decode_png,
    image_to_tensor,
    resize_image,
    resize_mask,
)

VARIANTS = ("full", "outd", "camo", "pbg", "vbg", "grassbg")
"""The ClevrTex variants (``data.variant``)."""
EVAL_ONLY = ("outd", "camo")
SPLITS = {"test": (0.0, 0.1), "val": (0.1, 0.2), "train": (0.2, 1.0)}
IMAGE_SIZE = (240, 320)  # (H, W) of every render
SOURCE = "https://www.robots.ox.ac.uk/~vgg/data/clevrtex/"


class ClevrTex(Dataset):
    """Map-style ClevrTex split. Files are indexed (and checked to exist) at construction and
    read in ``__getitem__``.

    ``root``: the folder holding ``clevrtex_<variant>/``, or that variant folder itself.
    """

    def __init__(
        self,
        root: str | Path,
        variant: str = "full",
        *,
        split: str | None = "train",
        resolution: int = 128,
        crop_fraction: float = 0.8,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)} or None, got {split!r}")
        if variant in EVAL_ONLY and split == "train":
            raise ValueError(f"variant {variant!r} is evaluation-only: it has no 'train' split")
        if variant == "outd" and split == "val":
            raise ValueError("variant 'outd' has no official split: use split='test' or None")
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.variant = variant
        self.resolution = resolution
        self.crop_size = center_crop_size(*IMAGE_SIZE, crop_fraction)
        self.folder = self._variant_folder(Path(root))
        all_indices = self._index()
        if split is None or variant == "outd":
            self.indices = all_indices
        else:
            lo, hi = SPLITS[split]
            n = len(all_indices)
            self.indices = all_indices[int(lo * n) : int(hi * n)]

    def _variant_folder(self, root: Path) -> Path:
        name = f"clevrtex_{self.variant}"
        folder = root if root.name == name else root / name
        if not folder.is_dir():
            layout = f"<root>/{name}/<idx // 1000>/CLEVRTEX_{self.variant}_<idx:06d>.png, ..."
            raise missing_dataset(folder, layout, SOURCE)
        return folder

    def path(self, index: int, suffix: str) -> Path:
        """File of image ``index`` with ``suffix`` ``.png``, ``_flat.png`` or ``.json``."""
        return self.folder / str(index // 1000) / f"CLEVRTEX_{self.variant}_{index:06d}{suffix}"

    def _index(self) -> list[int]:
        """Sorted indices of the renders; checks layout, companions and contiguity."""
        pattern = re.compile(rf"CLEVRTEX_{self.variant}_(\d{{6}})\.png")
        indices = []
        for render in self.folder.rglob(f"CLEVRTEX_{self.variant}_*.png"):
            match = pattern.fullmatch(render.name)
            if match is None:  # another pass (_flat, _depth_0001, ...)
                continue
            index = int(match.group(1))
            if render != self.path(index, ".png"):
                raise DatasetFormatError(f"{render}: misplaced, expected at {self.path(index, '.png')}")
            for suffix in ("_flat.png", ".json"):
                if not self.path(index, suffix).is_file():
                    raise DatasetFormatError(f"missing file {self.path(index, suffix)}")
            indices.append(index)
        if not indices:
            raise DatasetFormatError(f"{self.folder}: no renders CLEVRTEX_{self.variant}_<idx:06d>.png found")
        indices.sort()
        for expected, index in enumerate(indices):
            if index != expected:
                raise DatasetFormatError(
                    f"{self.folder}: indices are not contiguous, missing index {expected} "
                    f"({self.path(expected, '.png')})"
                )
        return indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        if not 0 <= i < len(self.indices):
            raise IndexError(f"index {i} out of range for {len(self.indices)} images")
        index = self.indices[i]
        render_path, mask_path = self.path(index, ".png"), self.path(index, "_flat.png")
        render = decode_png(render_path, ("RGB", "RGBA"), str(render_path))
        mask = decode_png(mask_path, ("P", "L"), str(mask_path))
        for path, shape in ((render_path, render.shape[:2]), (mask_path, mask.shape)):
            if shape != IMAGE_SIZE:
                raise DatasetFormatError(f"{path}: size (H, W) = {shape}, expected {IMAGE_SIZE}")
        num_objects = self._num_objects(index)
        if mask.max() > num_objects:
            raise DatasetFormatError(f"{mask_path}: object id {mask.max()} but the JSON lists {num_objects} objects")
        box = center_box(*IMAGE_SIZE, self.crop_size)
        image = crop_box(image_to_tensor(render[..., :3]), box)
        labels = crop_box(torch.from_numpy(mask).long(), box)
        return {
            "image": resize_image(image, self.resolution),
            "mask": resize_mask(labels, self.resolution),
            "index": index,
            "num_objects": num_objects,
        }

    def _num_objects(self, index: int) -> int:
        path = self.path(index, ".json")
        try:
            objects = json.loads(path.read_text())["objects"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise DatasetFormatError(f"{path}: not ClevrTex metadata with 'objects' ({e})") from e
        if not isinstance(objects, list):
            raise DatasetFormatError(f"{path}: 'objects' is not a list")
        return len(objects)
