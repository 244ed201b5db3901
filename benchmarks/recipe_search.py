"""Single runs of the demo recipe with config overrides, for searching a training recipe.

    python benchmarks/recipe_search.py run NAME [section.key=value ...]
    python benchmarks/recipe_search.py report NAME [NAME ...]

``run`` trains :data:`BASE` (the demo recipe before this search: 8 x 8 decoder broadcast,
position in the cut, grid-mean slots; evaluated on its own test split only, every 250 steps
on 64 images) with the overrides into ``runs/recipe_search/NAME`` and stores the overrides
beside the run. ``report`` checks that each run's saved config is BASE plus its overrides and
writes
``benchmarks/results/recipe_search.md``: one row per named run with its overrides, its final
decoder and grouping metrics against the static baseline, and the decoder ARI-FG of its
periodic evaluations; and copies each run's decomposition figure and learning curve to
``benchmarks/results/recipe_search_<NAME>_*.png``. One seed per run: a search, not a benchmark.

The search ran before the config's model section was nested, so BASE and the recorded overrides
(``model.cut_init_scale=10.0``, ...) are in that flat layout of cutslots 0.1, which
:func:`cutslots.config.upgrade_legacy` reads; ``cutslots config`` shows a run's nested form.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time
from pathlib import Path

from cutslots.config import experiment_from_dict, load_experiment, parse_override, to_dict
from cutslots.experiments.discovery import read_scalars, run_experiment

WORK = Path("runs") / "recipe_search"
RESULTS = Path("benchmarks") / "results"
# The starting point of the search: the demo recipe as it was (textured scenes, 8 x 8 decoder
# broadcast, position embedding in the cut, grid-mean slots, init scale 1), in the flat layout.
BASE = {
    "name": "recipe-search",
    "model": {
        "kind": "cut",
        "num_slots": 5,
        "slot_dim": 32,
        "encoder_channels": 32,
        "decoder_channels": 32,
        "partition_hidden": 32,
    },
    "data": {
        "dataset": "synthetic",
        "variant": "textured",
        "image_size": 32,
        "num_train": 2000,
        "num_eval": 200,
        "min_objects": 2,
        "max_objects": 3,
        "eval_variants": [],
    },
    "train": {
        "steps": 3000,
        "batch_size": 32,
        "lr": 1e-3,
        "warmup_steps": 50,
        "decay_steps": 2000,
        "log_every": 10,
        "eval_every": 250,
        "checkpoint_every": 200,
        "device": "cpu",
    },
}


def search_config(out_dir: Path, overrides: list[str]) -> dict:
    """BASE with ``overrides`` ("section.key=value") and ``train.out_dir = out_dir``."""
    raw = copy.deepcopy(BASE)
    raw["train"]["out_dir"] = str(out_dir)
    for item in overrides:
        keys, value = parse_override(item)
        if len(keys) != 2 or keys[0] not in raw:
            raise ValueError(f"override {item!r}: expected section.key=value")
        raw[keys[0]][keys[1]] = value
    return raw


def run(name: str, overrides: list[str]) -> None:
    out_dir = WORK / name
    raw = search_config(out_dir, overrides)
    start = time.perf_counter()
    report = run_experiment(experiment_from_dict(raw, source=f"recipe_search {name}"))
    meta = {"overrides": overrides, "wall_s": time.perf_counter() - start, "metrics": report["metrics"]}
    (out_dir / "search.json").write_text(json.dumps(meta, indent=1))


def _pct(m: dict, key: str) -> str:
    return f"{100 * m[key]['mean']:.1f}" if key in m else "–"


def report(names: list[str]) -> None:
    lines = [
        "# Recipe search: single runs of the demo recipe with overrides (synthetic `shapes`)",
        "",
        "Each row is one run (seed 0) of `python benchmarks/recipe_search.py run NAME OVERRIDES`; metrics in %",
        "on the run's test split (200 images), ARI-FG curve on 64 images every `train.eval_every` steps.",
        "The runs here used one torch thread each, two at a time on the 2 cores: their training",
        "seconds are not comparable with a run alone (the demo's).",
        "",
        "| run | overrides | train s | decoder ARI-FG | decoder mIoU | grouping ARI-FG | static ARI-FG | "
        "dependence | decoder ARI-FG over training (step: %) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        out_dir = WORK / name
        meta = json.loads((out_dir / "search.json").read_text())
        saved = {k: v for k, v in to_dict(load_experiment(out_dir / "config.yaml")).items() if k != "name"}
        wanted = to_dict(experiment_from_dict(search_config(Path(saved["train"]["out_dir"]), meta["overrides"])))
        if saved != {k: v for k, v in wanted.items() if k != "name"}:
            raise ValueError(f"{out_dir}: its config.yaml is not BASE with the overrides {meta['overrides']}")
        ((set_name, m),) = meta["metrics"].items()
        curves = read_scalars(out_dir)
        steps, values = curves.get(f"eval/{set_name}/ari_fg", ([], []))
        curve = ", ".join(f"{s}: {100 * v:.0f}" for s, v in zip(steps, values))
        dependence = f"{m['image_dependence']['mean']:.3f}" if "image_dependence" in m else "–"
        lines.append(
            f"| {name} | `{' '.join(meta['overrides'])}` | {curves['train/seconds'][1][-1]:.0f} | "
            f"{_pct(m, 'ari_fg')} | {_pct(m, 'miou')} | {_pct(m, 'grouping_ari_fg')} | "
            f"{_pct(m, 'static_ari_fg')} | {dependence} | {curve} |"
        )
        for figure in (f"decomposition_{set_name}.png", "learning_curve.png"):
            if (out_dir / figure).is_file():
                shutil.copy(out_dir / figure, RESULTS / f"recipe_search_{name}_{figure}")
    (RESULTS / "recipe_search.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("run", "report"):
        print(__doc__)
        return 2
    if argv[0] == "run":
        run(argv[1], argv[2:])
    else:
        report(argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
