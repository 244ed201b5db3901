"""Object discovery: build model and data from a config, train, evaluate, write figures.

``run_experiment(config)`` is what ``cutslots train`` and ``cutslots demo`` run;
``evaluate_checkpoint(path, ...)`` is ``cutslots eval``. Outputs land in ``train.out_dir``:
``checkpoint.pt``, ``config.yaml``, ``scalars.csv`` + TensorBoard events, ``metrics.json``
(one entry per evaluation set) and PNGs (``loss.png``, ``decomposition_<set>.png``).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import Dataset, Subset

from cutslots.config import DataConfig, ExperimentConfig, ModelConfig, config_from_dict, save_config
from cutslots.data.synthetic import SyntheticScenes
from cutslots.evaluation import evaluate
from cutslots.figures import curve_figure, decomposition_figure
from cutslots.models.autoencoder import SlotAutoencoder
from cutslots.nn.cut_slots import build_cut_autoencoder, build_slot_attention_autoencoder
from cutslots.train.checkpoint import load_checkpoint
from cutslots.train.loop import CHECKPOINT_NAME, train

log = logging.getLogger(__name__)

# Synthetic data has no fixed size: these are the defaults when num_train / num_eval are null.
SYNTHETIC_TRAIN, SYNTHETIC_EVAL = 10_000, 500
SYNTHETIC_VARIANTS = ("shapes", "textured", "camo", "ood")
CLEVRTEX_VARIANTS = ("full", "outd", "camo", "pbg", "vbg", "grassbg")


def build_model(model: ModelConfig, image_size: int) -> SlotAutoencoder:
    """The autoencoder a model section describes, for square images of ``image_size``."""
    common = dict(
        image_size=image_size,
        encoder=model.encoder,
        num_slots=model.num_slots,
        slot_dim=model.slot_dim,
        encoder_channels=model.encoder_channels,
        resnet_blocks=model.resnet_blocks,
        decoder_channels=model.decoder_channels,
    )
    if model.kind == "slot_attention":
        return build_slot_attention_autoencoder(iters=model.slot_attention_iters, **common)
    return build_cut_autoencoder(
        gamma=model.gamma,
        temperature=model.temperature,
        bg_temperature=model.bg_temperature,
        background_slot=model.background_slot,
        partition_hidden=model.partition_hidden,
        weight_activation=model.weight_activation,
        form=model.cut_form,
        **common,
    )


def build_dataset(data: DataConfig, split: str, variant: str | None = None) -> Dataset:
    """The ``split`` ("train" / "val" / "test") of the dataset a data section describes.

    ``variant`` overrides ``data.variant`` (used for the extra evaluation sets).
    """
    variant = variant if variant is not None else data.variant
    count = data.num_train if split == "train" else data.num_eval
    if data.dataset == "synthetic":
        variant = variant or "textured"
        if variant not in SYNTHETIC_VARIANTS:
            raise ValueError(f"data.variant: synthetic variants are {SYNTHETIC_VARIANTS}, got {variant!r}")
        default = SYNTHETIC_TRAIN if split == "train" else SYNTHETIC_EVAL
        return SyntheticScenes(
            variant=variant,
            split=split,
            size=data.image_size,
            num_images=count or default,
            min_objects=data.min_objects,
            max_objects=data.max_objects,
            seed=data.seed,
            cache_dir=data.cache_dir,
        )
    if data.dataset == "clevrtex":
        from cutslots.data.clevrtex import ClevrTex

        variant = variant or "full"
        if variant not in CLEVRTEX_VARIANTS:
            raise ValueError(f"data.variant: ClevrTex variants are {CLEVRTEX_VARIANTS}, got {variant!r}")
        # outd has no split of its own: all of it is evaluation data.
        ds: Dataset = ClevrTex(data.root, variant=variant, split=None if variant == "outd" else split,
                               resolution=data.image_size)
        return Subset(ds, range(min(count, len(ds)))) if count else ds  # type: ignore[arg-type]
    raise ValueError(
        f"data.dataset: {data.dataset!r} is not an image object-discovery dataset here "
        "(use 'synthetic' or 'clevrtex'; video datasets go through the video experiment)"
    )


def eval_sets(data: DataConfig) -> dict[str, Dataset]:
    """Evaluation sets: the test split of the training variant plus ``data.eval_variants``."""
    main = data.variant or ("textured" if data.dataset == "synthetic" else "full")
    names = [main] + [v for v in data.eval_variants if v != main]
    return {name: build_dataset(data, "test", name) for name in names}


def _eval_fn(sets: Mapping[str, Dataset], batch_size: int, max_images: int | None):
    def run(model: torch.nn.Module, step: int) -> dict[str, float]:
        device = next(model.parameters()).device
        scalars = {}
        for name, ds in sets.items():
            summary = evaluate(model, ds, batch_size, device, max_images)["summary"]
            scalars.update({f"eval/{name}/{k}": v["mean"] for k, v in summary.items()})
        return scalars

    return run


def _loss_curve(out_dir: Path) -> Path | None:
    path = out_dir / "scalars.csv"
    if not path.is_file():
        return None
    steps, values = [], []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["name"] == "train/loss":
                steps.append(int(row["step"]))
                values.append(float(row["value"]))
    if not steps:
        return None
    return curve_figure({"train loss (MSE)": (steps, values)}, out_dir / "loss.png")


def final_report(
    model: SlotAutoencoder, sets: Mapping[str, Dataset], out_dir: Path, batch_size: int, device: torch.device
) -> dict[str, Any]:
    """Evaluate on every set, write ``metrics.json`` and the decomposition figures."""
    metrics: dict[str, Any] = {}
    figures: list[str] = []
    for name, ds in sets.items():
        result = evaluate(model, ds, batch_size, device)
        metrics[name] = {"num_images": result["num_images"], **result["summary"]}
        batch = torch.stack([ds[i]["image"] for i in range(min(4, len(ds)))]).to(device)  # type: ignore[arg-type]
        model.eval()
        with torch.no_grad():
            out = model(batch)
        figures.append(str(decomposition_figure(batch, out, out_dir / f"decomposition_{name}.png")))
    curve = _loss_curve(out_dir)
    if curve is not None:
        figures.append(str(curve))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {"metrics": metrics, "figures": figures, "metrics_path": str(out_dir / "metrics.json")}


def run_experiment(config: ExperimentConfig, resume: bool = False, eval_batch_size: int = 16) -> dict[str, Any]:
    """Train the configured model, then evaluate it and write the report (rank 0 only)."""
    out_dir = Path(config.train.out_dir)
    model = build_model(config.model, config.data.image_size)
    train_set = build_dataset(config.data, "train")
    sets = eval_sets(config.data)
    periodic = _eval_fn(sets, eval_batch_size, max_images=64) if config.train.eval_every else None
    summary = train(model, train_set, config.train, periodic, resume=resume, experiment=config)
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return {"summary": summary}
    save_config(config, out_dir / "config.yaml")
    device = next(model.parameters()).device
    report = final_report(model, sets, out_dir, eval_batch_size, device)
    report["summary"] = summary
    return report


def evaluate_checkpoint(
    path: str | Path,
    out_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a training checkpoint on its config's evaluation sets (``overrides`` replace
    fields of its data section, e.g. ``{"root": ..., "eval_variants": ("outd", "camo")}``)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
        raise ValueError(f"{path} holds no experiment config: it was not written by `cutslots train`")
    config = config_from_dict(raw["config"], source=str(path))
    if overrides:
        data = config_from_dict({**raw["config"], "data": {**raw["config"]["data"], **overrides}}, str(path)).data
        config = ExperimentConfig(config.name, config.model, data, config.train)
    model = build_model(config.model, config.data.image_size)
    load_checkpoint(path, model)
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
