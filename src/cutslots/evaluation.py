"""Object-discovery evaluation of a slot autoencoder on a dataset (ClevrTex conventions).

Predicted segments are the argmax over slots of the decoder's alpha masks (as in Slot
Attention and the ClevrTex benchmark), upsampled to the image size when needed. Metrics per
image: ARI, ARI-FG (background pixels excluded; NaN and excluded from the mean when an image
has no foreground), mIoU with Hungarian matching (background included) and the MSE summed
over C x H x W on [0, 1] images.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

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
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)  # type: ignore[arg-type]
    per_image: dict[str, list[np.ndarray]] = {k: [] for k in METRICS}
    seen = 0
    try:
        for batch in loader:
            images = batch["image"].to(device)
            if max_images is not None:
                images = images[: max_images - seen]
            out = model(images)
            for key, values in batch_metrics(images, batch["mask"][: images.shape[0]], out).items():
                per_image[key].append(values)
            seen += images.shape[0]
            if max_images is not None and seen >= max_images:
                break
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate: the dataset yielded no images")
    merged = {k: np.concatenate(v) for k, v in per_image.items()}
    return {"summary": summarize(merged), "per_image": merged, "num_images": seen}
