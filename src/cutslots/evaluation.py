"""Object-discovery evaluation of a slot autoencoder on a dataset (ClevrTex conventions).

Predicted segments are the argmax over slots of the decoder's alpha masks (as in Slot
Attention and the ClevrTex benchmark), upsampled to the image size when needed. Metrics per
image: ARI, ARI-FG (background pixels excluded; NaN and excluded from the mean when an image
has no foreground), mIoU with Hungarian matching (background included) and the MSE summed
over C x H x W on [0, 1] images.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cutslots.metrics import ari, masks_to_labels, miou, mse_per_image, summarize

METRICS = ("ari", "ari_fg", "miou", "mse")


def predicted_labels(out: Mapping[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Argmax slot per pixel ``(B, H, W)`` from the decoder masks ``out["masks"]: (B, K, h, w)``."""
    masks = out["masks"]
    if masks.shape[-2:] != size:
        masks = torch.nn.functional.interpolate(masks, size=size, mode="bilinear", align_corners=False)
    return masks_to_labels(masks)


def batch_metrics(images: torch.Tensor, true_masks: torch.Tensor, out: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Per-image metrics for one batch: ``images (B,3,H,W)``, ``true_masks (B,H,W)`` int labels."""
    pred = predicted_labels(out, tuple(true_masks.shape[-2:])).cpu()
    true = true_masks.cpu()
    return {
        "ari": ari(true, pred),
        "ari_fg": ari(true, pred, ignore_background=True),
        "miou": miou(true, pred, num_segments=out["masks"].shape[1]),
        "mse": mse_per_image(images.cpu().clamp(0, 1), out["recon"].detach().cpu().float()),
    }


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
    was_training = model.training
    model.eval()
    collected: dict[str, list[np.ndarray]] = {}
    seen = 0
    try:
        for batch in batches:
            if limit is not None:
                batch = {k: v[: limit - seen] for k, v in batch.items()}
            for key, values in score(batch).items():
                collected.setdefault(key, []).append(values)
            seen += len(next(iter(batch.values())))
            if limit is not None and seen >= limit:
                break
    finally:
        model.train(was_training)
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
    Returns ``{"summary": {metric: {mean, std, n, n_nan}}, "per_image": {metric: array}}``.
    """
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)  # type: ignore[arg-type]

    def score(batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        images = batch["image"].to(device)
        return batch_metrics(images, batch["mask"], model(images))

    merged, seen = score_batches(model, loader, score, max_images, "evaluate: the dataset yielded no images")
    return {"summary": summarize(merged), "per_image": merged, "num_images": seen}
