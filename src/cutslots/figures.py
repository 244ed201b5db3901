"""PNG figures: decompositions as in the paper's Fig. 4 and training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Lay out, write as PNG (creating folders) and close ``fig``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()


def decomposition_figure(
    images: torch.Tensor, out: Mapping[str, torch.Tensor], path: str | Path, max_rows: int = 4
) -> Path:
    """Per image (as the paper's Fig. 4): original and reconstruction, then per slot its
    masked reconstruction (``masks * slot_recons``), its decoder mask and, when the model has
    one, its grouping mask (the k-partition or the attention, ``out["grouping_masks"]``).
    ``images: (B,3,H,W)``, ``out`` from the model."""
    masks, recons = out["masks"].detach().cpu(), out["slot_recons"].detach().cpu()
    grouping = out.get("grouping_masks")
    per_image = 2 if grouping is None else 3
    rows, slots = min(max_rows, images.shape[0]), masks.shape[1]
    fig, axes = plt.subplots(
        per_image * rows, slots + 2, figsize=(1.3 * (slots + 2), 1.3 * per_image * rows), squeeze=False
    )
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
            top[k + 2].imshow(_hwc(masks[r, k, None] * recons[r, k] + (1 - masks[r, k, None])))
            axes[per_image * r + 1][k + 2].imshow(masks[r, k].numpy(), cmap="gray", vmin=0, vmax=1)
            if grouping is not None:
                axes[per_image * r + 2][k + 2].imshow(grouping[r, k].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            if r == 0:
                top[k + 2].set_title(f"slot {k}", fontsize=8)
    return save_figure(fig, path)


def curve_figure(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, ylabel: str = "loss", log: bool = True
) -> Path:
    """Line plot of named ``(steps, values)`` curves."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, (x, y) in curves.items():
        ax.plot(x, y, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def learning_curve_figure(
    loss: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    scores: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    score_label: str = "ARI-FG",
) -> Path:
    """Two panels over training steps: the loss (log scale) and evaluation ``scores`` in %."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, (x, y) in loss.items():
        left.plot(x, y, label=name)
    left.set_yscale("log")
    left.set_ylabel("loss")
    for name, (x, y) in scores.items():
        right.plot(x, 100 * np.asarray(y), marker="o", markersize=3, label=name,
                   linestyle="--" if "static" in name else "-")
    right.set_ylabel(f"{score_label} (%)")
    right.set_ylim(-5, 100)
    for ax in (left, right):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def ari_time_figure(
    curves: Mapping[str, Mapping[str, Sequence[Mapping[str, Sequence[float]]]]], path: str | Path
) -> Path:
    """ARI-FG (%) against training time, one panel per training set.

    ``curves[panel][model]`` holds one mapping per seed with ``"decoder"`` / ``"grouping"``
    ARI-FG values and their times ``"decoder_t"`` / ``"grouping_t"`` in seconds; decoder
    masks are drawn solid, grouping masks dashed, one colour per model."""
    fig, axes = plt.subplots(1, len(curves), figsize=(6.5 * len(curves), 4.2), squeeze=False)
    for ax, (panel, models) in zip(axes[0], curves.items()):
        for color, (model, seeds) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3, models.items()):
            for i, seed in enumerate(seeds):
                for kind, style in (("decoder", "-"), ("grouping", "--")):
                    if kind in seed:
                        label = f"{model} ({kind})" if i == 0 else None
                        ax.plot(seed[f"{kind}_t"], 100 * np.asarray(seed[kind]), style, color=color,
                                alpha=0.8, linewidth=1.2, label=label)
        ax.set_title(f"trained on {panel}", fontsize=9)
        ax.set_xlabel("training time (s, 2 CPU cores)")
        ax.set_ylabel("ARI-FG (%)")
        ax.set_ylim(-5, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    return save_figure(fig, path)
