"""A tiny model and dataset honouring the autoencoder/dataset contract, for training tests.

Run as a script (``python tiny_training.py OUT_DIR STEPS BATCH [STOP [ACCUMULATE]]``, directly or
under torchrun) it trains the tiny model with ``cutslots.train.loop.train`` (to step STOP first,
then resumed from that checkpoint in a fresh model, when STOP is given; ACCUMULATE micro-batches
of BATCH per step) and saves this rank's final parameters to ``OUT_DIR/params_rank{RANK}.pt``.
As a script it arms a watchdog: a process still running after ``WATCHDOG_S`` seconds prints
every thread's stack to stderr and exits, so a hung rank reports where it hangs instead of
outliving the test (torchrun starts each rank in its own session, out of reach of a kill aimed
at torchrun's process group).
"""

from __future__ import annotations

import faulthandler
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

WATCHDOG_S = 90  # a healthy run takes seconds, even on a loaded 2-core machine


class TinyAutoencoder(nn.Module):
    """Per-pixel mixture of K slot colours; ``noise`` > 0 adds random mask logits (uses RNG)."""

    def __init__(self, num_slots: int = 2, noise: float = 0.0) -> None:
        super().__init__()
        self.num_slots, self.noise = num_slots, noise
        self.mask_logits = nn.Conv2d(3, num_slots, 1)
        self.colours = nn.Conv2d(3, 3 * num_slots, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = images.shape
        logits = self.mask_logits(images)
        if self.noise:
            logits = logits + self.noise * torch.randn_like(logits)
        masks = logits.softmax(dim=1)  # (B, K, H, W)
        slot_recons = self.colours(images).view(b, self.num_slots, 3, h, w).sigmoid()
        recon = (masks.unsqueeze(2) * slot_recons).sum(dim=1)  # (B, 3, H, W)
        slots = slot_recons.mean(dim=(-2, -1))  # (B, K, 3)
        return {"recon": recon, "slot_recons": slot_recons, "masks": masks, "slots": slots}

    def loss(self, images: torch.Tensor, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.mse_loss(out["recon"], images)  # a mean over the batch


class TinyScenes(Dataset):
    """``n`` random 8x8 scenes: a coloured background with one coloured rectangle."""

    def __init__(self, n: int = 24, size: int = 8, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.images = np.empty((n, 3, size, size), dtype=np.float32)
        self.masks = np.zeros((n, size, size), dtype=np.int64)
        for i in range(n):
            self.images[i] = rng.random(3, dtype=np.float32)[:, None, None]
            y, x = rng.integers(0, size - 2, size=2)
            self.images[i, :, y : y + 3, x : x + 3] = rng.random(3, dtype=np.float32)[:, None, None]
            self.masks[i, y : y + 3, x : x + 3] = 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": torch.from_numpy(self.images[i]), "mask": torch.from_numpy(self.masks[i])}


def main(out_dir: str, steps: int, batch_size: int, stop: int | None = None, accumulate: int = 1) -> None:
    from cutslots.config import TrainConfig
    from cutslots.train.loop import train

    config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        optimizer={"lr": 0.05},
        warmup_steps=2,
        decay_steps=10,
        log_every=1,
        eval_every=None,
        checkpoint_every=None,
        out_dir=out_dir,
        device="cpu",
        accumulate=accumulate,
    )
    for run_steps, resume in [(stop, False), (steps, True)] if stop else [(steps, False)]:
        torch.manual_seed(0)
        model = TinyAutoencoder()
        train(model, TinyScenes(), config.model_copy(update={"steps": run_steps}), resume=resume)
    rank = int(os.environ.get("RANK", "0"))
    torch.save(
        {k: v.detach().clone() for k, v in model.state_dict().items()}, os.path.join(out_dir, f"params_rank{rank}.pt")
    )


if __name__ == "__main__":
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    stop = int(sys.argv[4]) if len(sys.argv) > 4 else None
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), stop, int(sys.argv[5]) if len(sys.argv) > 5 else 1)
