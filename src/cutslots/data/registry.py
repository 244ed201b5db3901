"""Datasets by config: what ``data.dataset`` / ``data.variant`` of a data section build.

Experiments ask this module for their data (:func:`build_dataset`, :func:`eval_sets`,
:func:`build_video_dataset`) instead of constructing readers themselves.

Image datasets (``data.dataset``) and their ``data.variant`` values:

- ``synthetic``: :data:`cutslots.data.synthetic.VARIANTS` (``shapes``, ``textured`` (default),
  ``camo``, ``ood``), generated, map-style.
- ``clevr``: CLEVR with masks, streamed (an IterableDataset). ``full`` (default: up to 10
  objects) or ``clevr6`` (only scenes with at most 6 visible objects). Splits are record ranges
  of the one published file (:data:`CLEVR_SPLITS`); ``num_train`` / ``num_eval`` keep the first
  N *records* of a split, counted before the ``clevr6`` filter, so readers can shard them.
- ``clevrtex``: :data:`cutslots.data.clevrtex.VARIANTS` (``full`` (default), ``outd``,
  ``camo``, ``pbg``, ``vbg``, ``grassbg``) with the official split; ``outd`` and ``camo`` are
  evaluation-only (``outd`` is all test data).

Video datasets (:data:`VIDEO_DATASETS`): ``moving`` (synthetic
:class:`~cutslots.data.moving.MovingScenes`, train split for training, test split for
evaluation) and ``movi_a`` (streamed :class:`~cutslots.data.movi.MoviA`, train / validation).

``num_train`` / ``num_eval`` larger than the split is an error, never silently shortened.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, Subset

from cutslots.config import DataConfig
from cutslots.data import clevrtex, synthetic
from cutslots.data.clevr import DEFAULT_SPLITS as CLEVR_DEFAULT_SPLITS
from cutslots.data.clevr import ClevrWithMasks
from cutslots.data.clevrtex import ClevrTex
from cutslots.data.moving import FramePairs, MovingScenes
from cutslots.data.synthetic import SyntheticScenes

__all__ = [
    "CLEVR_SPLITS",
    "IMAGE_DATASETS",
    "VIDEO_DATASETS",
    "StreamedFrames",
    "Unit",
    "VideoFrames",
    "build_dataset",
    "build_video_dataset",
    "eval_sets",
]

# Synthetic data has no fixed size: these are the defaults when num_train / num_eval are null.
SYNTHETIC_TRAIN, SYNTHETIC_EVAL = 10_000, 500
MOVING_TRAIN, MOVING_EVAL = 1000, 100
# CLEVR variant -> most visible objects per scene (None: no filter). CLEVR6 as in Slot Attention.
CLEVR_VARIANTS: dict[str, int | None] = {"full": None, "clevr6": 6}
CLEVR_SPLITS: dict[str, tuple[int, int | None]] = dict(CLEVR_DEFAULT_SPLITS)
"""Record ranges [start, end) of the CLEVR splits; a module attribute so tests can point the
builder at a small file."""
# Image dataset -> its default variant.
IMAGE_DATASETS = {"synthetic": "textured", "clevr": "full", "clevrtex": "full"}
VIDEO_DATASETS = ("moving", "movi_a")
"""The datasets of clips (``data.dataset``), read by the video experiments."""
Unit = Literal["pairs", "frames", "clips"]


def build_dataset(data: DataConfig, split: str, variant: str | None = None) -> Dataset:
    """The ``split`` ("train" / "val" / "test") of the dataset a data section describes.

    ``variant`` overrides ``data.variant`` (used for the extra evaluation sets). CLEVR gives an
    IterableDataset, the others map-style datasets.
    """
    if data.dataset not in IMAGE_DATASETS:
        raise ValueError(
            f"data.dataset: {data.dataset!r} is not an image dataset (use one of {tuple(IMAGE_DATASETS)}; "
            f"the video datasets {VIDEO_DATASETS} train frame pairs: `cutslots train` picks the video "
            "experiment for them)"
        )
    variant = variant or data.variant or IMAGE_DATASETS[data.dataset]
    count_key = "num_train" if split == "train" else "num_eval"
    count = data.num_train if split == "train" else data.num_eval
    if data.dataset == "synthetic":
        if variant not in synthetic.VARIANTS:
            raise ValueError(f"data.variant: synthetic variants are {tuple(synthetic.VARIANTS)}, got {variant!r}")
        default = SYNTHETIC_TRAIN if split == "train" else SYNTHETIC_EVAL
        return SyntheticScenes(
            variant=variant,
            split=split,
            size=data.image_size,
            num_images=count or default,
            min_objects=data.min_objects,
            max_objects=data.max_objects,
            seed=data.seed,
            cache_dir=data.cache_dir,
            object_radius=(data.object_radius[0], data.object_radius[1]),  # validated: [low, high]
        )
    if data.dataset == "clevr":
        return _clevr(data, split, variant, count, count_key)
    if variant not in clevrtex.VARIANTS:
        raise ValueError(f"data.variant: ClevrTex variants are {clevrtex.VARIANTS}, got {variant!r}")
    # outd has no split of its own: all of it is evaluation data.
    assert data.root is not None  # DataConfig requires a root for clevrtex
    ds = ClevrTex(data.root, variant=variant, split=None if variant == "outd" else split, resolution=data.image_size)
    if count is None:
        return ds
    if count > len(ds):
        raise ValueError(
            f"data.{count_key}: {count} images asked for, but ClevrTex {variant} "
            f"{split} has only {len(ds)} under {ds.folder}"
        )
    return Subset(ds, range(count))


def _clevr(data: DataConfig, split: str, variant: str, count: int | None, count_key: str) -> ClevrWithMasks:
    """CLEVR with masks; ``count`` keeps the first records of the split's range."""
    if variant not in CLEVR_VARIANTS:
        raise ValueError(f"data.variant: CLEVR variants are {tuple(CLEVR_VARIANTS)}, got {variant!r}")
    if split not in CLEVR_SPLITS:
        raise ValueError(f"split must be one of {sorted(CLEVR_SPLITS)}, got {split!r}")
    start, end = CLEVR_SPLITS[split]
    if count is not None:
        if end is not None and count > end - start:
            raise ValueError(
                f"data.{count_key}: {count} records asked for, but CLEVR split "
                f"{split!r} holds records [{start}, {end}) only"
            )
        end = start + count
    assert data.root is not None  # DataConfig requires a root for clevr
    return ClevrWithMasks(
        data.root,
        split=split,
        resolution=data.image_size,
        splits={**CLEVR_SPLITS, split: (start, end)},
        max_objects=CLEVR_VARIANTS[variant],
    )


def eval_sets(data: DataConfig) -> dict[str, Dataset]:
    """Evaluation sets: the test split of the training variant plus ``data.eval_variants``."""
    # An unknown dataset keeps its own name here; build_dataset then rejects it.
    main = data.variant or IMAGE_DATASETS.get(data.dataset, data.dataset)
    names = [main] + [v for v in data.eval_variants if v != main]
    return {name: build_dataset(data, "test", name) for name in names}


class VideoFrames(Dataset):
    """Single frames of every video: {"image": (3, H, W), "mask": (H, W)}.

    Item ``i`` is frame ``i % T`` of video ``i // T``; cache ``videos`` when iterating over
    many frames (each access renders or loads the whole video).
    """

    def __init__(self, videos: MovingScenes) -> None:
        if not isinstance(videos, MovingScenes):
            raise TypeError(f"videos must be a MovingScenes dataset, got {type(videos).__name__}")
        self.videos = videos
        self.frames_per_video = videos.num_frames

    def __len__(self) -> int:
        return len(self.videos) * self.frames_per_video

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index must be in [0, {len(self)}), got {index}")
        video_index, t = divmod(index, self.frames_per_video)
        item = self.videos[video_index]
        return {"image": item["video"][t], "mask": item["mask"][t]}


class StreamedFrames(IterableDataset):
    """Single frames of streamed clips (MOVi-A in clip mode): {"image", "mask"} per frame.

    Iterating calls ``iter(clips)`` in the consuming process, so the clips' own sharding over
    DataLoader workers and DDP ranks still applies.
    """

    def __init__(self, clips: Iterable[Mapping[str, Any]]) -> None:
        super().__init__()
        self.clips = clips

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for clip in self.clips:
            for image, mask in zip(clip["video"], clip["mask"]):
                yield {"image": image, "mask": mask}


def build_video_dataset(data: DataConfig, split: Literal["train", "eval"], unit: Unit) -> Dataset:
    """The ``split`` of a video data section as frame ``"pairs"``, single ``"frames"`` or ``"clips"``.

    Items: pairs {"frames": (2, 3, H, W), "mask": (2, H, W)}, frames {"image": (3, H, W),
    "mask": (H, W)}, clips {"video": (T, 3, H, W), "mask": (T, H, W)}.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if unit not in ("pairs", "frames", "clips"):
        raise ValueError(f"unit must be 'pairs', 'frames' or 'clips', got {unit!r}")
    if data.dataset == "moving":
        count = data.num_train if split == "train" else data.num_eval
        videos = MovingScenes(
            split="train" if split == "train" else "test",
            size=data.image_size,
            num_videos=count or (MOVING_TRAIN if split == "train" else MOVING_EVAL),
            num_frames=data.num_frames,
            min_objects=data.min_objects,
            max_objects=data.max_objects,
            seed=data.seed,
            variant=data.variant or "textured",
            cache_dir=data.cache_dir,
            object_radius=(data.object_radius[0], data.object_radius[1]),  # validated: [low, high]
        )
        if unit == "pairs":
            return FramePairs(videos)
        return VideoFrames(videos) if unit == "frames" else videos
    if data.dataset == "movi_a":
        from cutslots.data.movi import MoviA

        if split == "train" and data.num_train is not None:
            # A stream has no subset to pick without reading it; refuse rather than ignore.
            raise ValueError("data.num_train: must be null for movi_a (training streams the whole split)")
        assert data.root is not None  # DataConfig requires a root for movi_a
        clips = MoviA(
            data.root,
            split="train" if split == "train" else "validation",
            mode="pairs" if unit == "pairs" else "clip",
            source_resolution=128 if data.image_size <= 128 else 256,
            resolution=data.image_size,
        )
        return StreamedFrames(clips) if unit == "frames" else clips
    raise ValueError(f"data.dataset: the video experiment needs one of {VIDEO_DATASETS}, got {data.dataset!r}")
