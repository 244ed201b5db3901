"""Moving-objects videos: format, id consistency over time, determinism, frame pairs, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cutslots.data.moving import FramePairs, MovingScenes, bounce
from cutslots.data.synthetic import MIN_VISIBLE_PIXELS


def test_video_format_and_ids() -> None:
    ds = MovingScenes(size=32, num_videos=3, num_frames=10, min_objects=2, max_objects=4)
    for i in range(len(ds)):
        item = ds[i]
        video, mask = item["video"], item["mask"]
        assert video.dtype == torch.float32 and video.shape == (10, 3, 32, 32)
        assert mask.dtype == torch.int64 and mask.shape == (10, 32, 32)
        assert video.min() >= 0.0 and video.max() <= 1.0
        n = len(ds.moving_scene(i).scene.objects)
        assert 2 <= n <= 4 and mask.min() >= 0 and mask.max() <= n
        first = np.bincount(mask[0].numpy().ravel(), minlength=n + 1)
        assert len(first) == n + 1 and (first[1:] >= MIN_VISIBLE_PIXELS).all()


def test_bounce_matches_step_by_step_reflection() -> None:
    low, high = 2.0, 9.0  # speeds below the span: at most one reflection per step
    rng = np.random.default_rng(0)
    for _ in range(20):
        start, initial_velocity = rng.uniform(low, high), rng.uniform(-6.0, 6.0)
        position, velocity = start, initial_velocity
        for t in range(1, 40):
            position += velocity
            if position > high:  # mirror the overshoot back and reverse
                position, velocity = 2 * high - position, -velocity
            elif position < low:
                position, velocity = 2 * low - position, -velocity
            got = bounce(np.array(start), np.array(initial_velocity), np.array(low), np.array(high), float(t))
            assert got == pytest.approx(position, abs=1e-9)


def _touches_nearer_object(mask: np.ndarray, k: int) -> bool:
    """Whether object ``k`` shares a 4-neighbour edge with an object of larger id (an occluder)."""
    obj = mask == k
    nearer = mask > k
    return bool(
        (obj[1:] & nearer[:-1]).any()
        or (obj[:-1] & nearer[1:]).any()
        or (obj[:, 1:] & nearer[:, :-1]).any()
        or (obj[:, :-1] & nearer[:, 1:]).any()
    )


def test_object_centroids_move_with_their_velocity() -> None:
    size = 64
    ds = MovingScenes(size=size, num_videos=4, num_frames=12, seed=3)
    checked = 0
    for i in range(len(ds)):
        masks = ds[i]["mask"].numpy()
        moving = ds.moving_scene(i)
        for k, (obj, velocity) in enumerate(zip(moving.scene.objects, moving.velocities), start=1):
            margin = obj.radius + np.abs(velocity).max() + 1.0  # no bounce between the two frames
            for t in range(len(masks) - 1):
                frames = masks[t], masks[t + 1]
                if any((f == k).sum() == 0 or _touches_nearer_object(f, k) for f in frames):
                    continue  # (partly) occluded: the visible centroid is not the object's
                centroids = [np.argwhere(f == k).mean(axis=0)[::-1] + 0.5 for f in frames]  # (x, y)
                if any((c < margin).any() or (c > size - margin).any() for c in centroids):
                    continue
                step = centroids[1] - centroids[0]
                # Bounces only flip signs, so compare magnitudes per axis.
                np.testing.assert_allclose(np.abs(step), np.abs(velocity), atol=0.35)
                checked += 1
    assert checked >= 40


def test_deterministic_and_seed_dependent() -> None:
    kwargs = dict(size=32, num_videos=3, num_frames=5, seed=1)
    ds = MovingScenes(**kwargs)
    late = ds[2]
    again = MovingScenes(**kwargs)
    for i in range(3):
        np.testing.assert_array_equal(again[i]["video"].numpy(), ds[i]["video"].numpy())
        np.testing.assert_array_equal(again[i]["mask"].numpy(), ds[i]["mask"].numpy())
    np.testing.assert_array_equal(late["video"].numpy(), again[2]["video"].numpy())
    other = MovingScenes(size=32, num_videos=3, num_frames=5, seed=2)
    val = MovingScenes(split="val", **kwargs)
    for i in range(3):
        assert not np.array_equal(other[i]["video"].numpy(), ds[i]["video"].numpy())
        assert not np.array_equal(val[i]["video"].numpy(), ds[i]["video"].numpy())


def test_frame_pairs_are_consecutive_frames() -> None:
    videos = MovingScenes(size=16, num_videos=2, num_frames=4)
    pairs = FramePairs(videos)
    assert len(pairs) == 2 * 3
    second_video = videos[1]
    item = pairs[3 + 1]  # video 1, frames (1, 2)
    assert item["frames"].shape == (2, 3, 16, 16) and item["mask"].shape == (2, 16, 16)
    np.testing.assert_array_equal(item["frames"].numpy(), second_video["video"][1:3].numpy())
    np.testing.assert_array_equal(item["mask"].numpy(), second_video["mask"][1:3].numpy())
    with pytest.raises(IndexError, match="index"):
        pairs[6]
    with pytest.raises(TypeError, match="videos"):
        FramePairs([second_video])  # type: ignore[arg-type]


def test_cache_round_trip(tmp_path: Path) -> None:
    kwargs = dict(size=16, num_videos=2, num_frames=3, seed=4)
    fresh = MovingScenes(**kwargs)
    MovingScenes(cache_dir=tmp_path, **kwargs)
    cached = MovingScenes(cache_dir=tmp_path, **kwargs)
    assert len(list(tmp_path.iterdir())) == 1
    for i in range(2):
        np.testing.assert_array_equal(cached[i]["video"].numpy(), fresh[i]["video"].numpy())
        np.testing.assert_array_equal(cached[i]["mask"].numpy(), fresh[i]["mask"].numpy())


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(num_frames=1), ValueError, "num_frames"),
        (dict(num_frames=2.5), TypeError, "num_frames"),
        (dict(num_videos=0), ValueError, "num_videos"),
        (dict(size=8), ValueError, "size"),
        (dict(variant="clevrtex"), ValueError, "variant"),
        (dict(min_objects=3, max_objects=2), ValueError, "min_objects"),
    ],
)
def test_invalid_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        MovingScenes(**kwargs)
