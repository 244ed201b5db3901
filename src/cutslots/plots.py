"""Figures of the experiments as ``matplotlib.figure.Figure`` objects, and one PNG writer.

Every ``*_figure`` function builds and returns a figure; :func:`save_figure` writes it and
:func:`figure_image` renders it to pixels (for the loggers). The figures are made without
pyplot, so nothing here picks a global matplotlib backend.

- :func:`decomposition_figure`: images decomposed into slots, as the paper's Fig. 4.
- :func:`curve_figure`, :func:`learning_curve_figure`, :func:`ari_time_figure`: training curves.
- :func:`clip_strip_figure` (Fig. 5), :func:`far_pair_figure` (Fig. 6): tracked video slots.
- :func:`cut_fidelity_figure`: relaxed against exact min cuts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from cutslots.metrics import chain_identities, hard_links

STRIP_FRAMES = 8
"""At most this many (evenly spaced) frames in the clip strip."""


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Lay out ``fig`` and write it to ``path`` as PNG, creating its folders; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def figure_image(fig: Figure, dpi: int = 100) -> np.ndarray:
    """``fig`` laid out and rendered as :func:`save_figure` writes it: (H, W, 3) uint8 RGB."""
    fig.tight_layout()
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _hwc(image: Tensor) -> np.ndarray:
    """An image for imshow: (3, H, W) -> (H, W, 3) float32, clipped to [0, 1]."""
    return image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()


def _slot_image(mask: Tensor, recon: Tensor) -> np.ndarray:
    """A slot's masked reconstruction on white: mask (H, W), recon (3, H, W) -> (H, W, 3)."""
    return _hwc(mask[None] * recon + (1 - mask[None]))


def decomposition_figure(images: Tensor, out: Mapping[str, Tensor], max_rows: int = 4) -> Figure:
    """Per image (as the paper's Fig. 4): original and reconstruction, then per slot its
    masked reconstruction (``masks * slot_recons``), its decoder mask and, when the model has
    one, its grouping mask (the k-partition or the attention, ``out["grouping_masks"]``).

    ``images`` (B, 3, H, W); ``out`` from the model: "recon" (B, 3, H, W), "masks"
    (B, K, H, W), "slot_recons" (B, K, 3, H, W), optionally "grouping_masks" (B, K, h, w).
    """
    masks, recons = out["masks"].detach().cpu(), out["slot_recons"].detach().cpu()
    grouping = out.get("grouping_masks")
    per_image = 2 if grouping is None else 3
    rows, slots = min(max_rows, images.shape[0]), masks.shape[1]
    fig = Figure(figsize=(1.3 * (slots + 2), 1.3 * per_image * rows))
    axes = fig.subplots(per_image * rows, slots + 2, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r in range(rows):
        top = axes[per_image * r]
        top[0].imshow(_hwc(images[r]))
        top[1].imshow(_hwc(out["recon"][r]))
        axes[per_image * r + 1][1].text(0.5, 0.5, "decoder\nmasks", ha="center", va="center", fontsize=7)
        if grouping is not None:
            axes[per_image * r + 2][1].text(0.5, 0.5, "grouping\nmasks", ha="center", va="center", fontsize=7)
        if r == 0:
            top[0].set_title("image", fontsize=8)
            top[1].set_title("recon", fontsize=8)
        for k in range(slots):
            top[k + 2].imshow(_slot_image(masks[r, k], recons[r, k]))
            axes[per_image * r + 1][k + 2].imshow(masks[r, k].numpy(), cmap="gray", vmin=0, vmax=1)
            if grouping is not None:
                axes[per_image * r + 2][k + 2].imshow(
                    grouping[r, k].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1
                )
            if r == 0:
                top[k + 2].set_title(f"slot {k}", fontsize=8)
    return fig


def curve_figure(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], ylabel: str = "loss", log: bool = True
) -> Figure:
    """Line plot of named ``(steps, values)`` curves."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for name, (x, y) in curves.items():
        ax.plot(x, y, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def learning_curve_figure(
    loss: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    scores: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    score_label: str = "ARI-FG",
) -> Figure:
    """Two panels over training steps: the loss (log scale) and evaluation ``scores`` in %."""
    fig = Figure(figsize=(11, 3.8))
    left, right = fig.subplots(1, 2)
    for name, (x, y) in loss.items():
        left.plot(x, y, label=name)
    left.set_yscale("log")
    left.set_ylabel("loss")
    for name, (x, y) in scores.items():
        right.plot(
            x, 100 * np.asarray(y), marker="o", markersize=3, label=name, linestyle="--" if "static" in name else "-"
        )
    right.set_ylabel(f"{score_label} (%)")
    right.set_ylim(-5, 100)
    for ax in (left, right):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def ari_time_figure(curves: Mapping[str, Mapping[str, Sequence[Mapping[str, Sequence[float]]]]]) -> Figure:
    """ARI-FG (%) against training time, one panel per training set.

    ``curves[panel][model]`` holds one mapping per seed with ``"decoder"`` / ``"grouping"``
    ARI-FG values and their times ``"decoder_t"`` / ``"grouping_t"`` in seconds; decoder
    masks are drawn solid, grouping masks dashed, one colour per model."""
    fig = Figure(figsize=(6.5 * len(curves), 4.2))
    axes = fig.subplots(1, len(curves), squeeze=False)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] * 3
    for ax, (panel, models) in zip(axes[0], curves.items()):
        for color, (model, seeds) in zip(colors, models.items()):
            for i, seed in enumerate(seeds):
                for kind, style in (("decoder", "-"), ("grouping", "--")):
                    if kind in seed:
                        label = f"{model} ({kind})" if i == 0 else None
                        ax.plot(
                            seed[f"{kind}_t"],
                            100 * np.asarray(seed[kind]),
                            style,
                            color=color,
                            alpha=0.8,
                            linewidth=1.2,
                            label=label,
                        )
        ax.set_title(f"trained on {panel}", fontsize=9)
        ax.set_xlabel("training time (s, 2 CPU cores)")
        ax.set_ylabel("ARI-FG (%)")
        ax.set_ylim(-5, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    return fig


def clip_strip_figure(video: Tensor, out: Mapping[str, Tensor], title: str = "") -> Figure:
    """Paper Fig. 5 for one clip: frames, reconstructions, then one row per track with that
    track's slot reconstruction in every frame (tracks: Hungarian links of ``out["matchings"]``)
    and, when ``out`` has grouping masks, a row under it with the track's grouping mask.

    video (T, 3, H, W); ``out``: one clip's "masks" (T, K, H, W), "matchings" (T-1, K, K),
    "slot_recons" (T, K, 3, H, W), "recon" (T, 3, H, W), optionally "grouping_masks"
    (T, K, H, W), each frame in its own slot order. At most :data:`STRIP_FRAMES` evenly spaced
    frames are shown.
    """
    steps, slots = out["masks"].shape[:2]
    grouping = out.get("grouping_masks")  # (T, K, H, W) or None
    per_track = 1 if grouping is None else 2
    # track_of[t, j]: track of frame t's slot j; its inverse gives each track's slot per frame.
    track_of = chain_identities(hard_links(out["matchings"][None].cpu(), "hungarian"))[0]
    slot_of_track = np.argsort(track_of, axis=1)
    shown = np.unique(np.linspace(0, steps - 1, min(steps, STRIP_FRAMES)).round().astype(int))
    rows = per_track * slots + 2
    fig = Figure(figsize=(1.2 * len(shown), 1.2 * rows))
    axes = fig.subplots(rows, len(shown), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for col, t in enumerate(shown):
        axes[0, col].imshow(_hwc(video[t]))
        axes[0, col].set_title(f"t={t}", fontsize=8)
        axes[1, col].imshow(_hwc(out["recon"][t]))
        for k in range(slots):
            j = slot_of_track[t, k]
            row = 2 + per_track * k
            axes[row, col].imshow(_slot_image(out["masks"][t, j].cpu(), out["slot_recons"][t, j].cpu()))
            if grouping is not None:
                axes[row + 1, col].imshow(grouping[t, j].cpu().numpy(), cmap="gray", vmin=0.0, vmax=1.0)
    labels = ["frame", "recon"]
    for k in range(slots):
        labels += [f"track {k}"] + ([f"{k}: grouping"] if grouping is not None else [])
    for row, label in enumerate(labels):
        axes[row, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def far_pair_figure(
    pair: Tensor, out: Mapping[str, Tensor], frames: tuple[int, int], note: str | None = None
) -> Figure:
    """Paper Fig. 6: two far-apart frames, one row each: image, reconstruction, then the matched
    slots (column k of both rows is the same matched slot).

    pair (2, 3, H, W); ``out``: "recon" (2, 3, H, W), "slot_recons" (2, K, 3, H, W), "masks"
    (2, K, H, W) with the second frame's slots in the first's order; ``frames``: the frame
    indices shown, ``note``: a line under the title.
    """
    slots = out["masks"].shape[1]
    fig = Figure(figsize=(1.2 * (slots + 2), 2.9 if note else 2.6))
    axes = fig.subplots(2, slots + 2, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for row in range(2):
        axes[row, 0].imshow(_hwc(pair[row]))
        axes[row, 0].set_ylabel(f"frame {frames[row]}", fontsize=8)
        axes[row, 1].imshow(_hwc(out["recon"][row]))
        for k in range(slots):
            axes[row, k + 2].imshow(_slot_image(out["masks"][row, k].cpu(), out["slot_recons"][row, k].cpu()))
    for col, label in enumerate(["image", "recon"] + [f"slot {k}" for k in range(slots)]):
        axes[0, col].set_title(label, fontsize=8)
    fig.suptitle(f"frames {frames[0]} and {frames[1]}" + (f"\n({note})" if note else ""), fontsize=8)
    return fig


def cut_fidelity_figure(figure: Mapping[str, Any]) -> Figure:
    """One row per image: photo, exact cut, relaxed ``p``, ``p`` thresholded at the midpoint
    and at the sweep's best threshold. The ``p`` colour range is that of the unseeded pixels.

    ``figure``: "size", "lambda", "gamma" and "panels", one tuple per image of (name, photo
    (H, W, C), exact cut (H, W) bool, p (H, W), p_s, p_t, sweep segmentation (H, W) bool,
    unseeded pixels (H, W) bool), as ``cutslots.experiments.cut_fidelity.run_cut_fidelity``
    returns it.
    """
    panels = figure["panels"]
    titles = ("exact min cut", "relaxed p", "p > (p_s + p_t)/2", "best sweep level set")
    fig = Figure(figsize=(12.5, 2.6 * len(panels)))
    axes = fig.subplots(len(panels), 5, squeeze=False)
    for row, (name, photo, exact, p, p_s, p_t, sweep_seg, free) in zip(axes, panels):
        row[0].imshow(photo.squeeze(-1) if photo.shape[-1] == 1 else photo, cmap="gray")
        row[1].imshow(exact, cmap="gray")
        im = row[2].imshow(p, cmap="viridis", vmin=p[free].min(), vmax=p[free].max())
        fig.colorbar(im, ax=row[2], fraction=0.046)
        row[3].imshow(p > (p_s + p_t) / 2, cmap="gray")
        row[4].imshow(sweep_seg, cmap="gray")
        for ax, title in zip(row, (name, *titles)):
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    title = f"{figure['size']} px, lambda = {figure['lambda']:g}, gamma = {figure['gamma']:g}, paper form"
    fig.suptitle(title, fontsize=10)
    return fig


def random_walker_fidelity_figure(figure: Mapping[str, Any]) -> Figure:
    """One row per image: exact cut, the paper relaxation's best level set, the plain random
    walker's foreground ``x``, IRLS's ``x`` and ``x > 1/2``. ``figure``: as for
    :func:`cut_fidelity_figure`, plus "walker": {"iterations", "eps", "panels": (name, plain x
    (H, W) or None, IRLS x (H, W))}."""
    walker = figure["walker"]
    rows = list(zip(figure["panels"], walker["panels"]))
    irls = f"IRLS {walker['iterations']}, eps {walker['eps']:g}"
    titles = ("exact min cut", "paper, best level set", "random walker x", f"{irls}: x", f"{irls}: x > 1/2")
    fig = Figure(figsize=(12.5, 2.6 * len(rows)))
    axes = fig.subplots(len(rows), 5, squeeze=False)
    for row, ((name, _, exact, _, _, _, sweep_seg, _), (_, plain, best)) in zip(axes, rows):
        images = (exact, sweep_seg, plain, best, best > 0.5)
        for ax, image, title in zip(row, images, titles):
            if image is not None:
                ax.imshow(image, cmap="gray" if image.dtype == bool else "viridis", vmin=0, vmax=1)
            ax.set_title(f"{name}: {title}" if ax is row[0] else title, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"{figure['size']} px, lambda = {figure['lambda']:g}", fontsize=10)
    return fig
