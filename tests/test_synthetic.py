"""Synthetic static scenes: determinism, mask conventions, variant statistics, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cutslots.data.synthetic import (
    MIN_VISIBLE_PIXELS,
    OOD_SHAPES,
    OOD_TEXTURES,
    TRAIN_SHAPES,
    TRAIN_TEXTURES,
    VARIANTS,
    SyntheticScenes,
    hsv_to_rgb,
)


def _stack(ds: SyntheticScenes) -> tuple[np.ndarray, np.ndarray]:
    items = [ds[i] for i in range(len(ds))]
    return np.stack([it["image"].numpy() for it in items]), np.stack([it["mask"].numpy() for it in items])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_items_have_documented_format_and_mask_ids(variant: str) -> None:
    ds = SyntheticScenes(variant, size=32, num_images=12, min_objects=2, max_objects=5, seed=1)
    for i in range(len(ds)):
        item = ds[i]
        image, mask = item["image"], item["mask"]
        assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
        assert mask.dtype == torch.int64 and mask.shape == (32, 32)
        assert image.min() >= 0.0 and image.max() <= 1.0
        counts = np.bincount(mask.numpy().ravel())
        n = len(counts) - 1
        assert 2 <= n <= 5
        # Every object 1..n is visible; ids are contiguous.
        assert (counts[1:] >= MIN_VISIBLE_PIXELS).all()
        assert n == len(ds.scene(i).objects)


@pytest.mark.parametrize("size", [16, 128])
def test_small_and_large_sizes(size: int) -> None:
    ds = SyntheticScenes("ood", size=size, num_images=3, min_objects=6, max_objects=6)
    for i in range(3):
        counts = np.bincount(ds[i]["mask"].numpy().ravel(), minlength=7)
        assert len(counts) == 7 and (counts[1:] >= MIN_VISIBLE_PIXELS).all()
        assert ds[i]["image"].shape == (3, size, size)


def test_flat_shapes_match_their_masks() -> None:
    # In the flat variant, mask regions must be exactly the uniformly coloured regions.
    images, masks = _stack(SyntheticScenes("shapes", size=32, num_images=8, seed=4))
    for image, mask in zip(images, masks):
        colours = []
        for k in range(mask.max() + 1):
            pixels = image[:, mask == k]
            assert np.ptp(pixels, axis=1).max() == 0.0
            colours.append(pixels[:, 0])
        # The background differs from every object it surrounds.
        assert all(np.abs(c - colours[0]).max() > 0 for c in colours[1:])


def test_deterministic_per_item_and_seed_dependent() -> None:
    kwargs = dict(size=32, num_images=6, seed=5)
    first = _stack(SyntheticScenes("textured", **kwargs))
    again = SyntheticScenes("textured", **kwargs)
    late = again[5]  # access order must not matter
    np.testing.assert_array_equal(late["image"].numpy(), first[0][5])
    np.testing.assert_array_equal(_stack(again)[0], first[0])
    np.testing.assert_array_equal(_stack(again)[1], first[1])
    other_seed = _stack(SyntheticScenes("textured", size=32, num_images=6, seed=6))
    other_split = _stack(SyntheticScenes("textured", split="val", **kwargs))
    for other in (other_seed, other_split):
        for a, b in zip(first[0], other[0]):
            assert not np.array_equal(a, b)


def test_camo_hides_objects_by_colour() -> None:
    def colour_gap(variant: str) -> float:
        images, masks = _stack(SyntheticScenes(variant, size=64, num_images=24, seed=2))
        gaps = [np.abs(im[:, m > 0].mean(1) - im[:, m == 0].mean(1)).mean() for im, m in zip(images, masks)]
        return float(np.mean(gaps))

    camo = colour_gap("camo")
    assert camo < 0.3 * colour_gap("textured")
    assert camo < 0.2 * colour_gap("shapes")


def test_ood_families_are_disjoint_from_training_and_used() -> None:
    textured, ood = VARIANTS["textured"], VARIANTS["ood"]
    assert not set(ood.shapes) & set(textured.shapes)
    assert not set(ood.object_textures + ood.background_textures) & set(
        textured.object_textures + textured.background_textures
    )
    ds = SyntheticScenes("ood", size=32, num_images=30)
    shapes, textures = set(), set()
    for i in range(len(ds)):
        scene = ds.scene(i)
        shapes |= {obj.shape for obj in scene.objects}
        textures |= {obj.texture.family for obj in scene.objects} | {scene.background.family}
    assert shapes == set(OOD_SHAPES) and textures == set(OOD_TEXTURES)
    train = SyntheticScenes("textured", size=32, num_images=30)
    assert {obj.shape for i in range(30) for obj in train.scene(i).objects} == set(TRAIN_SHAPES)
    assert {train.scene(i).background.family for i in range(30)} <= set(TRAIN_TEXTURES)


def test_hsv_to_rgb_primaries() -> None:
    hsv = np.array([[0.0, 1.0, 1.0], [1 / 3, 1.0, 1.0], [2 / 3, 1.0, 0.5], [0.5, 0.0, 0.25]])
    expected = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5], [0.25, 0.25, 0.25]])
    np.testing.assert_allclose(hsv_to_rgb(hsv), expected, atol=1e-12)


def test_cache_round_trip(tmp_path: Path) -> None:
    kwargs = dict(size=32, num_images=5, seed=9)
    fresh = _stack(SyntheticScenes("camo", **kwargs))
    SyntheticScenes("camo", cache_dir=tmp_path, **kwargs)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary file left behind
    stamp = files[0].stat().st_mtime_ns
    cached = _stack(SyntheticScenes("camo", cache_dir=tmp_path, **kwargs))
    assert files[0].stat().st_mtime_ns == stamp  # reloaded, not rewritten
    np.testing.assert_array_equal(cached[0], fresh[0])
    np.testing.assert_array_equal(cached[1], fresh[1])
    SyntheticScenes("camo", cache_dir=tmp_path, size=32, num_images=5, seed=10)
    assert len(list(tmp_path.iterdir())) == 2  # other parameters, other file


def test_unreadable_cache_file_is_reported(tmp_path: Path) -> None:
    SyntheticScenes("shapes", size=16, num_images=2, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=path.name):
        SyntheticScenes("shapes", size=16, num_images=2, cache_dir=tmp_path)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(variant="clevr"), ValueError, "variant"),
        (dict(split="training"), ValueError, "split"),
        (dict(size=15), ValueError, "size"),
        (dict(size=32.0), TypeError, "size"),
        (dict(min_objects=4, max_objects=3), ValueError, "min_objects"),
        (dict(min_objects=0), ValueError, "min_objects"),
        (dict(num_images=0), ValueError, "num_images"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(object_radius=(0.2, 0.1)), ValueError, "object_radius"),
        (dict(object_radius=(0.1, 0.6)), ValueError, "object_radius"),
    ],
)
def test_invalid_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SyntheticScenes(**kwargs)


def test_object_radius_sets_the_drawn_radii_and_object_areas() -> None:
    small = SyntheticScenes("shapes", size=64, num_images=30, min_objects=1, max_objects=1)
    large = SyntheticScenes("shapes", size=64, num_images=30, min_objects=1, max_objects=1, object_radius=(0.25, 0.3))
    radii = np.array([large.scene(i).objects[0].radius for i in range(30)])
    assert radii.min() >= 0.25 * 64 and radii.max() <= 0.3 * 64
    for i in range(30):
        assert 0.09 * 64 <= small.scene(i).objects[0].radius <= 0.18 * 64
    # One object per image, so its mask area is the drawn shape's area: larger radii, larger areas.
    area = lambda ds: np.mean([(ds[i]["mask"] > 0).sum().item() for i in range(30)])  # noqa: E731
    assert area(large) > 2 * area(small)


def test_index_out_of_range() -> None:
    ds = SyntheticScenes(size=16, num_images=2)
    with pytest.raises(IndexError, match="index"):
        ds[2]
