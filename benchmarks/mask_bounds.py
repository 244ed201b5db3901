"""ARI-FG of idealised masks on the demo's test scenes: how much of it is decided at the objects'
rims. Discs that know each object's centre and area but not its shape; the true segmentation
at the cut's coarser grid; and, for a trained run, where its decoder sends the objects' pixels.

    python benchmarks/mask_bounds.py [CHECKPOINT]

The *disc painter* gives every object the disc of its own centroid and area (radius times
``scale``) and labels a pixel with the object whose disc reaches furthest past it (``1 - d / r``
largest and positive), else background: the masks of a decoder that has learned where and how
large each object is, and nothing of its outline. With a CHECKPOINT (``checkpoint.pt`` of a
demo-config run or its folder) it also counts, over the same scenes, the share of object
pixels whose decoder argmax is the object's own slot (the slot holding most of it), the
background slot (the one holding most background pixels) or another slot.

*Coarse truth*: the true labels on the ``factor`` times coarser grid of the cut (16 x 16 for the
demo's 32 px), one label per cell, repeated back to the pixels; each cell takes its most
frequent label (ties to the lower label, the background), or, with ``prefer_objects``, its most
frequent object label wherever it holds an object pixel (the best a coarse partition can do for
ARI-FG, which ignores background pixels). Writes ``benchmarks/results/mask_bounds.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from cutslots.cli import demo_config
from cutslots.data.registry import eval_sets
from cutslots.experiments.common import eval_mode, load_run
from cutslots.metrics.segmentation import ari, masks_to_labels
from cutslots.models.builders import build_autoencoder
from cutslots.train.checkpoint import load_checkpoint

RESULTS = Path("benchmarks") / "results"
SCALES = (0.8, 0.9, 1.0, 1.1, 1.2, 1.5)


def disc_labels(mask: np.ndarray, scale: float) -> np.ndarray:
    """mask (H, W) int, 0 background and 1..n objects -> (H, W) int: the disc painter's labels
    (objects without a pixel get no disc)."""
    if mask.ndim != 2 or scale <= 0:
        raise ValueError(f"mask must be (H, W) and scale > 0, got shape {mask.shape} and scale {scale}")
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]].astype(np.float64)  # (H, W) each
    reach = [np.zeros(mask.shape)]  # the background wins where no disc reaches past 0
    for k in range(1, int(mask.max()) + 1):
        inside = mask == k  # (H, W)
        if not inside.any():
            reach.append(np.full(mask.shape, -np.inf))
            continue
        radius = scale * np.sqrt(inside.sum() / np.pi)
        distance = np.hypot(yy - yy[inside].mean(), xx - xx[inside].mean())  # (H, W)
        reach.append(1.0 - distance / radius)
    return np.argmax(np.stack(reach), axis=0)  # (H, W)


def coarse_labels(mask: np.ndarray, factor: int, prefer_objects: bool) -> np.ndarray:
    """mask (H, W) int -> (H, W) int: one label per ``factor`` x ``factor`` cell (above),
    repeated back to the pixels. H and W must be multiples of ``factor``."""
    h, w = mask.shape
    if factor < 1 or h % factor or w % factor:
        raise ValueError(f"factor must be >= 1 and divide the mask's sides {mask.shape}, got {factor}")
    cells = mask.reshape(h // factor, factor, w // factor, factor).swapaxes(1, 2)  # (h/f, w/f, f, f)
    cells = cells.reshape(h // factor, w // factor, factor * factor)  # (h/f, w/f, f*f)
    counts = np.stack([(cells == k).sum(-1) for k in range(int(mask.max()) + 1)], axis=-1)  # (h/f, w/f, n+1)
    if prefer_objects:
        counts[..., 0] = np.where(counts[..., 1:].sum(-1) > 0, -1, counts[..., 0])
    labels = counts.argmax(-1)  # (h/f, w/f); ties to the lower label
    return labels.repeat(factor, axis=0).repeat(factor, axis=1)  # (H, W)


def pixel_destinations(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """true, pred (N, H, W) int labels -> shares of object pixels predicted as (their object's
    own slot, the background slot, another slot), summed over the N images."""
    counts = np.zeros(3)
    for t, p in zip(true, pred, strict=True):
        background_slot = np.bincount(p[t == 0]).argmax() if (t == 0).any() else -1
        for k in np.unique(t[t > 0]):
            slots = p[t == k]
            own = np.bincount(slots).argmax()
            to_own = (slots == own).sum()
            to_background = 0 if own == background_slot else (slots == background_slot).sum()
            counts += [to_own, to_background, slots.size - to_own - to_background]
    return counts / counts.sum()


def _ari_fg(true: np.ndarray, pred: np.ndarray) -> float:
    return 100 * float(ari(true, pred, ignore_background=True).mean())


def _disc_rows(true: np.ndarray) -> list[str]:
    rows = []
    for scale in SCALES:
        pred = np.stack([disc_labels(m, scale) for m in true])  # (N, H, W)
        rows.append(f"| {scale:.1f} | {_ari_fg(true, pred):.1f} | {100 * pixel_destinations(true, pred)[0]:.1f} |")
    return rows


def _coarse_rows(true: np.ndarray, factor: int) -> list[str]:
    rows = []
    for prefer_objects, rule in (
        (False, "most frequent (ties to the background)"),
        (True, "most frequent object, wherever it has one"),
    ):
        pred = np.stack([coarse_labels(m, factor, prefer_objects) for m in true])  # (N, H, W)
        rows.append(f"| {rule} | {_ari_fg(true, pred):.1f} |")
    return rows


def _run_line(path: str, images: torch.Tensor, true: np.ndarray) -> str:
    """The decoder masks of the run at ``path`` on images (N, 3, H, W), as one sentence."""
    checkpoint, run = load_run(path)
    model = build_autoencoder(run.model, run.data.image_size)
    load_checkpoint(checkpoint, model)
    with eval_mode(model), torch.no_grad():
        masks = torch.cat([model(chunk)["masks"] for chunk in images.split(32)])  # (N, K, H, W)
    pred = masks_to_labels(masks).numpy()  # (N, H, W)
    own, background, other = 100 * pixel_destinations(true, pred)
    return (
        f"Decoder masks of the run `{path}`: ARI-FG {_ari_fg(true, pred):.1f} %; of the object pixels, "
        f"{own:.1f} % go to the object's own slot, {background:.1f} % to the background slot and "
        f"{other:.1f} % to other slots."
    )


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise SystemExit("usage: python benchmarks/mask_bounds.py [CHECKPOINT]")
    config = demo_config()
    name, ds = next(iter(eval_sets(config.data).items()))
    items = [ds[i] for i in range(len(ds))]
    true = np.stack([item["mask"].numpy() for item in items])  # (N, H, W)
    images = torch.stack([item["image"] for item in items])  # (N, 3, H, W)
    with torch.no_grad():  # the grid the demo's cut partitions, read off its model
        model = build_autoencoder(config.model, config.data.image_size)
        side = model(images[:1])["grouping_masks"].shape[-1]
    factor = config.data.image_size // side
    lines = [
        "# ARI-FG of idealised masks on the demo's test scenes (`python benchmarks/mask_bounds.py`)",
        "",
        f"{len(items)} `{name}` test scenes of the demo config; every object painted as the disc of its "
        "centroid and area, the radius times the scale:",
        "",
        "| radius scale | ARI-FG (%) | object pixels to their own disc (%) |",
        "|---|---|---|",
        *_disc_rows(true),
        "",
        f"The true labels at the cut's {side} x {side} grid, one label per {factor} x {factor} cell, "
        "repeated back to the pixels:",
        "",
        "| cell label | ARI-FG (%) |",
        "|---|---|",
        *_coarse_rows(true, factor),
    ]
    if argv:
        lines += ["", _run_line(argv[0], images, true)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mask_bounds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
