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
to ``train.out_dir``: ``checkpoint.pt``, ``config.yaml``, the logs of ``train.loggers``
(``scalars.csv``, TensorBoard, W&B; with ``train.eval_every``, each evaluation's scalars and
clip strip), ``metrics.json``, ``table2.txt`` (the paper's Table 2 layout; a second row scores
the grouping masks, tracked with the same matchings), ``clip_strip.png`` (Fig. 5: per-track
slot reconstructions over time), ``far_pair.png`` (Fig. 6: frames 5 and 20 matched directly)
and ``loss.png``. Clips are run through the models by :mod:`cutslots.experiments.inference`,
tracked and scored by :mod:`cutslots.metrics.tracking`, drawn by :mod:`cutslots.plots`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from cutslots.config import ExperimentConfig, save_config
from cutslots.data.registry import VIDEO_DATASETS, Unit, build_video_dataset
from cutslots.experiments.common import eval_mode, is_main, load_run, seed_everything
from cutslots.experiments.discovery import training_curves
from cutslots.experiments.evaluation import score_batches, upsample_masks
from cutslots.experiments.inference import (
    collate_clips,
    frame_pair_tracks,
    inner_product_matchings,
    single_frame_tracks,
)
from cutslots.metrics import TABLE2_COLUMNS, ArrayLike, evaluate_tracks, summarize
from cutslots.models.builders import build_video_model
from cutslots.models.frame_pair import FramePairAutoencoder
from cutslots.plots import clip_strip_figure, far_pair_figure, figure_image, save_figure
from cutslots.train.checkpoint import load_checkpoint
from cutslots.train.logging import takes_images
from cutslots.train.loop import train

log = logging.getLogger(__name__)

FAR_PAIR = (5, 20)  # the frames of the paper's Fig. 6
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
    "grouping_masks" (B, T, K, H, W) (:func:`~cutslots.experiments.evaluation.upsample_masks`, as
    for images), each frame in its own slot order.

    Tracks come from :func:`~cutslots.experiments.inference.frame_pair_tracks` for a
    FramePairAutoencoder and :func:`~cutslots.experiments.inference.single_frame_tracks`
    otherwise; the reconstructions are captured from the one decoder call those make, so
    figures show exactly what was scored.
    """
    decoder = getattr(model, "decoder", None)
    if not isinstance(decoder, nn.Module):
        raise TypeError(f"model must have a .decoder module (a slot autoencoder), got {type(model).__name__}")
    decoded: list[tuple[Tensor, Tensor, Tensor]] = []
    handle = decoder.register_forward_hook(lambda module, args, out: decoded.append(out))
    try:
        if isinstance(model, FramePairAutoencoder):
            tracks = frame_pair_tracks(model, video)
        else:
            tracks = single_frame_tracks(model, video)
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

    merged, seen = score_batches(
        model, _clip_batches(clips, batch_size), score, max_clips, "clips: the dataset yielded no clips"
    )
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


@torch.no_grad()
def far_pair_outputs(model: nn.Module, pair: Tensor) -> dict[str, Tensor]:
    """Decode two frames pair (2, 3, H, W) with the second frame's slots in the first's order:
    "recon" (2, 3, H, W), "slot_recons" (2, K, 3, H, W), "masks" (2, K, H, W).

    The frame-pair model matches the two frames directly with its SlotMatcher; the baseline
    decodes each frame alone and orders frame 2's slots by the Hungarian matching of slot
    inner products.
    """
    with eval_mode(model):
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


# ---------------------------------------------------------------------------- runs


def _check_video_config(config: ExperimentConfig) -> None:
    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    if config.data.dataset not in VIDEO_DATASETS:
        raise ValueError(
            f"data.dataset: the video experiment needs one of {VIDEO_DATASETS}, got {config.data.dataset!r} "
            "(image datasets go through cutslots.experiments.discovery)"
        )


def _first_clip(clips: Dataset | Iterable[Mapping[str, Tensor]]) -> Tensor:
    """The clip the figures show, (T, 3, H, W): the first of the evaluation set."""
    first = next(iter(_clip_batches(clips, 1)), None)
    if first is None:
        raise ValueError("clips: the evaluation set yielded no clips (check data.root and data.num_eval)")
    return first["video"][0]


def _strip_figure(model: nn.Module, video: Tensor, method: str) -> Figure:
    """Fig. 5 of one clip (T, 3, H, W), tracked by ``model``."""
    with eval_mode(model):
        strip = clip_outputs(model, video[None])
    return clip_strip_figure(video, {k: v[0] for k, v in strip.items()}, method)


def _eval_fn(
    clips: Dataset | Iterable[Mapping[str, Tensor]], batch_size: int, max_clips: int, method: str, figures: bool
):
    """Periodic evaluation: ``{"video/<metric>": mean}`` and, with ``figures``, the
    ``"video/clip_strip"`` figure (titled ``method``) as an image (logged as ``eval/video/...``)."""
    video = _first_clip(clips) if figures else None

    def run(model: nn.Module, step: int) -> dict[str, float | np.ndarray]:
        device = next(model.parameters()).device
        summary = evaluate_video(model, clips, batch_size, device, max_clips)["summary"]
        logged: dict[str, float | np.ndarray] = {f"video/{key}": value["mean"] for key, value in summary.items()}
        if video is not None:
            logged["video/clip_strip"] = figure_image(_strip_figure(model, video.to(device), method))
        return logged

    return run


def table2_rows(method: str, per_clip: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Table 2 rows of one evaluation: the decoder masks' row, then the grouping masks' row."""
    rows = {method: {key: per_clip[key] for key, _ in TABLE2_COLUMNS}}
    if "grouping_ari" in per_clip:
        rows[f"{method} (grouping masks)"] = {key: per_clip[f"grouping_{key}"] for key, _ in TABLE2_COLUMNS}
    return rows


def format_table2(results: Mapping[str, Mapping[str, ArrayLike]]) -> str:
    """The paper's Table 2 layout: one row per method, columns ARI, ARI-FG, matching accuracy.

    ``results``: {method: {"ari", "ari_fg", "matching_accuracy": per-clip (N,) arrays}} as
    returned by :func:`~cutslots.metrics.tracking.evaluate_tracks` (concatenated over
    batches). Cells are ``mean ± std`` over clips in percent; NaN clips are excluded (see
    :func:`~cutslots.metrics.segmentation.summarize`).
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping {method: {metric: per-clip values}}")
    header = ["Method"] + [title for _, title in TABLE2_COLUMNS]
    rows = []
    for method, scores in results.items():
        missing = [key for key, _ in TABLE2_COLUMNS if key not in scores]
        if missing:
            expected = [key for key, _ in TABLE2_COLUMNS]
            raise ValueError(f"results[{method!r}] lacks {missing}; expected keys {expected}")
        summary = summarize({key: scores[key] for key, _ in TABLE2_COLUMNS})
        cells = [f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}" for s in summary.values()]
        rows.append([str(method)] + cells)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header] + rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


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
    video = _first_clip(clips).to(device)
    frames, note = far_pair_frames(video.shape[0])
    if note:
        log.warning("far-apart pair: %s", note)
    result = evaluate_video(model, clips, batch_size, device, max_clips)
    far = evaluate_video(model, clips, batch_size, device, max_clips, frames=frames)

    pair = video[list(frames)]
    strip_fig = _strip_figure(model, video, method)
    far_fig = far_pair_figure(pair, far_pair_outputs(model, pair), frames, note)
    figures = [save_figure(strip_fig, out_dir / "clip_strip.png"), save_figure(far_fig, out_dir / "far_pair.png")]
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
    method = METHOD_NAMES[config.model.grouping.kind]
    figures = takes_images(config.train.loggers)  # drawing the strip costs a second or two
    periodic = _eval_fn(clips, eval_batch_size, 16, method, figures) if config.train.eval_every else None
    summary = train(
        model, train_set, config.train, periodic, resume=resume, experiment=config, input_key=INPUT_KEYS[unit]
    )
    if not is_main():
        return {"summary": summary}
    save_config(config, out_dir / "config.yaml")
    device = next(model.parameters()).device
    report = video_report(model, clips, out_dir, method, eval_batch_size, device, config.data.num_eval)
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
    report = video_report(
        model,
        clips,
        out,
        METHOD_NAMES[config.model.grouping.kind],
        batch_size,
        torch.device(device),
        config.data.num_eval,
    )
    report["config"] = config
    return report
