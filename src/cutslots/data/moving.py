"""Synthetic ``moving`` videos: the static scenes of :mod:`cutslots.data.synthetic` set in motion.

Each object keeps its shape, texture, orientation and depth rank and moves with a constant
velocity, bouncing elastically off the image borders (its centre is reflected inside
[radius, size - radius], so it never leaves the image). The texture moves with the object.
Object ids 1..n are the same in every frame (background 0); a larger id is nearer to the viewer.
Every object is visible in frame 0 (see the synthetic module's visibility rule); in later
frames an object may be partly or, briefly, fully hidden behind nearer ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from cutslots.data.cache import load_or_build
from cutslots.data.synthetic import (
    GENERATOR_VERSION,
    RADIUS_RANGE,
    Scene,
    render_scene,
    sample_scene,
    scene_rng,
    validate_scene_args,
)

SPEED_RANGE = (0.01, 0.04)  # pixels per frame, as a fraction of the image size


@dataclass(frozen=True, eq=False)
class MovingScene:
    """Frame-0 scene and per-object velocities ``(n, 2)`` (vx, vy) in pixels per frame."""

    scene: Scene
    velocities: np.ndarray


def bounce(start: np.ndarray, velocity: np.ndarray, low: np.ndarray, high: np.ndarray, t: float) -> np.ndarray:
    """Position at time ``t`` of a point moving at ``velocity`` that reflects off ``low``/``high``.

    All arrays broadcast together; ``low <= start <= high``. Unfolding the reflections turns the
    motion into a straight line on a circle of length 2 * (high - low).
    """
    span = high - low
    travelled = np.mod(start - low + velocity * t, 2.0 * span)
    return low + np.where(travelled <= span, travelled, 2.0 * span - travelled)


def render_video(moving: MovingScene, size: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """-> video (T, size, size, 3) uint8, mask (T, size, size) uint8."""
    objects = moving.scene.objects
    start = np.array([obj.center for obj in objects], dtype=np.float64).reshape(-1, 2)
    radius = np.array([obj.radius for obj in objects], dtype=np.float64)[:, None]
    frames, masks = [], []
    for t in range(num_frames):
        centres = bounce(start, moving.velocities, radius, size - radius, float(t))
        moved = tuple(dataclasses.replace(obj, center=(float(c[0]), float(c[1]))) for obj, c in zip(objects, centres))
        image, mask = render_scene(Scene(moving.scene.background, moved), size)
        frames.append(image)
        masks.append(mask)
    return np.stack(frames), np.stack(masks)


class MovingScenes(Dataset):
    """Videos: item -> {"video": (T, 3, H, W) float32 in [0, 1], "mask": (T, H, W) int64}.

    Same seeding, caching and validation rules as :class:`~cutslots.data.synthetic.SyntheticScenes`
    (a separate random stream, so a video's frame 0 is not one of the static scenes).
    """

    STREAM = 2

    def __init__(
        self,
        *,
        split: str = "train",
        size: int = 64,
        num_videos: int = 1000,
        num_frames: int = 24,
        min_objects: int = 2,
        max_objects: int = 6,
        seed: int = 0,
        variant: str = "textured",
        cache_dir: str | os.PathLike[str] | None = None,
        object_radius: tuple[float, float] = RADIUS_RANGE,
    ) -> None:
        validate_scene_args(
            variant, split, size, num_videos, "num_videos", min_objects, max_objects, seed, object_radius
        )
        if isinstance(num_frames, bool) or not isinstance(num_frames, int):
            raise TypeError(f"num_frames must be an int, got {type(num_frames).__name__}")
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {num_frames}")
        self.variant, self.split, self.size, self.num_videos = variant, split, size, num_videos
        self.num_frames, self.min_objects, self.max_objects, self.seed = num_frames, min_objects, max_objects, seed
        self.object_radius = object_radius
        self._arrays: dict[str, np.ndarray] | None = None
        if cache_dir is not None:
            params = {
                "generator": GENERATOR_VERSION,
                "variant": variant,
                "split": split,
                "size": size,
                "num_videos": num_videos,
                "num_frames": num_frames,
                "min_objects": min_objects,
                "max_objects": max_objects,
                "seed": seed,
                "object_radius": list(object_radius),
            }
            self._arrays = load_or_build(cache_dir, f"moving-{variant}-{split}-{size}", params, self._build_all)

    def __len__(self) -> int:
        return self.num_videos

    def moving_scene(self, index: int) -> MovingScene:
        """The drawn description (frame-0 scene and velocities) of video ``index``."""
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index must be in [0, {self.num_videos}), got {index}")
        rng = scene_rng(self.STREAM, self.seed, self.split, index)
        num_objects = int(rng.integers(self.min_objects, self.max_objects + 1))
        scene = sample_scene(rng, self.variant, self.size, num_objects, self.object_radius)
        speed = self.size * rng.uniform(*SPEED_RANGE, size=num_objects)
        heading = rng.uniform(0.0, 2 * math.pi, size=num_objects)
        return MovingScene(scene, np.stack([speed * np.cos(heading), speed * np.sin(heading)], axis=1))

    def _build_all(self) -> dict[str, np.ndarray]:
        rendered = [render_video(self.moving_scene(i), self.size, self.num_frames) for i in range(self.num_videos)]
        return {"video": np.stack([r[0] for r in rendered]), "mask": np.stack([r[1] for r in rendered])}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._arrays is None:
            video, mask = render_video(self.moving_scene(index), self.size, self.num_frames)
        else:
            if not 0 <= index < self.num_videos:
                raise IndexError(f"index must be in [0, {self.num_videos}), got {index}")
            video, mask = self._arrays["video"][index], self._arrays["mask"][index]
        return {
            "video": torch.from_numpy(np.ascontiguousarray(video.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0),
            "mask": torch.from_numpy(mask.astype(np.int64)),
        }


class FramePairs(Dataset):
    """Consecutive frames (t, t + 1) of every video: {"frames": (2, 3, H, W), "mask": (2, H, W)}.

    Item ``i`` is frame pair ``t = i % (T - 1)`` of video ``i // (T - 1)``. Each access renders
    (or loads) the whole video, so cache ``videos`` when iterating over many pairs.
    """

    def __init__(self, videos: MovingScenes) -> None:
        if not isinstance(videos, MovingScenes):
            raise TypeError(f"videos must be a MovingScenes dataset, got {type(videos).__name__}")
        self.videos = videos
        self.pairs_per_video = videos.num_frames - 1

    def __len__(self) -> int:
        return len(self.videos) * self.pairs_per_video

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index must be in [0, {len(self)}), got {index}")
        video_index, t = divmod(index, self.pairs_per_video)
        item = self.videos[video_index]
        return {"frames": item["video"][t : t + 2], "mask": item["mask"][t : t + 2]}
