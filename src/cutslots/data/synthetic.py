"""Seeded procedural scenes of 2-D objects: a download-free stand-in for CLEVR / ClevrTex.

Variants:

- ``shapes``: flat-coloured shapes on a plain, low-saturation background.
- ``textured``: procedurally textured shapes on a textured background (ClevrTex analogue).
- ``camo``: objects and background share one texture family and one palette per image, so
  colour alone does not separate them (ClevrTex CAMO analogue).
- ``ood``: shapes and texture families never used by ``textured`` (ClevrTex OOD analogue).

A scene is drawn with its own ``numpy.random.Generator`` (see :func:`scene_rng`), so every item
is reproducible independently of the order of access. Objects are painted back to front: the
instance mask holds 0 for the background and 1..n for the objects, a larger id being nearer to
the viewer. Every object is placed so that at least ``max(MIN_VISIBLE_PIXELS,
MIN_VISIBLE_FRACTION * its area)`` of its pixels stay visible, and lies fully inside the image.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from cutslots.data.cache import load_or_build

GENERATOR_VERSION = 1  # bump whenever drawing changes, so cached datasets are regenerated

TRAIN_SHAPES = ("circle", "ellipse", "square", "triangle", "diamond")
OOD_SHAPES = ("star", "cross", "ring", "hexagon")
TRAIN_TEXTURES = ("stripes", "checkers", "dots", "noise", "gradient")
OOD_TEXTURES = ("concentric", "zigzag", "marble", "grid")
FLAT = "flat"

SPLITS = ("train", "val", "test")
MIN_SIZE = 16
MAX_OBJECTS = 12  # placement with guaranteed visibility gets unreliable beyond this
MIN_VISIBLE_PIXELS = 4
MIN_VISIBLE_FRACTION = 0.3
RADIUS_RANGE = (0.09, 0.18)  # default object radius range, as fractions of the image size
MAX_RADIUS = 0.5  # an object must fit in the image
_MAX_PLACEMENT_TRIES = 500
_NUM_WAVES = 6  # sinusoids summed into the smooth noise field


@dataclass(frozen=True)
class VariantSpec:
    """The families a variant draws from; ``camouflage`` shares one texture/palette per image."""

    shapes: tuple[str, ...]
    object_textures: tuple[str, ...]
    background_textures: tuple[str, ...]
    camouflage: bool = False


VARIANTS: dict[str, VariantSpec] = {
    "shapes": VariantSpec(TRAIN_SHAPES, (FLAT,), (FLAT,)),
    "textured": VariantSpec(TRAIN_SHAPES, TRAIN_TEXTURES, TRAIN_TEXTURES),
    "camo": VariantSpec(TRAIN_SHAPES, TRAIN_TEXTURES, TRAIN_TEXTURES, camouflage=True),
    "ood": VariantSpec(OOD_SHAPES, OOD_TEXTURES, OOD_TEXTURES),
}
"""The synthetic scene families by ``data.variant`` name."""


@dataclass(frozen=True, eq=False)
class Texture:
    """A procedural texture: colour = colors[0] + (colors[1] - colors[0]) * pattern.

    ``colors``: (2, 3) RGB in [0, 1]; ``period`` in pixels; ``phase``: (2,) in periods;
    ``waves``: (_NUM_WAVES, 3) rows (frequency x, frequency y, phase) of the noise field;
    ``param``: family specific (dot radius, line half-width, zigzag amplitude), in periods.
    """

    family: str
    colors: np.ndarray
    period: float
    angle: float
    phase: np.ndarray
    waves: np.ndarray
    param: float


@dataclass(frozen=True, eq=False)
class SceneObject:
    """A shape of radius ``radius`` pixels (it fits in that circle) centred at ``center`` (x, y)."""

    shape: str
    center: tuple[float, float]
    radius: float
    angle: float
    aspect: float  # minor/major axis ratio, used by ellipses only
    texture: Texture


@dataclass(frozen=True, eq=False)
class Scene:
    background: Texture
    objects: tuple[SceneObject, ...]  # back to front: objects[k - 1] has mask id k


def scene_rng(stream: int, seed: int, split: str, index: int) -> np.random.Generator:
    """Independent generator per (dataset stream, seed, split, item): splits never share seeds."""
    return np.random.default_rng([stream, seed, SPLITS.index(split), index])


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """(..., 3) HSV in [0, 1] (hue wraps) -> (..., 3) RGB in [0, 1]."""
    h, s, v = hsv[..., 0:1] * 6.0, hsv[..., 1:2], hsv[..., 2:3]
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h, 6.0)
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _color(rng: np.random.Generator, hue: float, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    return hsv_to_rgb(np.array([hue % 1.0, rng.uniform(*sat), rng.uniform(*val)]))


def sample_texture(rng: np.random.Generator, family: str, colors: np.ndarray, scale: float) -> Texture:
    """Random texture of ``family`` with pattern period about ``scale`` pixels."""
    # Every family draws the same numbers so the stream does not depend on the family.
    period = scale * rng.uniform(0.7, 1.4)
    angle = rng.uniform(0.0, math.pi)
    phase = rng.uniform(0.0, 1.0, size=2)
    waves = np.concatenate(
        [rng.normal(0.0, 0.6, size=(_NUM_WAVES, 2)), rng.uniform(0.0, 2 * math.pi, size=(_NUM_WAVES, 1))], axis=1
    )
    param = {"dots": rng.uniform(0.2, 0.4), "grid": rng.uniform(0.08, 0.15), "zigzag": rng.uniform(0.3, 0.8)}
    return Texture(family, np.asarray(colors, dtype=np.float64), period, angle, phase, waves, param.get(family, 0.0))


def texture_pattern(texture: Texture, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pattern in [0, 1] at texture-frame pixel coordinates ``x``, ``y`` (same shape)."""
    c, s = math.cos(texture.angle), math.sin(texture.angle)
    a = (c * x + s * y) / texture.period + texture.phase[0]
    b = (-s * x + c * y) / texture.period + texture.phase[1]
    family = texture.family
    if family == FLAT:
        return np.zeros_like(a)
    if family == "stripes":
        return (np.sin(2 * math.pi * a) > 0).astype(np.float64)
    if family == "checkers":
        return np.mod(np.floor(a) + np.floor(b), 2.0)
    if family == "dots":
        return ((a - np.round(a)) ** 2 + (b - np.round(b)) ** 2 < texture.param**2).astype(np.float64)
    if family == "noise":
        return _noise(texture, a, b)
    if family == "gradient":
        return 0.5 + 0.5 * np.sin(0.5 * math.pi * a)  # one smooth ramp spans two periods
    if family == "concentric":
        return (np.sin(2 * math.pi * np.hypot(a, b)) > 0).astype(np.float64)
    if family == "zigzag":
        triangle = 2.0 * np.abs(b - np.round(b))
        return (np.sin(2 * math.pi * (a + texture.param * triangle)) > 0).astype(np.float64)
    if family == "marble":
        return 0.5 + 0.5 * np.sin(2 * math.pi * a + 6.0 * (_noise(texture, a, b) - 0.5))
    if family == "grid":
        lines = (np.abs(a - np.round(a)) < texture.param) | (np.abs(b - np.round(b)) < texture.param)
        return lines.astype(np.float64)
    raise ValueError(f"unknown texture family {family!r}")


def _noise(texture: Texture, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smooth random field in (0, 1): a squashed sum of random plane waves (unbounded domain)."""
    fx, fy, ph = texture.waves[:, 0], texture.waves[:, 1], texture.waves[:, 2]
    total = np.cos(2 * math.pi * (a[..., None] * fx + b[..., None] * fy) + ph).sum(axis=-1)
    return 0.5 + 0.5 * np.tanh(total / math.sqrt(_NUM_WAVES))


def texture_color(texture: Texture, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """RGB in [0, 1], shape x.shape + (3,), at texture-frame pixel coordinates."""
    p = texture_pattern(texture, x, y)[..., None]
    return texture.colors[0] + (texture.colors[1] - texture.colors[0]) * p


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    """Inside test in normalised object coordinates (the shape fits in the unit disc) -> bool."""
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    if shape == "circle":
        return rho <= 1.0
    if shape == "ellipse":
        return u**2 + (v / aspect) ** 2 <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.7
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "triangle":
        return _regular_polygon(rho, phi, 3)
    if shape == "hexagon":
        return _regular_polygon(rho, phi, 6)
    if shape == "star":
        return _star(rho, phi, points=5, inner=0.45)
    if shape == "cross":
        return ((np.abs(u) <= 0.95) & (np.abs(v) <= 0.3)) | ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95))
    if shape == "ring":
        return (rho <= 1.0) & (rho >= 0.55)
    raise ValueError(f"unknown shape {shape!r}")


def _regular_polygon(rho: np.ndarray, phi: np.ndarray, sides: int) -> np.ndarray:
    """Regular polygon with circumradius 1 and a vertex at angle 0."""
    sector = 2 * math.pi / sides
    return rho * np.cos(np.mod(phi, sector) - sector / 2) <= math.cos(sector / 2)


def _star(rho: np.ndarray, phi: np.ndarray, points: int, inner: float) -> np.ndarray:
    """Straight-edged star: tips at radius 1 (one at angle 0), inner corners at ``inner``."""
    half = math.pi / points
    psi = np.abs(np.mod(phi + half, 2 * half) - half)  # folded angle to the nearest tip, in [0, half]
    x, y = rho * np.cos(psi), rho * np.sin(psi)
    # Keep the origin's side of the edge from the tip (1, 0) to the inner corner.
    ex, ey = inner * math.cos(half) - 1.0, inner * math.sin(half)
    return ex * y - ey * (x - 1.0) >= 0.0


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each (size, size)."""
    centres = np.arange(size, dtype=np.float64) + 0.5
    y, x = np.meshgrid(centres, centres, indexing="ij")
    return x, y


def _object_frame(obj: SceneObject, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in the object's rotated frame (texture moves and turns with it)."""
    dx, dy = x - obj.center[0], y - obj.center[1]
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    return c * dx + s * dy, -s * dx + c * dy


def object_mask(obj: SceneObject, size: int) -> np.ndarray:
    """(size, size) bool footprint of ``obj`` ignoring occlusion."""
    a, b = _object_frame(obj, *_pixel_grid(size))
    return shape_mask(obj.shape, a / obj.radius, b / obj.radius, obj.aspect)


def render_scene(scene: Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Paint back to front -> image (size, size, 3) uint8, mask (size, size) uint8 (0 = background)."""
    x, y = _pixel_grid(size)
    image = texture_color(scene.background, x, y)
    mask = np.zeros((size, size), dtype=np.uint8)
    for k, obj in enumerate(scene.objects, start=1):
        a, b = _object_frame(obj, x, y)
        inside = shape_mask(obj.shape, a / obj.radius, b / obj.radius, obj.aspect)
        image[inside] = texture_color(obj.texture, a[inside], b[inside])
        mask[inside] = k
    # Quantise here so freshly generated and cached items are bit-identical.
    return np.round(image * 255.0).astype(np.uint8), mask


def _object_colors(rng: np.random.Generator, spec: VariantSpec) -> np.ndarray:
    hue = rng.uniform()
    bright = _color(rng, hue, (0.5, 1.0), (0.6, 1.0))
    dark = _color(rng, hue + rng.uniform(-0.15, 0.15), (0.4, 1.0), (0.15, 0.5))
    return np.stack([bright, dark]) if spec.object_textures != (FLAT,) else np.stack([bright, bright])


def _background_colors(rng: np.random.Generator, spec: VariantSpec) -> np.ndarray:
    if spec.background_textures == (FLAT,):
        plain = _color(rng, rng.uniform(), (0.0, 0.2), (0.1, 0.45))
        return np.stack([plain, plain])
    light = _color(rng, rng.uniform(), (0.0, 0.35), (0.35, 0.75))
    return np.stack([light, _color(rng, rng.uniform(), (0.0, 0.35), (0.1, 0.4))])


def sample_scene(
    rng: np.random.Generator,
    variant: str,
    size: int,
    num_objects: int,
    radius_range: tuple[float, float] = RADIUS_RANGE,
) -> Scene:
    """Draw a background and ``num_objects`` objects placed so each stays visible (see module doc);
    object radii are uniform in ``radius_range`` (fractions of ``size``)."""
    spec = VARIANTS[variant]
    background_scale = 0.12 * size
    if spec.camouflage:
        # One family and palette for the whole image; objects differ only in texture layout.
        family = spec.object_textures[rng.integers(len(spec.object_textures))]
        palette = np.stack([_color(rng, rng.uniform(), (0.3, 1.0), (0.2, 1.0)) for _ in range(2)])
        background = sample_texture(rng, family, palette, background_scale)
    else:
        family = spec.background_textures[rng.integers(len(spec.background_textures))]
        background = sample_texture(rng, family, _background_colors(rng, spec), background_scale)

    objects: list[SceneObject] = []
    areas: list[int] = []
    mask = np.zeros((size, size), dtype=np.int64)
    for k in range(1, num_objects + 1):
        for _ in range(_MAX_PLACEMENT_TRIES):
            radius = size * rng.uniform(*radius_range)
            if spec.camouflage:
                texture = sample_texture(rng, family, palette, background_scale)
            else:
                texture_family = spec.object_textures[rng.integers(len(spec.object_textures))]
                texture = sample_texture(rng, texture_family, _object_colors(rng, spec), 0.6 * radius)
            obj = SceneObject(
                shape=spec.shapes[rng.integers(len(spec.shapes))],
                center=(float(rng.uniform(radius, size - radius)), float(rng.uniform(radius, size - radius))),
                radius=radius,
                angle=rng.uniform(0.0, 2 * math.pi),
                aspect=rng.uniform(0.5, 0.75),
                texture=texture,
            )
            footprint = object_mask(obj, size)
            trial = np.where(footprint, k, mask)
            visible = np.bincount(trial.ravel(), minlength=k + 1)[1:]
            need = np.maximum(MIN_VISIBLE_PIXELS, np.ceil(MIN_VISIBLE_FRACTION * np.array(areas + [footprint.sum()])))
            if (visible >= need).all():
                objects.append(obj)
                areas.append(int(footprint.sum()))
                mask = trial
                break
        else:
            raise RuntimeError(f"could not place object {k} of {num_objects} visibly in a {size}x{size} image")
    return Scene(background, tuple(objects))


def validate_scene_args(
    variant: str,
    split: str,
    size: int,
    count: int,
    count_name: str,
    min_objects: int,
    max_objects: int,
    seed: int,
    object_radius: tuple[float, float] = RADIUS_RANGE,
) -> None:
    """Shared argument checks of the scene datasets; raises ValueError/TypeError naming the argument."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    for name, value in (
        ("size", size),
        (count_name, count),
        ("min_objects", min_objects),
        ("max_objects", max_objects),
        ("seed", seed),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
    if count < 1:
        raise ValueError(f"{count_name} must be >= 1, got {count}")
    if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
        raise ValueError(
            f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, "
            f"got min_objects={min_objects}, max_objects={max_objects}"
        )
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if (
        not isinstance(object_radius, tuple)
        or len(object_radius) != 2
        or not all(isinstance(r, float) for r in object_radius)
        or not 0.0 < object_radius[0] <= object_radius[1] <= MAX_RADIUS
    ):
        raise ValueError(
            f"object_radius must be a tuple (low, high) of floats with 0 < low <= high <= {MAX_RADIUS} "
            f"(fractions of the image size), got {object_radius!r}"
        )


class SyntheticScenes(Dataset):
    """Static synthetic scenes: item -> {"image": (3, H, W) float32 in [0, 1], "mask": (H, W) int64}.

    Items are generated on access unless ``cache_dir`` is given, in which case the whole set is
    generated once, stored as one ``.npz`` keyed by all parameters and reloaded next time.
    ``object_radius``: (low, high) range of object radii as fractions of ``size``.
    """

    STREAM = 1  # distinguishes this dataset's random streams from other generators

    def __init__(
        self,
        variant: str = "shapes",
        *,
        split: str = "train",
        size: int = 64,
        num_images: int = 1000,
        min_objects: int = 2,
        max_objects: int = 6,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        object_radius: tuple[float, float] = RADIUS_RANGE,
    ) -> None:
        validate_scene_args(
            variant, split, size, num_images, "num_images", min_objects, max_objects, seed, object_radius
        )
        self.variant, self.split, self.size, self.num_images = variant, split, size, num_images
        self.min_objects, self.max_objects, self.seed = min_objects, max_objects, seed
        self.object_radius = object_radius
        self._arrays: dict[str, np.ndarray] | None = None
        if cache_dir is not None:
            params = {
                "generator": GENERATOR_VERSION,
                "variant": variant,
                "split": split,
                "size": size,
                "num_images": num_images,
                "min_objects": min_objects,
                "max_objects": max_objects,
                "seed": seed,
                "object_radius": list(object_radius),
            }
            self._arrays = load_or_build(cache_dir, f"synthetic-{variant}-{split}-{size}", params, self._build_all)

    def __len__(self) -> int:
        return self.num_images

    def scene(self, index: int) -> Scene:
        """The drawn description (background and objects) of item ``index``."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index must be in [0, {self.num_images}), got {index}")
        rng = scene_rng(self.STREAM, self.seed, self.split, index)
        num_objects = int(rng.integers(self.min_objects, self.max_objects + 1))
        return sample_scene(rng, self.variant, self.size, num_objects, self.object_radius)

    def _build_all(self) -> dict[str, np.ndarray]:
        rendered = [render_scene(self.scene(i), self.size) for i in range(self.num_images)]
        return {"image": np.stack([r[0] for r in rendered]), "mask": np.stack([r[1] for r in rendered])}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._arrays is None:
            image, mask = render_scene(self.scene(index), self.size)
        else:
            if not 0 <= index < self.num_images:
                raise IndexError(f"index must be in [0, {self.num_images}), got {index}")
            image, mask = self._arrays["image"][index], self._arrays["mask"][index]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0),
            "mask": torch.from_numpy(mask.astype(np.int64)),
        }
