"""Object discovery: build model and data from a config, train, evaluate, write figures.

``run_experiment(config)`` is what ``cutslots train`` and ``cutslots demo`` run;
``evaluate_checkpoint(path, ...)`` is ``cutslots eval``. Outputs land in ``train.out_dir``:
``checkpoint.pt``, ``config.yaml``, the logs of ``train.loggers`` (``scalars.csv``,
TensorBoard events, W&B; with ``train.eval_every``, each evaluation's scalars and
decomposition figures), ``metrics.json``
(one entry per evaluation set: decoder metrics with the fixed-layout reference of the decoder
masks, and the grouping's own metrics with its image dependence and static baseline, see
:mod:`cutslots.experiments.evaluation`) and PNGs
(``loss.png``, ``learning_curve.png`` when ``train.eval_every`` is set,
``decomposition_<set>.png``).

The datasets of ``data.dataset`` / ``data.variant`` are those of :mod:`cutslots.data.registry`.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from cutslots.config import ExperimentConfig, save_config
from cutslots.data.registry import build_dataset, eval_sets
from cutslots.experiments.common import eval_mode, is_main, load_run, seed_everything
from cutslots.experiments.evaluation import decoder_verdict, evaluate, grouping_verdict
from cutslots.models.autoencoder import SlotAutoencoder
from cutslots.models.builders import build_autoencoder
from cutslots.plots import curve_figure, decomposition_figure, figure_image, learning_curve_figure, save_figure
from cutslots.train.checkpoint import load_checkpoint
from cutslots.train.logging import takes_images
from cutslots.train.loop import train

log = logging.getLogger(__name__)


def _first_items(ds: Dataset, n: int) -> list[dict[str, Any]]:
    """The first ``n`` items (fewer if ``ds`` is shorter) of a map-style or iterable dataset."""
    if isinstance(ds, IterableDataset):
        return list(itertools.islice(ds, n))
    return [ds[i] for i in range(min(n, len(ds)))]  # type: ignore[arg-type]


def _shown_images(name: str, ds: Dataset) -> torch.Tensor:
    """The images a decomposition figure of evaluation set ``name`` shows: its first 4."""
    shown = _first_items(ds, 4)
    if not shown:
        raise ValueError(f"evaluation set {name!r} is empty (check data.root, the variant and data.num_eval)")
    return torch.stack([item["image"] for item in shown])


def _eval_fn(sets: Mapping[str, Dataset], batch_size: int, max_images: int | None, figures: bool):
    """Periodic evaluation: ``{"<set>/<metric>": mean}`` and, with ``figures``, the
    ``"<set>/decomposition"`` figure as an image (logged as ``eval/<set>/...``)."""
    shown = {name: _shown_images(name, ds) for name, ds in sets.items()} if figures else {}

    def run(model: torch.nn.Module, step: int) -> dict[str, float | np.ndarray]:
        device = next(model.parameters()).device
        logged: dict[str, float | np.ndarray] = {}
        for name, ds in sets.items():
            summary = evaluate(model, ds, batch_size, device, max_images)["summary"]
            logged.update({f"{name}/{k}": v["mean"] for k, v in summary.items()})
            if figures:
                images = shown[name].to(device)
                logged[f"{name}/decomposition"] = figure_image(decomposition_figure(images, model(images)))
        return logged

    return run


def read_scalars(out_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """``scalars.csv`` of a run as {name: (steps, values)} ({} when there is none)."""
    path = out_dir / "scalars.csv"
    curves: dict[str, tuple[list[int], list[float]]] = {}
    if path.is_file():
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                steps, values = curves.setdefault(row["name"], ([], []))
                steps.append(int(row["step"]))
                values.append(float(row["value"]))
    return curves


# (scalar suffix, legend) of the learning curve, for every evaluation set.
_CURVE_METRICS = (
    ("ari_fg", "decoder ARI-FG"),
    ("decoder_static_ari_fg", "decoder's dataset-mean masks ARI-FG"),
    ("grouping_ari_fg", "grouping ARI-FG"),
    ("static_ari_fg", "static baseline ARI-FG"),
)


def training_curves(out_dir: Path) -> list[Path]:
    """``loss.png`` (training loss) and, with periodic evaluation, ``learning_curve.png``:
    the loss beside ARI-FG of the decoder, the grouping and their static baselines per set."""
    curves = read_scalars(out_dir)
    if "train/loss" not in curves:
        return []
    loss = {"train loss (MSE)": curves["train/loss"]}
    figures = [save_figure(curve_figure(loss), out_dir / "loss.png")]
    sets = [name.split("/")[1] for name in curves if name.startswith("eval/") and name.endswith("/ari_fg")]
    evaluated = {
        f"{ds}: {legend}": curves[f"eval/{ds}/{key}"]
        for ds in sets
        for key, legend in _CURVE_METRICS
        if f"eval/{ds}/{key}" in curves
    }
    if evaluated:
        figures.append(save_figure(learning_curve_figure(loss, evaluated), out_dir / "learning_curve.png"))
    return figures


def final_report(
    model: SlotAutoencoder, sets: Mapping[str, Dataset], out_dir: Path, batch_size: int, device: torch.device
) -> dict[str, Any]:
    """Evaluate on every set, write ``metrics.json`` and the decomposition figures."""
    metrics: dict[str, Any] = {}
    figures: list[str] = []
    for name, ds in sets.items():
        batch = _shown_images(name, ds).to(device)
        result = evaluate(model, ds, batch_size, device)
        metrics[name] = {"num_images": result["num_images"], **result["summary"]}
        for key, verdict in (
            ("decoder_verdict", decoder_verdict(result["summary"])),
            ("grouping_verdict", grouping_verdict(result["summary"])),
        ):
            if verdict is not None:
                metrics[name][key] = verdict
        with eval_mode(model), torch.no_grad():
            out = model(batch)
        figures.append(str(save_figure(decomposition_figure(batch, out), out_dir / f"decomposition_{name}.png")))
    figures += [str(f) for f in training_curves(out_dir)]
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {"metrics": metrics, "figures": figures, "metrics_path": str(out_dir / "metrics.json")}


def run_experiment(config: ExperimentConfig, resume: bool = False, eval_batch_size: int = 16) -> dict[str, Any]:
    """Train the configured model, then evaluate it and write the report (rank 0 only).

    Periodic evaluation (``train.eval_every``) scores up to 64 images per set; under DDP a
    streamed set gives rank 0 only its share of records there (enough to monitor training).
    """
    out_dir = Path(config.train.out_dir)
    seed_everything(config.train.seed)  # the initial weights, so equal seeds give equal runs
    model = build_autoencoder(config.model, config.data.image_size)
    train_set = build_dataset(config.data, "train")
    sets = eval_sets(config.data)
    figures = takes_images(config.train.loggers)  # drawing them costs a second or two per set
    periodic = _eval_fn(sets, eval_batch_size, 64, figures) if config.train.eval_every else None
    summary = train(model, train_set, config.train, periodic, resume=resume, experiment=config)
    if not is_main():
        return {"summary": summary}
    save_config(config, out_dir / "config.yaml")
    _check_not_sharded(sets, summary.checkpoint)
    device = next(model.parameters()).device
    report = final_report(model, sets, out_dir, eval_batch_size, device)
    report["summary"] = summary
    return report


def _check_not_sharded(sets: Mapping[str, Dataset], checkpoint: Path) -> None:
    """Refuse a final report on streamed sets while a multi-rank process group exists: their
    readers shard records over DDP ranks, so rank 0 alone would score only its share."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    streamed = [name for name, ds in sets.items() if isinstance(ds, IterableDataset)]
    if streamed:
        raise ValueError(
            f"evaluation sets {streamed} are streamed and split over the "
            f"{dist.get_world_size()} DDP ranks, so rank 0 would score only part of them; "
            f"training is done: evaluate in one process with `cutslots eval {checkpoint}`"
        )


def evaluate_checkpoint(
    path: str | Path,
    out_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a training checkpoint on its config's evaluation sets (``overrides`` replace
    fields of its data section, e.g. ``{"root": ..., "eval_variants": ("outd", "camo")}``)."""
    path, config = load_run(path, overrides)
    model = build_autoencoder(config.model, config.data.image_size)
    load_checkpoint(path, model)  # ValueError naming the parameters if the weights do not fit
    model.to(device)
    out = Path(out_dir) if out_dir is not None else path.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    report = final_report(model, eval_sets(config.data), out, batch_size, torch.device(device))
    report["config"] = config
    return report


def format_table(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """The paper's Table 1 layout: one row per evaluation set, mIoU / ARI-FG in %, MSE."""
    lines = ["| set | mIoU (%) | ARI-FG (%) | MSE |", "|---|---|---|---|"]
    for name, m in metrics.items():
        lines.append(
            f"| {name} | {100 * m['miou']['mean']:.2f} ± {100 * m['miou']['std']:.2f} "
            f"| {100 * m['ari_fg']['mean']:.2f} ± {100 * m['ari_fg']['std']:.2f} "
            f"| {m['mse']['mean']:.1f} ± {m['mse']['std']:.1f} |"
        )
    return "\n".join(lines)


def format_grouping_table(metrics: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The grouping's own metrics per set beside its references (None when no set has them):
    mIoU / ARI-FG of the grouping and of the static baseline in %, the image dependence, and
    the verdict sentence of :func:`cutslots.experiments.evaluation.grouping_verdict`."""
    rows = {name: m for name, m in metrics.items() if "grouping_ari_fg" in m}
    if not rows:
        return None
    lines = [
        "| set | grouping mIoU (%) | grouping ARI-FG (%) | static mIoU (%) | static ARI-FG (%) | image dependence |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for name, m in rows.items():
        cells = [
            f"{100 * m[k]['mean']:.2f} ± {100 * m[k]['std']:.2f}"
            for k in ("grouping_miou", "grouping_ari_fg", "static_miou", "static_ari_fg")
        ]
        dependence = m["image_dependence"]
        lines.append(f"| {name} | {' | '.join(cells)} | {dependence['mean']:.3f} ± {dependence['std']:.3f} |")
        verdicts.append(f"{name}: {m['grouping_verdict']}")
    return "\n".join(lines + [""] + verdicts)


def format_report(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """Table 1 (decoder masks) with the decoder's verdict per set and, for models with a
    grouping, the grouping table."""
    grouping = format_grouping_table(metrics)
    table = format_table(metrics)
    verdicts = [f"{name}: {m['decoder_verdict']}" for name, m in metrics.items() if "decoder_verdict" in m]
    if verdicts:
        table += "\n\n" + "\n".join(verdicts)
    if grouping is None:
        return table
    return f"Decoder masks:\n{table}\n\nGrouping masks:\n{grouping}"
