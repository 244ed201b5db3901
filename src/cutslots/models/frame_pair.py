"""Two-frame autoencoder whose slots are matched across frames (paper §4 "Matching and motion").

Both frames go through the same encoder and grouping (any module honouring the
:mod:`cutslots.models.autoencoder` grouping contract), giving frame-1 slots ``s`` and
frame-2 slots ``t``, each ``(B, K, D)`` in its own arbitrary slot order. A
:class:`~cutslots.nn.matcher.SlotMatcher` returns the soft matching ``M`` and the matched slot
set ``r = MLP(M t)``. Our reading of how the paper combines the matched set with each frame
(written without the paper's §4 text at hand: to be checked against it):

- ``r`` is shared by both frames and added, residually, to each frame's own slots, both taken
  in frame 1's slot order: frame 1 is decoded from ``s + r`` and frame 2 from ``M t + r``
  (``M t`` = frame 2's slots brought into frame 1's order by the matching).
- Hence slot ``i`` of both decodings stands for the same object, and both reconstructions
  depend on ``M``: frame 1's because ``r_i`` injects the content of slot ``i``'s partner (a
  wrong partner puts another object's content in slot ``i``), frame 2's because ``M t`` mixes
  frame-2 slots (an uncertain ``M`` blends objects).

The loss is the sum of the two frames' reconstruction MSEs. The decoder's masks for both frames
come out in frame 1's slot order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cutslots.models.autoencoder import _check_grouping_output
from cutslots.models.encoders import check_images
from cutslots.nn.matcher import SlotMatcher


def stack_frame_pair(frames: Tensor | Sequence[Tensor]) -> Tensor:
    """Validate a frame pair: (B, 2, 3, H, W) tensor, or two (B, 3, H, W) tensors -> (B, 2, 3, H, W)."""
    if isinstance(frames, Tensor):
        if frames.dim() != 5 or frames.shape[1] != 2:
            raise ValueError(f"frames must have shape (B, 2, 3, H, W), got {tuple(frames.shape)}")
    elif isinstance(frames, Sequence) and len(frames) == 2 and all(isinstance(f, Tensor) for f in frames):
        if frames[0].shape != frames[1].shape:
            raise ValueError(
                f"the two frames must have the same shape (B, 3, H, W), got "
                f"{tuple(frames[0].shape)} and {tuple(frames[1].shape)}"
            )
        frames = torch.stack(tuple(frames), dim=1)
    else:
        raise TypeError("frames must be a (B, 2, 3, H, W) tensor or a pair of (B, 3, H, W) tensors")
    return frames


class FramePairAutoencoder(nn.Module):
    """encoder + grouping per frame, ``SlotMatcher`` across frames, decoder for both frames.

    ``forward(frames)`` with frames (B, 2, 3, H, W) (or a pair of (B, 3, H, W)) returns:

    - ``"recon"`` (B, 2, 3, H, W), ``"slot_recons"`` (B, 2, K, 3, H, W), ``"masks"``
      (B, 2, K, H, W): decoder outputs of both frames, slots in frame 1's order;
    - ``"slots"`` (B, 2, K, D): each frame's grouping slots, in its own order;
    - ``"matching"`` (B, K, K) ``M``; ``"paired_slots"`` (B, K, D) ``r``;
    - ``"grouping_<name>"``: the grouping's other outputs, (B, 2, ...) when per image.
    """

    def __init__(self, encoder: nn.Module, grouping: nn.Module, decoder: nn.Module, *, matcher: SlotMatcher) -> None:
        super().__init__()
        if not isinstance(matcher, SlotMatcher):
            raise TypeError(f"matcher must be a SlotMatcher, got {type(matcher).__name__}")
        self.encoder = encoder
        self.grouping = grouping
        self.decoder = decoder
        self.matcher = matcher

    def frame_slots(self, images: Tensor) -> dict[str, Tensor]:
        """images (N, 3, H, W) -> grouping output of each image, ``"slots"`` (N, K, D)."""
        features = self.encoder(images)
        return _check_grouping_output(self.grouping(features), features)

    def decoder_slots(self, s: Tensor, t: Tensor) -> dict[str, Tensor]:
        """The combination rule (module docstring) for frame-1 slots s and frame-2 slots t (B, K, D).

        Returns ``"frame1"`` = s + r and ``"frame2"`` = M t + r (B, K, D), ``"matching"`` M
        (B, K, K) and ``"paired_slots"`` r (B, K, D).
        """
        paired, matching = self.matcher(s, t)
        return {
            "frame1": s + paired,
            "frame2": matching @ t + paired,
            "matching": matching,
            "paired_slots": paired,
        }

    def forward(self, frames: Tensor | Sequence[Tensor]) -> dict[str, Tensor]:
        frames = stack_frame_pair(frames)  # (B, 2, 3, H, W)
        check_images(frames.flatten(0, 1))
        batch = frames.shape[0]
        grouped = self.frame_slots(frames.flatten(0, 1))  # frames of one pair are adjacent
        slots = grouped["slots"].unflatten(0, (batch, 2))
        combined = self.decoder_slots(slots[:, 0], slots[:, 1])
        decoder_in = torch.stack([combined["frame1"], combined["frame2"]], dim=1).flatten(0, 1)
        slot_recons, masks, recon = self.decoder(decoder_in)
        if recon.shape != (2 * batch, *frames.shape[2:]):
            raise ValueError(
                f"decoder output {tuple(recon.shape)} does not match the frames, expected "
                f"{(2 * batch, *frames.shape[2:])}"
            )
        out = {
            "recon": recon.unflatten(0, (batch, 2)),
            "slot_recons": slot_recons.unflatten(0, (batch, 2)),
            "masks": masks.unflatten(0, (batch, 2)),
            "slots": slots,
            "matching": combined["matching"],
            "paired_slots": combined["paired_slots"],
        }
        for name, value in grouped.items():
            if name != "slots":
                # Per-image entries get the (B, 2) layout; others (e.g. a scalar loss) pass as they are.
                per_image = isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == 2 * batch
                out[f"grouping_{name}"] = value.unflatten(0, (batch, 2)) if per_image else value
        return out

    def loss(self, frames: Tensor | Sequence[Tensor], out: dict[str, Tensor]) -> Tensor:
        """Sum over the two frames of the mean squared reconstruction error."""
        frames = stack_frame_pair(frames)
        if "recon" not in out:
            raise ValueError(f"out must contain 'recon', got keys {sorted(out)}")
        if out["recon"].shape != frames.shape:
            raise ValueError(
                f"out['recon'] has shape {tuple(out['recon'].shape)}, frames has shape {tuple(frames.shape)}"
            )
        return F.mse_loss(out["recon"][:, 0], frames[:, 0]) + F.mse_loss(out["recon"][:, 1], frames[:, 1])
