"""Writers of tiny datasets in exactly the published formats, for the reader tests.

Examples are built with the ``tfrecord`` package's protobuf (``example_pb2``), independently
of the readers' own wire-format parsing; images are written with PIL. Each writer returns the
arrays it wrote so tests can compare what the readers give back.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from tfrecord import example_pb2

from cutslots.data.tfrecord_io import write_tfrecord

CLEVR_HW = (240, 320)
CLEVR_ENTITIES = 11


def label_map(rng: np.random.Generator, height: int, width: int, num_objects: int) -> np.ndarray:
    """(H, W) uint8 ids: 0 background, objects 1..num_objects as overlapping rectangles
    (later ids occlude earlier ones)."""
    labels = np.zeros((height, width), np.uint8)
    for k in range(1, num_objects + 1):
        h, w = rng.integers(height // 6, height // 2), rng.integers(width // 6, width // 2)
        top, left = rng.integers(0, height - h), rng.integers(0, width - w)
        labels[top : top + h, left : left + w] = k
    return labels


def _png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) RGB, uint8 (H, W) L or uint16 (H, W) 16-bit array."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- CLEVR with masks


def clevr_scene(rng: np.random.Generator, num_objects: int) -> dict[str, np.ndarray]:
    """Arrays of one scene with the published shapes and dtypes."""
    labels = label_map(rng, *CLEVR_HW, num_objects)
    ids = np.arange(CLEVR_ENTITIES)[:, None, None]
    mask = ((labels[None] == ids) * 255).astype(np.uint8)[..., None]  # (11, 240, 320, 1)
    codes = {key: rng.integers(0, 4, CLEVR_ENTITIES, dtype=np.uint8) for key in ("size", "material", "shape", "color")}
    codes["color"][-1] = 0  # a trailing NUL byte: must survive parsing
    floats = {key: rng.normal(size=CLEVR_ENTITIES).astype(np.float32) for key in ("x", "y", "z", "rotation")}
    return {
        "image": rng.integers(0, 256, (*CLEVR_HW, 3), dtype=np.uint8),
        "mask": mask,
        "visibility": mask.reshape(CLEVR_ENTITIES, -1).any(axis=1).astype(np.float32),
        "pixel_coords": rng.normal(size=(CLEVR_ENTITIES, 3)).astype(np.float32),
        **codes,
        **floats,
    }


def clevr_example(scene: dict[str, np.ndarray]) -> bytes:
    """Serialized tf.train.Example: uint8 arrays as one one-byte bytes_list entry per value
    (row-major), float arrays as float_list."""
    example = example_pb2.Example()
    for key, array in scene.items():
        feature = example.features.feature[key]
        if array.dtype == np.uint8:
            raw = array.tobytes()
            feature.bytes_list.value.extend([raw[i : i + 1] for i in range(len(raw))])
        else:
            feature.float_list.value.extend(array.ravel().tolist())
    return example.SerializeToString()


def write_clevr_with_masks(root: Path, scenes: list[dict[str, np.ndarray]]) -> Path:
    """``root/clevr_with_masks_train.tfrecords`` (GZIP) holding ``scenes``."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "clevr_with_masks_train.tfrecords"
    write_tfrecord(path, (clevr_example(s) for s in scenes), compression="gzip")
    return path


# ---------------------------------------------------------------- ClevrTex


def write_clevrtex(
    root: Path, variant: str, count: int, seed: int = 0, rgba: tuple[int, ...] = ()
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``root/clevrtex_<variant>/`` with ``count`` images: render (RGBA for indices in
    ``rgba``), palette ``_flat.png``, ``.json`` and a stray ``_depth_0001.png`` each.
    Returns ``(render (240, 320, 3|4), flat (240, 320))`` per index."""
    rng = np.random.default_rng(seed)
    written = []
    for idx in range(count):
        num_objects = int(rng.integers(3, 11))
        flat = label_map(rng, *CLEVR_HW, num_objects)
        channels = 4 if idx in rgba else 3
        render = rng.integers(0, 256, (*CLEVR_HW, channels), dtype=np.uint8)
        stem = root / f"clevrtex_{variant}" / str(idx // 1000) / f"CLEVRTEX_{variant}_{idx:06d}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render).save(f"{stem}.png")
        palette = Image.frombytes("P", flat.shape[::-1], flat.tobytes())
        palette.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
        palette.save(f"{stem}_flat.png")
        objects = [
            {"shape": "cube", "material": "PoliigonBricks01", "size": 1.0, "rotation": 0.0} for _ in range(num_objects)
        ]
        Path(f"{stem}.json").write_text(json.dumps({"ground_material": "PoliigonCarpet", "objects": objects}))
        Image.fromarray(np.zeros(CLEVR_HW, np.uint16)).save(f"{stem}_depth_0001.png")
        written.append((render, flat))
    return written


# ---------------------------------------------------------------- MOVi-A


def movi_clip(rng: np.random.Generator, frames: int, side: int, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """``video`` (T, S, S, 3) uint8 and ``segmentations`` (T, S, S) uint8 ids."""
    video = rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8)
    seg = np.stack([label_map(rng, side, side, num_objects) for _ in range(frames)])
    return video, seg


def movi_example(video: np.ndarray, seg: np.ndarray) -> bytes:
    """Serialized TFDS example: per-frame PNGs for ``video`` (RGB), ``segmentations`` (L) and
    ``depth`` (16-bit), plus ``metadata/*`` scalars, keys joined with '/'."""
    example = example_pb2.Example()
    feature = example.features.feature
    feature["video"].bytes_list.value.extend([_png(f) for f in video])
    feature["segmentations"].bytes_list.value.extend([_png(s) for s in seg])
    depth = np.zeros(seg.shape[1:], np.uint16)
    feature["depth"].bytes_list.value.extend([_png(depth) for _ in seg])
    feature["metadata/num_frames"].int64_list.value.append(len(video))
    feature["metadata/video_name"].bytes_list.value.append(b"fixture")
    return example.SerializeToString()


def write_movi_a(root: Path, splits: dict[str, list[list[tuple[np.ndarray, np.ndarray]]]], side: int = 128) -> Path:
    """TFDS folder ``root/movi_a/<side>x<side>/1.0.0`` with ``dataset_info.json``,
    ``features.json`` and, per split, one uncompressed shard
    ``movi_a-<split>.tfrecord-NNNNN-of-MMMMM`` per list of ``(video, segmentations)`` clips."""
    folder = root / "movi_a" / f"{side}x{side}" / "1.0.0"
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "name": "movi_a",
        "version": "1.0.0",
        "splits": [
            {"name": split, "shardLengths": [str(len(shard)) for shard in shards]} for split, shards in splits.items()
        ],
    }
    (folder / "dataset_info.json").write_text(json.dumps(info))
    (folder / "features.json").write_text(json.dumps({"type": "FeaturesDict"}))
    for split, shards in splits.items():
        for i, clips in enumerate(shards):
            path = folder / f"movi_a-{split}.tfrecord-{i:05d}-of-{len(shards):05d}"
            write_tfrecord(path, (movi_example(video, seg) for video, seg in clips))
    return folder
