"""Cut model vs Slot Attention on the synthetic scenes (issue: object-discovery pipeline).

Both models share encoder, decoder, data, steps, batch and optimiser; only the grouping
differs. Each is trained on ``textured`` and evaluated on ``textured``, ``camo`` and ``ood``
test sets, for several seeds. Reported: mean ± std over seeds of ARI-FG, mIoU, MSE; the
training wall-clock and step time; and the share of the cut model's step time spent in the
cut QP layer (forward + backward of the same batch of QPs, timed separately).

CPU-sized on purpose (32 px images, a 16 x 16 cut grid, 5 slots): the paper's setting
(128 px, 64 x 64 grid, 12 slots, 500k steps) is out of reach of a 2-core machine.

    python benchmarks/discovery.py [--steps 800 --seeds 0 1 2]

Writes ``benchmarks/results/discovery.{json,md}`` and the decomposition figures of seed 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import torch

from cutslots.cli import demo_config
from cutslots.config import config_from_dict
from cutslots.experiments.discovery import run_experiment
from cutslots.qp import GridCutQP

RESULTS = Path("benchmarks") / "results"
SETS = ("textured", "camo", "ood")
METRICS = ("ari_fg", "miou", "mse")


def cut_layer_seconds(batch: int, parts: int, grid: int, repeats: int = 5) -> float:
    """Forward + backward of the cut QPs one training step solves (``batch * parts`` QPs)."""
    qp = GridCutQP(grid, grid, gamma=1.0)
    w = torch.rand(batch * parts, 6, grid, grid)
    grad = torch.randn(batch * parts, grid, grid)
    times = []
    for _ in range(repeats + 1):
        x = w.clone().requires_grad_(True)
        start = time.perf_counter()
        (qp(x).p * grad).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("runs/bench_discovery"))
    parser.add_argument("--out", type=Path, default=RESULTS / "discovery")
    args = parser.parse_args(argv)

    runs: dict[str, list[dict]] = {"cut": [], "slot_attention": []}
    for seed in args.seeds:
        for kind in runs:
            out_dir = args.work / f"{kind}_seed{seed}"
            shutil.rmtree(out_dir, ignore_errors=True)
            raw = demo_config(str(out_dir), args.steps)
            raw["name"] = f"bench-{kind}-{seed}"
            raw["model"]["kind"] = kind
            raw["train"]["seed"] = seed
            raw["data"]["seed"] = 0  # same data for every run; the seed varies the model
            start = time.perf_counter()
            report = run_experiment(config_from_dict(raw, source="benchmark"))
            wall = time.perf_counter() - start
            runs[kind].append({"seed": seed, "wall_s": wall, "step_s": wall / args.steps, "metrics": report["metrics"]})
            print(f"{kind} seed {seed}: {wall:.0f} s, " + ", ".join(
                f"{s} ARI-FG {report['metrics'][s]['ari_fg']['mean']:.3f} mIoU {report['metrics'][s]['miou']['mean']:.3f}"
                for s in SETS), flush=True)
            if seed == args.seeds[0]:
                for s in SETS:
                    shutil.copy(out_dir / f"decomposition_{s}.png", args.out.parent / f"discovery_{kind}_{s}.png")

    cfg = demo_config()
    batch, slots, grid = cfg["train"]["batch_size"], cfg["model"]["num_slots"], cfg["data"]["image_size"] // 2
    # The background partition solves k + 1 cuts (fg/bg pair + k - 1 objects).
    cut_s = cut_layer_seconds(batch, slots + 1, grid)
    summary: dict = {"steps": args.steps, "seeds": args.seeds, "config": cfg, "cut_layer_s_per_step": cut_s}
    for kind, rs in runs.items():
        summary[kind] = {
            "step_s": statistics.mean(r["step_s"] for r in rs),
            **{
                s: {
                    m: {
                        "mean": statistics.mean(r["metrics"][s][m]["mean"] for r in rs),
                        "std": statistics.pstdev(r["metrics"][s][m]["mean"] for r in rs),
                    }
                    for m in METRICS
                }
                for s in SETS
            },
        }
    summary["cut_layer_fraction"] = cut_s / summary["cut"]["step_s"]
    summary["runs"] = runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    text = render(summary)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


def render(summary: dict) -> str:
    cfg = summary["config"]
    lines = [
        "# Object discovery: cut model vs Slot Attention (synthetic scenes, CPU)",
        "",
        f"{summary['steps']} steps, batch {cfg['train']['batch_size']}, {cfg['data']['image_size']} px, "
        f"{cfg['model']['num_slots']} slots, {cfg['data']['min_objects']}-{cfg['data']['max_objects']} objects; "
        f"trained on `textured`; seeds {summary['seeds']}; mean ± std over seeds of the per-set means "
        f"({cfg['data']['num_eval']} test images per set). ARI-FG and mIoU in %, MSE summed per image.",
        "",
        "| model | set | ARI-FG | mIoU | MSE |",
        "|---|---|---|---|---|",
    ]
    for kind in ("cut", "slot_attention"):
        for s in SETS:
            m = summary[kind][s]
            lines.append(
                f"| {kind} | {s} | {100 * m['ari_fg']['mean']:.1f} ± {100 * m['ari_fg']['std']:.1f} "
                f"| {100 * m['miou']['mean']:.1f} ± {100 * m['miou']['std']:.1f} "
                f"| {m['mse']['mean']:.1f} ± {m['mse']['std']:.1f} |"
            )
    lines += [
        "",
        f"Wall-clock per step (training + its share of start-up and final evaluation): cut "
        f"{summary['cut']['step_s']:.3f} s, Slot Attention {summary['slot_attention']['step_s']:.3f} s.",
        f"Cut QP layer (forward + backward of the step's {cfg['train']['batch_size']} x "
        f"{cfg['model']['num_slots'] + 1} QPs, timed alone): {summary['cut_layer_s_per_step']:.4f} s, "
        f"{100 * summary['cut_layer_fraction']:.1f}% of the cut model's step.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
