"""Object-centric autoencoder harness: encoder -> grouping -> spatial broadcast decoder.

Grouping contract (any ``nn.Module`` plugged in as ``grouping``):

- input: encoder features ``(B, C, h, w)``;
- output: a ``dict`` with
    - ``"slots"``: ``(B, K, D)`` float tensor, one D-vector per object slot (required);
    - ``"masks"``: ``(B, K, h, w)`` soft assignment of feature positions to slots, e.g.
      Slot Attention's attention or the k-partition of the cut model (optional);
    - any further entries (e.g. auxiliary losses) are allowed.
  Every entry other than ``"slots"`` is returned by ``SlotAutoencoder.forward`` under the key
  ``"grouping_" + name`` (so ``"masks"`` becomes ``"grouping_masks"``).

``SlotAutoencoder.forward(images)`` returns ``"recon"`` (B, 3, H, W), ``"slot_recons"``
(B, K, 3, H, W), ``"masks"`` (B, K, H, W) (the decoder's alpha masks), ``"slots"`` and the
grouping entries; ``loss`` is the reconstruction MSE, the training objective of the paper.

The two groupings of the paper live in :mod:`cutslots.nn.grouping`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cutslots.models.encoders import check_images


def _check_grouping_output(out: object, features: Tensor) -> dict[str, Tensor]:
    if not isinstance(out, dict):
        raise TypeError(f"grouping must return a dict, got {type(out).__name__}")
    if "slots" not in out:
        raise ValueError(f"grouping output must contain 'slots', got keys {sorted(out)}")
    slots = out["slots"]
    if not isinstance(slots, Tensor) or slots.dim() != 3 or slots.shape[0] != features.shape[0]:
        shape = tuple(slots.shape) if isinstance(slots, Tensor) else type(slots).__name__
        raise ValueError(f"grouping 'slots' must be a (B, K, D) tensor, got {shape}")
    if "masks" in out:
        masks = out["masks"]
        expected = (*slots.shape[:2], *features.shape[2:])
        if not isinstance(masks, Tensor) or tuple(masks.shape) != expected:
            shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
            raise ValueError(f"grouping 'masks' must have shape (B, K, h, w) = {expected}, got {shape}")
    return out


class SlotAutoencoder(nn.Module):
    """encoder: images (B, 3, H, W) -> features (B, C, h, w); grouping: see module docstring;
    decoder: slots (B, K, D) -> (recons, masks, image) as ``SpatialBroadcastDecoder``."""

    def __init__(self, encoder: nn.Module, grouping: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.grouping = grouping
        self.decoder = decoder

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images: (B, 3, H, W) in [0, 1] -> dict of outputs (see module docstring)."""
        check_images(images)
        features = self.encoder(images)
        grouped = _check_grouping_output(self.grouping(features), features)
        slot_recons, masks, recon = self.decoder(grouped["slots"])
        if recon.shape != images.shape:
            raise ValueError(f"decoder output {tuple(recon.shape)} does not match images {tuple(images.shape)}")
        out = {
            "recon": recon,
            "slot_recons": slot_recons,
            "masks": masks,
            "slots": grouped["slots"],
        }
        out.update({f"grouping_{k}": v for k, v in grouped.items() if k != "slots"})
        return out

    def loss(self, images: Tensor, out: dict[str, Tensor]) -> Tensor:
        """Mean squared reconstruction error between images (B, 3, H, W) and out["recon"]."""
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if "recon" not in out:
            raise ValueError(f"out must contain 'recon', got keys {sorted(out)}")
        if out["recon"].shape != images.shape:
            raise ValueError(
                f"out['recon'] has shape {tuple(out['recon'].shape)}, images has shape {tuple(images.shape)}"
            )
        return F.mse_loss(out["recon"], images)
