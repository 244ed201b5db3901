"""Object discovery on the synthetic scenes: the cut model, its ablations and Slot Attention.

Every model shares the encoder, decoder and data of the demo recipe (``configs/demo.yaml``) and
one training schedule, :data:`CPU_SCHEDULE`; only the grouping differs. Models (``--models``):

- ``cut``: the paper's k-partition (paper form) with a background slot;
- ``cut_identity`` / ``cut_green_filter``: the ablations, the cut QP replaced by the identity
  (softmax over the CNN's per-part outputs) or by the relaxation's fixed filter
  ``(L_grid + 2I)^-1`` alone;
- ``cut_no_position``, ``cut_no_background``, ``cut_released``, ``cut_init_x10``,
  ``cut_masked_mean``: the cut
  model without the learned position embedding, without the background slot, in the
  released form, with the last layer of the cut CNN initialised 10x larger, and with slots
  pooled over each part's mask instead of the whole grid (``cut_masked_mean``);
- ``slot_attention``: Slot Attention with the same encoder and decoder;
- ``random_walker`` / ``random_walker_irls``: the random-walker k-partition (plain, or 2 IRLS
  steps) with the cut's partition settings; ``slot_attention_rw``: Slot Attention with its
  attention diffused by the random walker every iteration.

Settings are a :class:`DiscoveryBenchConfig` (defaults: the committed benchmark), from
``--config FILE`` and/or dotted ``key=value`` overrides; outputs go to ``--out``. Training
sets (``train_sets``): ``shapes`` (evaluated on ``shapes``) and ``textured``
(evaluated on ``textured``, ``camo`` and ``ood``). For each run: decoder-mask and
grouping-mask ARI-FG / mIoU, the static baseline and the image dependence
(:mod:`cutslots.experiments.evaluation`), and the ARI-FG of periodic evaluations against training time.

    python benchmarks/discovery.py 'train_sets=[shapes]' 'models=[cut, slot_attention]' 'seeds=[0, 1, 2]'

Recipes (``recipe``): ``cpu`` is the demo's model and data with :data:`CPU_SCHEDULE`; ``demo``
is the demo config as it is, its own schedule (4000 steps of 8) included; ``gpu`` is GPU-sized
(64 px, 12 slots, 2-6 objects, widths 64, batch 64) and, with ``minutes=M``, trains for as
many steps as fit in M minutes (the step time is measured first on the device):

    python benchmarks/discovery.py recipe=gpu minutes=8 'train_sets=[textured]' \
        'models=[cut, slot_attention]' 'seeds=[0]' --out benchmarks/results/discovery_gpu

``dry_run=true`` shrinks any recipe to a few steps on 16 px images on the CPU: the whole path
(training, evaluation, tables, figures) in seconds, as the tests run it.

Finished runs are kept in ``work`` (``<train set>/<model>_seed<k>/result.json``; by default
``runs/bench_discovery`` for ``cpu``, ``runs/bench_discovery_<recipe>`` for the others) and reused
by later invocations, so a long benchmark can be run piecewise. Writes
``<out>.json``, ``<out>.md`` and ``<out>_curves.png`` over every kept run, and the
decomposition figures of the first seed as ``<out>_<model>_<set>.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator

from cutslots.cli import demo_config
from cutslots.config import ConfigError, Section, experiment_from_dict, load_config, to_dict, with_overrides
from cutslots.config.core import Tuple
from cutslots.experiments.discovery import evaluate_checkpoint, read_scalars, run_experiment
from cutslots.experiments.evaluation import DISCOVERY_MARGIN, MARGIN_FLOOR, decoder_verdict, grouping_verdict
from cutslots.models.builders import build_autoencoder
from cutslots.plots import ari_time_figure, save_figure
from cutslots.train.distributed import context_from_env, resolve_device
from cutslots.train.optim import make_optimizer

RESULTS = Path("benchmarks") / "results"
# Model name -> changes to the demo recipe's cut grouping (``model.grouping``), or another
# grouping (its own ``kind``); None: Slot Attention in place of the cut.
MODELS: dict[str, dict[str, Any] | None] = {
    "cut": {},
    "cut_identity": {"relaxation": "identity"},
    "cut_green_filter": {"relaxation": "green_filter"},
    "cut_no_position": {"position_embedding": "none"},
    "cut_pool_position": {"position_embedding": "pool_only"},
    "cut_no_background": {"background_slot": False},
    "cut_released": {"form": "released"},
    "cut_init_x10": {"init_scale": 10.0},
    "cut_masked_mean": {"pooling": "masked_mean"},
    "slot_attention": None,
    # The random-walker groupings (docs/random-walker.md), with the demo recipe's choices for the
    # partition (appearance-only scores, masked-mean slots, a 10x last layer).
    "random_walker": {"kind": "random_walker"},
    "random_walker_irls": {"kind": "random_walker", "mode": "irls", "iterations": 2},
    "random_walker_softmax": {"kind": "random_walker", "unaries": "softmax"},
    "random_walker_balanced": {"kind": "random_walker", "unaries": "balanced"},
    "slot_attention_rw": {"kind": "slot_attention", "diffusion": "random_walker"},
}
# What the random-walker k-partition keeps of the demo's cut grouping.
_SHARED_WITH_CUT = ("hidden", "mlp_hidden", "init_scale", "position_embedding", "pooling")
# Training set -> the sets its models are evaluated on (the first is its own test split).
EVAL_SETS: dict[str, tuple[str, ...]] = {"shapes": ("shapes",), "textured": ("textured", "camo", "ood")}
DECODER = ("ari_fg", "miou", "mse", "decoder_static_ari_fg", "decoder_dependence")
GROUPING = ("grouping_ari_fg", "grouping_miou", "static_ari_fg", "static_miou", "image_dependence", "grouping_margin")


# The schedule every committed CPU run trained with: 2000 steps of 16, the demo's until it moved
# to 4000 steps of 8 (docs/discovery.md, "The demo"), kept so that the tables stay reproducible.
CPU_SCHEDULE = {
    "steps": 2000,
    "batch_size": 16,
    "warmup_steps": 200,
    "decay_steps": 6000,
    "eval_every": 250,
    "checkpoint_every": 500,
}


def cpu_recipe(out_dir: str) -> dict[str, Any]:
    """The demo's model and data (``configs/demo.yaml``) with :data:`CPU_SCHEDULE`, as plain data."""
    raw = to_dict(demo_config(out_dir))
    raw["train"].update(CPU_SCHEDULE)
    return raw


def demo_recipe(out_dir: str) -> dict[str, Any]:
    """The demo config (``configs/demo.yaml``) as it is, schedule included, as plain data."""
    return to_dict(demo_config(out_dir))


def gpu_recipe(out_dir: str) -> dict[str, Any]:
    """A GPU-sized synthetic run: 64 px, 12 slots, 2-6 objects, widths 64, batch 64."""
    raw = cpu_recipe(out_dir)
    raw["model"].update(num_slots=12, slot_dim=64, encoder={"channels": 64}, decoder={"channels": 64, "broadcast": 64})
    raw["model"]["grouping"]["hidden"] = 64
    raw["data"].update(image_size=64, num_train=10_000, num_eval=256, min_objects=2, max_objects=6)
    raw["train"].update(
        batch_size=64,
        optimizer={"lr": 4e-4},
        warmup_steps=500,
        decay_steps=10_000,
        eval_every=250,
        log_every=50,
        checkpoint_every=1000,
        device="cuda",
    )
    return raw


def dry_run(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` shrunk to seconds on the CPU: 16 px, 3 slots, widths 8, 3 steps, 4 test images,
    logs in ``scalars.csv`` only."""
    broadcast = min(16, raw["model"]["decoder"]["broadcast"])
    raw["model"].update(
        num_slots=3, slot_dim=8, encoder={"channels": 8}, decoder={"channels": 8, "broadcast": broadcast}
    )
    raw["model"]["grouping"]["hidden"] = 8
    raw["data"].update(image_size=16, num_train=8, num_eval=4, min_objects=1, max_objects=2)
    raw["train"].update(
        steps=3, batch_size=4, warmup_steps=0, eval_every=1, log_every=1, checkpoint_every=None, device="cpu"
    )
    raw["train"]["loggers"] = ["csv"]  # what the report reads; no figures drawn at each evaluation
    return raw


RECIPES = {"cpu": cpu_recipe, "demo": demo_recipe, "gpu": gpu_recipe}


def grouping_of(cut: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    """A model's grouping section from the recipe's cut grouping and its entry in MODELS."""
    if changes is None:
        return {"kind": "slot_attention"}
    if changes.get("kind", "cut") == "cut":
        return {**cut, **changes}
    if changes["kind"] == "random_walker":
        return {**{k: cut[k] for k in _SHARED_WITH_CUT}, **changes}
    return dict(changes)


def run_config(
    recipe: str, train_set: str, model: str, seed: int, steps: int | None, out_dir: Path, dry: bool = False
) -> dict[str, Any]:
    """``recipe`` trained on ``train_set`` with ``model``'s grouping and ``seed``."""
    raw = RECIPES[recipe](str(out_dir))
    if dry:
        raw = dry_run(raw)
    raw["name"] = f"bench-{recipe}-{train_set}-{model}-{seed}"
    raw["model"]["grouping"] = grouping_of(raw["model"]["grouping"], MODELS[model])
    raw["data"].update(variant=train_set, eval_variants=list(EVAL_SETS[train_set][1:]), seed=0)
    raw["train"]["seed"] = seed  # same data for every run; the seed varies the model
    if steps is not None:
        raw["train"]["steps"] = steps
    return raw


def train_one(
    raw: dict[str, Any], train_set: str, model: str, seed: int, out_dir: Path, refresh: bool = False
) -> dict[str, Any]:
    """Train and evaluate the run ``raw``, or read it back from ``out_dir`` if it finished
    (with ``refresh``, re-evaluated first if it lacks a metric the evaluation now computes)."""
    result_path = out_dir / "result.json"
    if result_path.is_file():
        result = read_result(result_path)
        if _same_run(result["config"], to_dict(experiment_from_dict(raw))):
            if refresh and _missing_metrics(result):
                result = refreshed(result, out_dir)
                result_path.write_text(json.dumps(result, indent=1))
            return result
    shutil.rmtree(out_dir, ignore_errors=True)
    start = time.perf_counter()
    report = run_experiment(experiment_from_dict(raw, source="benchmark"))
    wall = time.perf_counter() - start
    curves = read_scalars(out_dir)
    result = {
        "config": raw,
        "train_set": train_set,
        "model": model,
        "seed": seed,
        "wall_s": wall,
        "threads": torch.get_num_threads(),
        "train_s": curves["train/seconds"][1][-1],
        "metrics": report["metrics"],
        "curves": {
            name: curves[name]
            for name in curves
            if name == "train/seconds" or name.endswith(("/ari_fg", "/grouping_ari_fg", "/static_ari_fg"))
        },
    }
    result_path.write_text(json.dumps(result, indent=1))
    print(
        f"{train_set} {model} seed {seed}: {wall:.0f} s, "
        + ", ".join(
            f"{name} ARI-FG {m['ari_fg']['mean']:.3f} / grouping "
            f"{m.get('grouping_ari_fg', {}).get('mean', float('nan')):.3f}"
            for name, m in report["metrics"].items()
        ),
        flush=True,
    )
    return result


def _same_run(kept: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a kept run's config is the wanted one; where it was written (``train.out_dir``,
    absolute or relative to another checkout) does not make it another run, nor does a key
    added to the schema since (both go through it, so it has its default on both sides)."""

    def what(config: dict[str, Any]) -> dict[str, Any]:
        config = to_dict(experiment_from_dict(config))
        return {**config, "train": {k: v for k, v in config["train"].items() if k != "out_dir"}}

    return what(kept) == what(wanted)


def _missing_metrics(result: dict[str, Any]) -> bool:
    return any(
        any(k not in m for k in DECODER) or ("grouping_ari_fg" in m and any(k not in m for k in GROUPING))
        for m in result["metrics"].values()
    )


def refreshed(result: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """``result`` with its metrics recomputed from the run's final checkpoint by the current
    evaluation (into ``out_dir/refresh``). For a model that draws no noise the evaluation is
    deterministic, so every metric the run already had must come out the same: a mismatch
    (another checkpoint, changed data, or noise such as Slot Attention's slot init, which a
    re-evaluation draws afresh) raises instead of mixing two evaluations."""
    checkpoint = out_dir / "checkpoint.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no checkpoint to refresh {out_dir}'s metrics from")
    steps = result["config"]["train"]["steps"]
    if torch.load(checkpoint, map_location="cpu", weights_only=False)["step"] != steps:
        raise ValueError(f"{checkpoint} is not the run's final checkpoint (step {steps})")
    metrics = evaluate_checkpoint(checkpoint, out_dir / "refresh")["metrics"]
    for name, old in result["metrics"].items():
        for key, value in old.items():
            if isinstance(value, dict) and abs(metrics[name][key]["mean"] - value["mean"]) > 1e-6:
                raise ValueError(
                    f"{out_dir}: re-evaluating gives {name} {key} {metrics[name][key]['mean']:.6f}, "
                    f"the run recorded {value['mean']:.6f}"
                )
    print(f"{out_dir}: metrics refreshed from {checkpoint}", flush=True)
    return {**result, "metrics": metrics}


def read_result(path: Path) -> dict[str, Any]:
    """A finished run's ``result.json``, its config in the current layout (older runs were
    written with the flat model section of cutslots 0.1)."""
    result = json.loads(path.read_text())
    result["config"] = to_dict(experiment_from_dict(result["config"], source=str(path)))
    return result


def steps_within(raw: dict[str, Any], seconds: float, probe: int = 10) -> int:
    """How many training steps of ``raw``'s model and batch fit in ``seconds``, from the time of
    ``probe`` steps on random images on its device (after 3 warm-up steps; at least 1)."""
    config = experiment_from_dict(raw, source="benchmark")
    device = resolve_device(config.train.device, context_from_env())
    model = build_autoencoder(config.model, config.data.image_size).to(device)
    optimizer = make_optimizer(model, config.train.optimizer)
    size = config.data.image_size
    images = torch.rand(config.train.batch_size, 3, size, size, device=device)
    for i in range(3 + probe):
        if i == 3:
            sync(device)
            start = time.perf_counter()
        loss = model.loss(images, model(images))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync(device)
    step_s = (time.perf_counter() - start) / probe
    steps = max(1, int(seconds / step_s))
    print(f"{raw['name']}: {step_s:.3f} s per step on {device} -> {steps} steps in {seconds:.0f} s", flush=True)
    return steps


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarize_runs(results: list[dict[str, Any]]) -> dict[str, Any]:
    """{train set: {model: {eval set: {metric: {mean, std, n}}, "train_s": ...}}} over seeds."""
    summary: dict[str, Any] = {}
    for r in results:
        summary.setdefault(r["train_set"], {}).setdefault(r["model"], []).append(r)
    out: dict[str, Any] = {}
    for train_set, models in summary.items():
        out[train_set] = {}
        for model, runs in models.items():
            entry: dict[str, Any] = {
                "seeds": [r["seed"] for r in runs],
                "train_s": statistics.mean(r["train_s"] for r in runs),
            }
            for name in EVAL_SETS[train_set]:
                metrics = [r["metrics"][name] for r in runs]
                keys = [k for k in DECODER + GROUPING if all(k in m for m in metrics)]  # older runs lack some
                entry[name] = {
                    k: {
                        "mean": statistics.mean(m[k]["mean"] for m in metrics),
                        "std": statistics.pstdev(m[k]["mean"] for m in metrics),
                    }
                    for k in keys
                }
                if "grouping_ari_fg" in keys:
                    # Seeds whose grouping beats its own static baseline by the discovery margin,
                    # with masks that are not nearly uniform (where the run measured it).
                    entry[name]["seeds_discovering"] = sum(
                        m["grouping_ari_fg"]["mean"] - m["static_ari_fg"]["mean"] >= DISCOVERY_MARGIN
                        and m.get("grouping_margin", {}).get("mean", 1.0) >= MARGIN_FLOOR
                        for m in metrics
                    )
            out[train_set][model] = entry
    return out


def _cell(m: dict[str, Any], key: str, percent: bool = True) -> str:
    if key not in m:
        return "–"
    scale = 100 if percent else 1
    digits = 1 if percent else 3
    return f"{scale * m[key]['mean']:.{digits}f} ± {scale * m[key]['std']:.{digits}f}"


def render(summary: dict[str, Any], results: list[dict[str, Any]]) -> str:
    first = results[0]["config"]
    lines = [
        "# Object discovery on the synthetic scenes (CPU)",
        "",
        f"Recipe: `configs/demo.yaml` ({first['data']['image_size']} px, {first['model']['num_slots']} slots, "
        f"{first['data']['min_objects']}-{first['data']['max_objects']} objects, batch {first['train']['batch_size']}, "
        f"{first['train']['steps']} steps, lr {first['train']['optimizer']['lr']}); "
        "mean ± std over seeds of the per-set means "
        f"({first['data']['num_eval']} test images per set). ARI-FG and mIoU in %. *Grouping*: the argmax of the "
        "k-partition (cut models) or of the attention (Slot Attention); *static*: every image given the "
        "dataset-mean grouping masks; *dependence*: mean |grouping masks - their dataset mean|; "
        "*margin*: mean gap between the largest and second-largest grouping mask (0: uniform masks, "
        "whose argmax is noise; runs from before it was measured show –). *Decoder static*: the decoder's "
        "ARI-FG when every image is given the dataset-mean decoder masks, what one fixed layout scores "
        "(runs from before it was measured show –). "
        f"Train time: seconds in training steps with {sorted({r['threads'] for r in results})} torch "
        "thread(s) per run; runs started side by side share the 2 cores.",
        "",
    ]
    for train_set, models in summary.items():
        for name in EVAL_SETS[train_set]:
            lines += [
                f"## Trained on `{train_set}`, evaluated on `{name}`",
                "",
                "| model | seeds | train time (s) | decoder ARI-FG | decoder mIoU | decoder static ARI-FG | "
                "decoder vs its fixed layout (means) | grouping ARI-FG | "
                "grouping mIoU | static ARI-FG | dependence | margin | grouping vs static (means) | "
                "seeds beating static by 10 points |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for model, entry in models.items():
                m = entry[name]
                verdict = grouping_verdict(m) or "–"
                decoder = decoder_verdict(m) or "–"
                lines.append(
                    f"| {model} | {len(entry['seeds'])} | {entry['train_s']:.0f} | {_cell(m, 'ari_fg')} | "
                    f"{_cell(m, 'miou')} | {_cell(m, 'decoder_static_ari_fg')} | {decoder.split(':')[0]} | "
                    f"{_cell(m, 'grouping_ari_fg')} | {_cell(m, 'grouping_miou')} | "
                    f"{_cell(m, 'static_ari_fg')} | {_cell(m, 'image_dependence', percent=False)} | "
                    f"{_cell(m, 'grouping_margin', percent=False)} | {verdict.split(':')[0]} | "
                    f"{m.get('seeds_discovering', '–')} of {len(entry['seeds'])} |"
                )
            lines.append("")
    return "\n".join(lines)


def curves_by_model(results: list[dict[str, Any]], train_set: str) -> dict[str, list[dict[str, list[float]]]]:
    """Per model, per seed: training seconds and ARI-FG of the decoder / grouping at each
    periodic evaluation of the training set's own test split."""
    out: dict[str, list[dict[str, list[float]]]] = {}
    for r in results:
        if r["train_set"] != train_set:
            continue
        seconds_steps, seconds = r["curves"]["train/seconds"]
        clock = dict(zip(seconds_steps, seconds))
        seed_curves: dict[str, list[float]] = {}
        for kind, key in (("decoder", "ari_fg"), ("grouping", "grouping_ari_fg")):
            name = f"eval/{train_set}/{key}"
            if name in r["curves"]:
                steps, values = r["curves"][name]
                seed_curves[f"{kind}_t"] = [clock[s] for s in steps]
                seed_curves[kind] = values
        out.setdefault(r["model"], []).append(seed_curves)
    return out


class DiscoveryBenchConfig(Section):
    """What a benchmark invocation runs; the defaults are the committed benchmark's."""

    train_sets: Tuple[Literal["shapes", "textured"]] = ("shapes", "textured")
    models: Tuple[str] = ("cut", "cut_identity", "cut_green_filter", "slot_attention")
    seeds: Tuple[Annotated[int, Field(ge=0)]] = (0, 1, 2)
    recipe: Literal["cpu", "demo", "gpu"] = "cpu"
    steps: Annotated[int, Field(ge=1)] | None = None  # None: the recipe's
    minutes: Annotated[float, Field(gt=0)] | None = None  # train for the steps that fit (measured)
    dry_run: bool = False  # tiny sizes on the CPU, a few steps
    threads: Annotated[int, Field(ge=1)] | None = None  # torch CPU threads; None: torch's choice
    # Finished runs, reused by later invocations; None: runs/bench_discovery (cpu), or
    # runs/bench_discovery_<recipe>, so that the tables of two recipes never mix.
    work: str | None = None
    # Re-evaluate reused runs that lack a metric of the current evaluation (from their checkpoint).
    refresh: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> DiscoveryBenchConfig:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ConfigError("models", f"unknown {unknown} (known: {', '.join(MODELS)})")
        if self.minutes is not None and self.steps is not None:
            raise ConfigError("minutes", "minutes and steps exclude each other")
        return self

    @property
    def work_dir(self) -> Path:
        """``work``, or the recipe's default folder."""
        if self.work is not None:
            return Path(self.work)
        return Path("runs/bench_discovery" + ("" if self.recipe == "cpu" else f"_{self.recipe}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="a YAML file of DiscoveryBenchConfig (default: its defaults)")
    parser.add_argument("--out", type=Path, default=RESULTS / "discovery", help="writes OUT.json, OUT.md, OUT_*.png")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. 'seeds=[0]'")
    cli = parser.parse_args(argv)
    if cli.config is not None:
        args = load_config(cli.config, cli.overrides, schema=DiscoveryBenchConfig)
    else:
        args = with_overrides({}, cli.overrides, schema=DiscoveryBenchConfig, source="benchmarks/discovery.py")
    work = args.work_dir
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for seed in args.seeds:
        for train_set in args.train_sets:
            for model in args.models:
                out_dir = work / train_set / f"{model}_seed{seed}"
                raw = run_config(args.recipe, train_set, model, seed, args.steps, out_dir, args.dry_run)
                if args.minutes is not None:
                    raw["train"]["steps"] = steps_within(raw, 60 * args.minutes)
                train_one(raw, train_set, model, seed, out_dir, args.refresh)
    # Report over every finished run in the work folder, this invocation's or earlier ones.
    results = [read_result(p) for p in sorted(work.glob("*/*/result.json"))]
    order = {name: i for i, name in enumerate(MODELS)}
    results.sort(key=lambda r: (list(EVAL_SETS).index(r["train_set"]), order[r["model"]], r["seed"]))
    summary = summarize_runs(results)
    cli.out.parent.mkdir(parents=True, exist_ok=True)
    cli.out.with_suffix(".json").write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    text = render(summary, results)
    cli.out.with_suffix(".md").write_text(text)
    save_figure(
        ari_time_figure({ts: curves_by_model(results, ts) for ts in summary}),
        cli.out.with_name(cli.out.name + "_curves.png"),
    )
    for r in results:
        if r["seed"] == min(args.seeds):
            run_dir = work / r["train_set"] / f"{r['model']}_seed{r['seed']}"
            for name in EVAL_SETS[r["train_set"]]:
                figure = run_dir / f"decomposition_{name}.png"
                if figure.is_file():
                    shutil.copy(figure, cli.out.with_name(f"{cli.out.name}_{r['model']}_{name}.png"))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
