"""Video experiment (paper §4 "Matching and motion", Table 2, Figs. 5-6): train, track, report.

Two models, built from a config's model section by
:func:`cutslots.models.builders.build_video_model`:

- ``grouping.kind: cut``: :class:`~cutslots.models.frame_pair.FramePairAutoencoder`, the cut grouping
  per frame plus a :class:`~cutslots.nn.matcher.SlotMatcher`, trained on consecutive frame
  pairs (B, 2, 3, H, W); clips are tracked with its own matchings ``M``.
- ``grouping.kind: slot_attention``: the paper's baseline, the single-frame Slot Attention autoencoder
  trained on single frames (B, 3, H, W); clips are tracked by Hungarian matching of slot inner
  products between consecutive frames.

Data (``data.dataset``): ``"moving"`` or ``"movi_a"``, built by :mod:`cutslots.data.registry`.
``cutslots train`` runs this experiment for them and ``cutslots eval`` evaluates its checkpoints.

``run_video_experiment(config)`` trains through :func:`cutslots.train.loop.train`, then writes
to ``train.out_dir``: ``checkpoint.pt``, ``config.yaml``, ``scalars.csv``, ``metrics.json``,
``table2.txt`` (the paper's Table 2 layout; a second row scores the grouping masks, tracked
with the same matchings), ``clip_strip.png`` (Fig. 5: per-track slot reconstructions over time),
``far_pair.png`` (Fig. 6: frames 5 and 20 matched directly) and ``loss.png``. Tracking and
the metrics are those of :mod:`cutslots.video_eval`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset, IterableDataset  # noqa: E402

from cutslots.config import ExperimentConfig, save_config  # noqa: E402
from cutslots.data.registry import VIDEO_DATASETS, Unit, build_video_dataset  # noqa: E402
from cutslots.experiments.common import is_main, load_run, seed_everything  # noqa: E402
from cutslots.experiments.discovery import training_curves  # noqa: E402
from cutslots.evaluation import score_batches, upsample_masks  # noqa: E402
from cutslots.figures import save_figure  # noqa: E402
from cutslots.metrics import summarize  # noqa: E402
from cutslots.models.frame_pair import FramePairAutoencoder  # noqa: E402
from cutslots.models.builders import build_video_model  # noqa: E402
from cutslots.train.checkpoint import load_checkpoint  # noqa: E402
from cutslots.train.loop import CHECKPOINT_NAME, train  # noqa: E402
from cutslots.video_eval import (  # noqa: E402
    TABLE2_COLUMNS,
    chain_identities,
    collate_clips,
    evaluate_tracks,
    format_table2,
    frame_pair_tracks,
    hard_links,
    inner_product_matchings,
    single_frame_tracks,
)

log = logging.getLogger(__name__)

FAR_PAIR = (5, 20)  # the frames of the paper's Fig. 6
STRIP_FRAMES = 8  # at most this many (evenly spaced) frames in the clip strip
METHOD_NAMES = {"cut": "Cut + matching", "slot_attention": "Slot Attention + Hungarian"}
# The batch key each training unit feeds to the model (train's input_key).
INPUT_KEYS = {"pairs": "frames", "frames": "image"}


def training_unit(model: nn.Module) -> Unit:
    """What a model trains on: frame pairs (frame-pair model) or single frames (anything else)."""
    return "pairs" if isinstance(model, FramePairAutoencoder) else "frames"


# ---------------------------------------------------------------------------- evaluation


@torch.no_grad()
def clip_outputs(model: nn.Module, video: Tensor) -> dict[str, Tensor]:
    """Track a clip: video (B, T, 3, H, W) -> "masks" (B, T, K, H, W), "matchings" (B, T-1, K, K),
    "slot_recons" (B, T, K, 3, H, W), "recon" (B, T, 3, H, W) and, when the grouping has masks,
    "grouping_masks" (B, T, K, H, W) (:func:`~cutslots.evaluation.upsample_masks`, as for images),
    each frame in its own slot order.

    Tracks come from :func:`~cutslots.video_eval.frame_pair_tracks` for a FramePairAutoencoder
    and :func:`~cutslots.video_eval.single_frame_tracks` otherwise; the reconstructions are
    captured from the one decoder call those make, so figures show exactly what was scored.
    """
    if not isinstance(getattr(model, "decoder", None), nn.Module):
        raise TypeError(f"model must have a .decoder module (a slot autoencoder), got {type(model).__name__}")
    decoded: list[tuple[Tensor, Tensor, Tensor]] = []
    handle = model.decoder.register_forward_hook(lambda module, args, out: decoded.append(out))
    try:
        pairs = isinstance(model, FramePairAutoencoder)
        tracks = frame_pair_tracks(model, video) if pairs else single_frame_tracks(model, video)
    finally:
        handle.remove()
    slot_recons, _, recon = decoded[-1]
    batch, steps = video.shape[:2]
    out = {
        "masks": tracks.masks,
        "matchings": tracks.matchings,
        "slot_recons": slot_recons.unflatten(0, (batch, steps)),
        "recon": recon.unflatten(0, (batch, steps)),
    }
    if tracks.grouping_masks is not None:
        grouping = upsample_masks(tracks.grouping_masks.flatten(0, 1), video.shape[-2:])  # (B * T, K, H, W)
        out["grouping_masks"] = grouping.unflatten(0, (batch, steps))  # (B, T, K, H, W)
    return out


def _clip_batches(clips: Dataset | Iterable[Mapping[str, Tensor]], batch_size: int) -> DataLoader:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return DataLoader(clips, batch_size=batch_size, collate_fn=collate_clips)  # type: ignore[arg-type]


def evaluate_video(
    model: nn.Module,
    clips: Dataset | Iterable[Mapping[str, Tensor]],
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    max_clips: int | None = None,
    frames: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Space-time ARI / ARI-FG and matching accuracy (Hungarian tracking) of ``model`` on clips.

    ``clips`` yields {"video": (T, 3, H, W), "mask": (T, H, W)}; all clips of a batch must have
    the same T, H, W. ``frames`` picks a sub-sequence of every clip (e.g. (5, 20) scores the
    direct matching of two far-apart frames). The metrics are those of the decoder masks and,
    for models whose grouping has masks, ``grouping_<metric>`` of the grouping masks tracked with
    the same matchings. Returns {"per_clip": {metric: (N,)}, "summary": {metric: {mean, std, n,
    n_nan}}, "num_clips": N}.
    """
    if max_clips is not None and (isinstance(max_clips, bool) or not isinstance(max_clips, int) or max_clips < 1):
        raise ValueError(f"max_clips must be None or a positive int, got {max_clips!r}")

    def score(batch: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        video, mask = batch["video"], batch["mask"]
        if frames is not None:
            video, mask = _pick_frames(video, mask, frames)
        out = clip_outputs(model, video.to(device))
        scores = evaluate_tracks(mask, out["masks"].cpu(), out["matchings"].cpu(), "hungarian")
        result = {key: scores[key] for key, _ in TABLE2_COLUMNS}
        if "grouping_masks" in out:
            grouped = evaluate_tracks(mask, out["grouping_masks"].cpu(), out["matchings"].cpu(), "hungarian")
            result.update({f"grouping_{key}": grouped[key] for key, _ in TABLE2_COLUMNS})
        return result

    merged, seen = score_batches(model, _clip_batches(clips, batch_size), score, max_clips, "clips: the dataset yielded no clips")
    return {"per_clip": merged, "summary": summarize(merged), "num_clips": seen}


def _pick_frames(video: Tensor, mask: Tensor, frames: Sequence[int]) -> tuple[Tensor, Tensor]:
    steps = video.shape[1]
    if len(frames) < 2 or any(not 0 <= t < steps for t in frames):
        raise ValueError(f"frames must be >= 2 frame indices in [0, {steps}), got {list(frames)}")
    index = torch.as_tensor(list(frames))
    return video[:, index], mask[:, index]


def far_pair_frames(num_frames: int) -> tuple[tuple[int, int], str | None]:
    """The Fig. 6 frames (5, 20), clamped into a clip of ``num_frames``; a note when clamped."""
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    last = min(FAR_PAIR[1], num_frames - 1)
    first = min(FAR_PAIR[0], last - 1)
    if (first, last) == FAR_PAIR:
        return FAR_PAIR, None
    return (first, last), (
        f"clips have {num_frames} frames: frames {first} and {last} are used instead of the "
        f"paper's {FAR_PAIR[0]} and {FAR_PAIR[1]}"
    )


# ---------------------------------------------------------------------------- figures


def _hwc(x: Tensor) -> np.ndarray:
    return x.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()


def _slot_image(mask: Tensor, recon: Tensor) -> np.ndarray:
    """A slot's masked reconstruction on white: mask (H, W), recon (3, H, W) -> (H, W, 3)."""
    return _hwc(mask[None] * recon + (1 - mask[None]))


def clip_strip_figure(video: Tensor, out: Mapping[str, Tensor], path: str | Path, title: str = "") -> Path:
    """Paper Fig. 5 for one clip: frames, reconstructions, then one row per track with that
    track's slot reconstruction in every frame (tracks: Hungarian links of ``out["matchings"]``)
    and, when ``out`` has grouping masks, a row under it with the track's grouping mask.

    video (T, 3, H, W); ``out``: :func:`clip_outputs` of this clip with the batch axis removed.
    At most :data:`STRIP_FRAMES` evenly spaced frames are shown.
    """
    steps, slots = out["masks"].shape[:2]
    grouping = out.get("grouping_masks")  # (T, K, H, W) or None
    per_track = 1 if grouping is None else 2
    # track_of[t, j]: track of frame t's slot j; its inverse gives each track's slot per frame.
    track_of = chain_identities(hard_links(out["matchings"][None].cpu(), "hungarian"))[0]
    slot_of_track = np.argsort(track_of, axis=1)
    shown = np.unique(np.linspace(0, steps - 1, min(steps, STRIP_FRAMES)).round().astype(int))
    rows = per_track * slots + 2
    fig, axes = plt.subplots(rows, len(shown), figsize=(1.2 * len(shown), 1.2 * rows), squeeze=False)
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
    return save_figure(fig, path)


@torch.no_grad()
def far_pair_outputs(model: nn.Module, pair: Tensor) -> dict[str, Tensor]:
    """Decode two frames pair (2, 3, H, W) with the second frame's slots in the first's order:
    "recon" (2, 3, H, W), "slot_recons" (2, K, 3, H, W), "masks" (2, K, H, W).

    The frame-pair model matches the two frames directly with its SlotMatcher; the baseline
    decodes each frame alone and orders frame 2's slots by the Hungarian matching of slot
    inner products.
    """
    was_training = model.training
    model.eval()
    try:
        if isinstance(model, FramePairAutoencoder):
            out = model(pair[None])
            return {key: out[key][0] for key in ("recon", "slot_recons", "masks")}
        out = model(pair)
        partner = inner_product_matchings(out["slots"][None])[0, 0].argmax(dim=1)  # row i -> slot j
        return {
            "recon": out["recon"],
            "slot_recons": torch.stack([out["slot_recons"][0], out["slot_recons"][1, partner]]),
            "masks": torch.stack([out["masks"][0], out["masks"][1, partner]]),
        }
    finally:
        model.train(was_training)


def far_pair_figure(pair: Tensor, out: Mapping[str, Tensor], frames: tuple[int, int], path: str | Path,
                    note: str | None = None) -> Path:
    """Paper Fig. 6: two far-apart frames, one row each: image, reconstruction, then the matched
    slots (column k of both rows is the same matched slot). pair (2, 3, H, W), ``out`` from
    :func:`far_pair_outputs`."""
    slots = out["masks"].shape[1]
    fig, axes = plt.subplots(2, slots + 2, figsize=(1.2 * (slots + 2), 2.9 if note else 2.6), squeeze=False)
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
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- runs


def _check_video_config(config: ExperimentConfig) -> None:
    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    if config.data.dataset not in VIDEO_DATASETS:
        raise ValueError(
            f"data.dataset: the video experiment needs one of {VIDEO_DATASETS}, got {config.data.dataset!r} "
            "(image datasets go through cutslots.experiments.discovery)"
        )


def _eval_fn(clips: Dataset | Iterable[Mapping[str, Tensor]], batch_size: int, max_clips: int):
    def run(model: nn.Module, step: int) -> dict[str, float]:
        device = next(model.parameters()).device
        summary = evaluate_video(model, clips, batch_size, device, max_clips)["summary"]
        return {f"video/{key}": value["mean"] for key, value in summary.items()}

    return run


def table2_rows(method: str, per_clip: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Table 2 rows of one evaluation: the decoder masks' row, then the grouping masks' row."""
    rows = {method: {key: per_clip[key] for key, _ in TABLE2_COLUMNS}}
    if "grouping_ari" in per_clip:
        rows[f"{method} (grouping masks)"] = {key: per_clip[f"grouping_{key}"] for key, _ in TABLE2_COLUMNS}
    return rows


def video_report(
    model: nn.Module,
    clips: Dataset | Iterable[Mapping[str, Tensor]],
    out_dir: str | Path,
    method: str,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    max_clips: int | None = None,
) -> dict[str, Any]:
    """Evaluate on the clips, write ``metrics.json``, ``table2.txt`` and the figures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first = next(iter(_clip_batches(clips, 1)), None)  # the clip shown in the figures
    if first is None:
        raise ValueError("clips: the evaluation set yielded no clips (check data.root and data.num_eval)")
    video = first["video"][0].to(device)
    frames, note = far_pair_frames(video.shape[0])
    if note:
        log.warning("far-apart pair: %s", note)
    result = evaluate_video(model, clips, batch_size, device, max_clips)
    far = evaluate_video(model, clips, batch_size, device, max_clips, frames=frames)

    was_training = model.training
    model.eval()
    try:
        strip = clip_outputs(model, video[None])
    finally:
        model.train(was_training)
    figures = [
        clip_strip_figure(video, {k: v[0] for k, v in strip.items()}, out_dir / "clip_strip.png", method),
        far_pair_figure(video[list(frames)], far_pair_outputs(model, video[list(frames)]), frames,
                        out_dir / "far_pair.png", note),
    ]
    figures += training_curves(out_dir)

    table = format_table2(table2_rows(method, result["per_clip"]))
    metrics = {
        "method": method,
        "tracking": "hungarian",
        "num_clips": result["num_clips"],
        "clip_length": int(video.shape[0]),
        **result["summary"],
        "far_pair": {"frames": list(frames), "note": note, **far["summary"]},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "table2.txt").write_text(table + "\n")
    return {
        "metrics": metrics,
        "per_clip": result["per_clip"],
        "table": table,
        "figures": [str(f) for f in figures],
        "metrics_path": str(out_dir / "metrics.json"),
        "table_path": str(out_dir / "table2.txt"),
    }


def run_video_experiment(config: ExperimentConfig, resume: bool = False, eval_batch_size: int = 4) -> dict[str, Any]:
    """Train the configured video model, then evaluate it on clips and write the report
    (rank 0 only; other ranks return {"summary"})."""
    _check_video_config(config)
    out_dir = Path(config.train.out_dir)
    seed_everything(config.train.seed)  # the initial weights, so equal seeds give equal runs
    model = build_video_model(config.model, config.data.image_size)
    unit = training_unit(model)
    train_set = build_video_dataset(config.data, "train", unit)
    clips = build_video_dataset(config.data, "eval", "clips")
    periodic = _eval_fn(clips, eval_batch_size, max_clips=16) if config.train.eval_every else None
    summary = train(model, train_set, config.train, periodic, resume=resume, experiment=config,
                    input_key=INPUT_KEYS[unit])
    if not is_main():
        return {"summary": summary}
    save_config(config, out_dir / "config.yaml")
    device = next(model.parameters()).device
    report = video_report(model, clips, out_dir, METHOD_NAMES[config.model.grouping.kind], eval_batch_size, device,
                          config.data.num_eval)
    report["summary"] = summary
    return report


def evaluate_video_checkpoint(
    path: str | Path,
    out_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    batch_size: int = 4,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a video training checkpoint (``checkpoint.pt`` or its run directory) on its
    config's evaluation clips; ``overrides`` replace fields of its data section (e.g.
    ``{"root": ..., "num_eval": 50}``). Writes the report to ``out_dir`` (default: ``<run>/eval``).
    """
    path, config = load_run(path, overrides)
    _check_video_config(config)
    model = build_video_model(config.model, config.data.image_size)
    load_checkpoint(path, model)
    model.to(device)
    clips = build_video_dataset(config.data, "eval", "clips")
    out = Path(out_dir) if out_dir is not None else path.parent / "eval"
    report = video_report(model, clips, out, METHOD_NAMES[config.model.grouping.kind], batch_size, torch.device(device),
                          config.data.num_eval)
    report["config"] = config
    return report
