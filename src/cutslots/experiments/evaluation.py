"""Object-discovery evaluation of a slot autoencoder on a dataset (ClevrTex conventions).

Predicted segments are the argmax over slots of the decoder's alpha masks (as in Slot
Attention and the ClevrTex benchmark), upsampled to the image size when needed. Metrics per
image: ARI, ARI-FG (background pixels excluded; NaN and excluded from the mean when an image
has no foreground), mIoU with Hungarian matching (background included) and the MSE summed
over C x H x W on [0, 1] images.

The grouping is scored too, when the model returns ``"grouping_masks"`` (B, K, h, w) (the
k-partition of the cut model, Slot Attention's attention): a decoder can separate objects
that its grouping never did, so the decoder metrics alone do not say whether the cuts (or
the attention) discover anything. Per image:

- ``grouping_ari``, ``grouping_ari_fg``, ``grouping_miou``: the same metrics for the argmax
  of the grouping masks (bilinearly upsampled to the image size);
- ``grouping_margin``: mean over (h, w) of the gap between the largest and second-largest
  grouping mask (1 for K = 1): 0 for uniform masks, whose argmax is noise, 1 for a hard
  partition;
- ``image_dependence``: mean over (K, h, w) of |grouping masks - dataset-mean grouping masks|,
  the mean taken over the evaluated images; 0 for a grouping that ignores its input;
- ``static_ari``, ``static_ari_fg``, ``static_miou``: the metrics when every image is given
  the dataset-mean grouping masks: what a fixed spatial tessellation scores on this data.

A grouping whose ARI-FG does not beat its static baseline, or whose masks are nearly uniform
(``grouping_margin`` below :data:`MARGIN_FLOOR`), does not discover objects
(:func:`grouping_verdict`).

The decoder masks get the same fixed-layout reference, for every model: a decoder that paints
one layout into every image (seen on textured scenes) still scores an ARI-FG wherever the
objects happen to fall in different regions of it. Per image:

- ``decoder_dependence``: mean over (K, h, w) of |decoder masks - dataset-mean decoder masks|;
- ``decoder_static_ari``, ``decoder_static_ari_fg``, ``decoder_static_miou``: the metrics when
  every image is given the dataset-mean decoder masks (:func:`decoder_verdict`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cutslots.experiments.common import eval_mode
from cutslots.metrics import ari, masks_to_labels, miou, mse_per_image, summarize

GROUPING_METRICS = (
    "grouping_ari",
    "grouping_ari_fg",
    "grouping_miou",
    "grouping_margin",
    "image_dependence",
    "static_ari",
    "static_ari_fg",
    "static_miou",
)
"""The grouping masks' own scores in an evaluation summary (models with ``grouping_masks``)."""
DECODER_REFERENCE_METRICS = ("decoder_dependence", "decoder_static_ari", "decoder_static_ari_fg", "decoder_static_miou")
"""The decoder masks' fixed-layout references in an evaluation summary (every model)."""
# Grouping ARI-FG must beat its static baseline by this much (in [0, 1]) to count as discovery.
DISCOVERY_MARGIN = 0.10
MARGIN_FLOOR = 0.10
"""Below this mean top-two gap the grouping masks are nearly uniform: an ARI-FG above the
static baseline is then the argmax of noise (seen for a collapsed Slot Attention)."""


def top_two_margin(masks: torch.Tensor) -> np.ndarray:
    """Soft masks (B, K, h, w) -> (B,): mean over pixels of the largest minus the second-largest
    mask (the largest alone for K = 1)."""
    if masks.shape[1] == 1:
        return masks[:, 0].mean(dim=(1, 2)).double().cpu().numpy()
    top = masks.topk(2, dim=1).values  # (B, 2, h, w)
    return (top[:, 0] - top[:, 1]).mean(dim=(1, 2)).double().cpu().numpy()  # (B,)


def upsample_masks(masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Soft masks (N, K, h, w) -> (N, K, H, W), bilinearly; unchanged when already that size."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return torch.nn.functional.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)


def predicted_labels(out: Mapping[str, torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """Argmax slot per pixel ``(B, H, W)`` from the decoder masks ``out["masks"]: (B, K, h, w)``."""
    return masks_to_labels(upsample_masks(out["masks"], size))


def segmentation_metrics(
    true: torch.Tensor, pred: torch.Tensor, num_segments: int, prefix: str = ""
) -> dict[str, np.ndarray]:
    """ARI, ARI-FG and mIoU per image of ``pred`` against ``true`` (both (B, H, W) labels)."""
    return {
        f"{prefix}ari": ari(true, pred),
        f"{prefix}ari_fg": ari(true, pred, ignore_background=True),
        f"{prefix}miou": miou(true, pred, num_segments=num_segments),
    }


def batch_metrics(
    images: torch.Tensor, true_masks: torch.Tensor, out: Mapping[str, torch.Tensor]
) -> dict[str, np.ndarray]:
    """Per-image metrics for one batch: ``images (B,3,H,W)``, ``true_masks (B,H,W)`` int labels.

    Decoder metrics always; the grouping's own metrics when ``out`` has ``"grouping_masks"``."""
    size = tuple(true_masks.shape[-2:])
    true = true_masks.cpu()
    scores = segmentation_metrics(true, predicted_labels(out, size).cpu(), out["masks"].shape[1])
    scores["mse"] = mse_per_image(images.cpu().clamp(0, 1), out["recon"].detach().cpu().float())
    grouping = out.get("grouping_masks")
    if grouping is not None:
        pred = predicted_labels({"masks": grouping}, size).cpu()
        scores.update(segmentation_metrics(true, pred, grouping.shape[1], "grouping_"))
        scores["grouping_margin"] = top_two_margin(grouping.detach())
    return scores


@torch.no_grad()
def score_batches(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    score: Callable[[Mapping[str, torch.Tensor]], dict[str, np.ndarray]],
    limit: int | None = None,
    empty_error: str = "the dataset yielded no items",
) -> tuple[dict[str, np.ndarray], int]:
    """Run ``score(batch)`` (per-item metric arrays) over ``batches`` in eval mode, stopping
    after ``limit`` items (batches are cut to fit); returns the concatenated metrics and the
    item count. The model's train/eval mode is restored; no items raises ``empty_error``."""
    collected: dict[str, list[np.ndarray]] = {}
    seen = 0
    with eval_mode(model):
        for batch in batches:
            if limit is not None:
                batch = {k: v[: limit - seen] for k, v in batch.items()}
            for key, values in score(batch).items():
                collected.setdefault(key, []).append(values)
            seen += len(next(iter(batch.values())))
            if limit is not None and seen >= limit:
                break
    if seen == 0:
        raise ValueError(empty_error)
    return {k: np.concatenate(v) for k, v in collected.items()}, seen


def evaluate(
    model: torch.nn.Module,
    dataset: Dataset | Iterable[dict[str, Any]],
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Evaluate ``model`` (forward(images) -> dict with "recon", "masks") on ``dataset``.

    ``dataset`` yields dicts with ``"image" (3,H,W)`` in [0, 1] and ``"mask" (H,W)`` labels.
    Returns ``{"summary": {metric: {mean, std, n, n_nan}}, "per_image": {metric: array},
    "num_images": N, "mean_decoder_masks": (K, h, w)}`` with the
    :data:`DECODER_REFERENCE_METRICS`; with grouping masks also the :data:`GROUPING_METRICS` and
    ``"mean_grouping_masks"`` (K, h, w). The references need the dataset means first, so the
    model runs over the data twice, both times from the same RNG state (a model that draws
    noise, like Slot Attention's slot init, sees the same draws); the caller's RNG state is
    left as it was.
    """
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)  # type: ignore[arg-type]
    sums: dict[str, torch.Tensor] = {}  # output key -> sum over images of its masks (K, h, w)

    def score(batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        images = batch["image"].to(device)
        out = model(images)
        for key in _REFERENCED:
            if key in out:
                total = out[key].detach().double().sum(0).cpu()  # (K, h, w)
                sums[key] = sums[key] + total if key in sums else total
        return batch_metrics(images, batch["mask"], out)

    with _same_rng(device):
        merged, seen = score_batches(model, loader, score, max_images, "evaluate: the dataset yielded no images")
    means = {key: total / seen for key, total in sums.items()}  # each (K, h, w)
    with _same_rng(device):
        merged.update(_references(model, loader, means, max_images, device))
    result: dict[str, Any] = {"num_images": seen}
    result.update({_REFERENCED[key].mean: mean.float() for key, mean in means.items()})
    result.update(summary=summarize(merged), per_image=merged)
    return result


def _same_rng(device: str | torch.device) -> Any:
    """A context that restores torch's RNG state (CPU, and ``device`` if CUDA) on exit."""
    dev = torch.device(device)
    return torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [])


class _Reference(NamedTuple):
    """Where the fixed-layout reference of one kind of masks is written."""

    static_prefix: str  # of its static metrics
    dependence: str  # the name of its image dependence
    mean: str  # the result key of its dataset mean


# Output key of the masks -> their reference's names.
_REFERENCED = {
    "masks": _Reference("decoder_static_", "decoder_dependence", "mean_decoder_masks"),
    "grouping_masks": _Reference("static_", "image_dependence", "mean_grouping_masks"),
}


def _references(
    model: torch.nn.Module,
    loader: DataLoader,
    means: Mapping[str, torch.Tensor],
    max_images: int | None,
    device: str | torch.device,
) -> dict[str, np.ndarray]:
    """Image dependence and the static baseline of the decoder and grouping masks, given their
    dataset means ``means[key]`` (K, h, w) from the first pass (module docstring)."""

    def score(batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        true = batch["mask"]
        out = model(batch["image"].to(device))
        scores: dict[str, np.ndarray] = {}
        for key, mean in means.items():
            names = _REFERENCED[key]
            masks = out[key].detach().double().cpu()  # (B, K, h, w)
            static = predicted_labels({"masks": mean[None]}, tuple(true.shape[-2:]))  # (1, H, W)
            scores.update(segmentation_metrics(true, static.expand_as(true), mean.shape[0], names.static_prefix))
            scores[names.dependence] = (masks - mean).abs().mean(dim=(1, 2, 3)).numpy()  # (B,)
        return scores

    merged, _ = score_batches(model, loader, score, max_images)
    return merged


def grouping_verdict(summary: Mapping[str, Mapping[str, float]]) -> str | None:
    """One sentence comparing the grouping's ARI-FG with its static baseline's, from an
    :func:`evaluate` summary (None without grouping metrics). Beating the baseline is necessary
    for discovery, not sufficient: a grouping that splits images by colour also beats it.
    Nearly uniform masks (``grouping_margin`` < :data:`MARGIN_FLOOR`, when the summary has it:
    older results may lack it) are not discovering, whatever their ARI-FG."""
    if "grouping_ari_fg" not in summary:
        return None
    grouping, static = summary["grouping_ari_fg"]["mean"], summary["static_ari_fg"]["mean"]
    numbers = f"grouping ARI-FG {100 * grouping:.1f} % vs {100 * static:.1f} % for its static baseline"
    margin = summary.get("grouping_margin", {}).get("mean")
    if margin is not None and margin < MARGIN_FLOOR:
        return (
            f"not discovering objects: the grouping masks are nearly uniform (mean top-two margin "
            f"{margin:.3f} < {MARGIN_FLOOR}), so their argmax is noise ({numbers})"
        )
    if not grouping > static:
        return f"not discovering objects: {numbers}"
    if grouping - static < DISCOVERY_MARGIN:
        return f"not clearly discovering objects: {numbers}, less than {100 * DISCOVERY_MARGIN:.0f} points above it"
    return f"beats its static baseline by {100 * (grouping - static):.1f} points: {numbers}"


def decoder_verdict(summary: Mapping[str, Mapping[str, float]]) -> str | None:
    """One sentence comparing the decoder's ARI-FG with that of its dataset-mean masks (None
    when the summary lacks it: older results). Within :data:`DISCOVERY_MARGIN` of it, the
    decoder's ARI-FG is what one fixed layout of the image scores, whatever the figure's
    reconstructions look like."""
    if "decoder_static_ari_fg" not in summary:
        return None
    decoder, static = summary["ari_fg"]["mean"], summary["decoder_static_ari_fg"]["mean"]
    numbers = f"decoder ARI-FG {100 * decoder:.1f} % vs {100 * static:.1f} % for its dataset-mean masks"
    if not decoder > static:
        return f"a fixed layout, not separating objects: {numbers}"
    if decoder - static < DISCOVERY_MARGIN:
        return f"mostly a fixed layout: {numbers}, less than {100 * DISCOVERY_MARGIN:.0f} points above it"
    return f"beats its fixed layout by {100 * (decoder - static):.1f} points: {numbers}"
