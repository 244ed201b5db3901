"""``cutslots`` command line: demo, train, eval, bench and the validation experiments."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

DEMO_OUT = "runs/demo"


DEMO_STEPS = 2000


def demo_config(out_dir: str = DEMO_OUT, steps: int | None = None) -> dict:
    """The embedded default: the cut model on synthetic ``shapes`` scenes, sized for a 2-core
    CPU (about 10 minutes): 32 px images, a 16 x 16 cut grid, 5 slots, 2-3 objects.

    The recipe is the one that made the cut grouping beat its static baseline on the CPU
    (docs/discovery.md): the decoder broadcasts slots on the full 32 x 32 grid; the cut sees
    appearance only (the position embedding goes into the pooled features); slots are the
    mean of their part; the cut CNN's last layer starts 10x larger so the parts differ."""
    return {
        "name": "demo-cut-shapes",
        "model": {"kind": "cut", "num_slots": 5, "slot_dim": 32, "encoder_channels": 32,
                  "decoder_channels": 32, "partition_hidden": 32, "decoder_broadcast": 32,
                  "position_embedding": "pool_only", "slot_pooling": "masked_mean",
                  "cut_init_scale": 10.0},
        "data": {"dataset": "synthetic", "variant": "shapes", "image_size": 32,
                 "num_train": 2000, "num_eval": 200, "min_objects": 2, "max_objects": 3,
                 "eval_variants": []},
        "train": {"steps": DEMO_STEPS if steps is None else steps, "batch_size": 16, "lr": 1e-3,
                  "warmup_steps": 200, "decay_steps": 6000, "log_every": 10, "eval_every": 250,
                  "checkpoint_every": 500, "out_dir": out_dir, "device": "cpu"},
    }


def _cmd_demo(args: argparse.Namespace) -> int:
    from cutslots.config import config_from_dict
    from cutslots.experiments.discovery import format_report, run_experiment

    if args.resume and not args.out:
        raise ValueError("--resume: name the run to continue with --out DIR")
    out = Path(args.out or f"{DEMO_OUT}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "checkpoint.pt").exists() and not args.resume:
        raise ValueError(f"--out: {out} already holds a demo run; pass --resume to continue it or --out DIR for a new one")
    config = config_from_dict(demo_config(str(out), args.steps), source="demo")
    report = run_experiment(config, resume=args.resume)
    print(format_report(report["metrics"]))
    print(f"\nmetrics: {report['metrics_path']}")
    for fig in report["figures"]:
        print(f"figure:  {fig}")
    return 0


VIDEO_DATASETS = ("moving", "movi_a")


def _cmd_train(args: argparse.Namespace) -> int:
    from cutslots.config import load_config

    config = load_config(args.config, args.overrides)
    if config.data.dataset in VIDEO_DATASETS:
        from cutslots.experiments.video import run_video_experiment

        report = run_video_experiment(config, resume=args.resume)
        if "table" in report:
            print(report["table"])
    else:
        from cutslots.experiments.discovery import format_report, run_experiment

        report = run_experiment(config, resume=args.resume)
        if "metrics" in report:
            print(format_report(report["metrics"]))
    if "metrics_path" in report:
        print(f"\nmetrics: {report['metrics_path']}")
    return 0


def _saved_dataset(path: Path) -> str | None:
    """``data.dataset`` of the config stored in a checkpoint."""
    from cutslots.train.checkpoint import checkpoint_config

    return checkpoint_config(path)[1].get("data", {}).get("dataset")


def _cmd_eval(args: argparse.Namespace) -> int:
    overrides: dict = {}
    if args.root:
        overrides["root"] = args.root
    if args.variants:
        overrides["eval_variants"] = args.variants
    if args.num_eval:
        overrides["num_eval"] = args.num_eval
    if _saved_dataset(args.checkpoint) in VIDEO_DATASETS:
        from cutslots.experiments.video import evaluate_video_checkpoint

        if args.variants:
            raise ValueError("--variants: video datasets have no evaluation variants")
        report = evaluate_video_checkpoint(args.checkpoint, args.out, overrides, device=args.device)
        print(report["table"])
    else:
        from cutslots.experiments.discovery import evaluate_checkpoint, format_report

        report = evaluate_checkpoint(args.checkpoint, args.out, overrides, device=args.device)
        print(format_report(report["metrics"]))
    print(f"\nmetrics: {report['metrics_path']}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from cutslots.bench.qp import main  # "qp" is the only choice the subparser accepts

    return main(args.rest)


def _forward(module: str):
    def run(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(module).main(args.rest)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cutslots", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train and evaluate the cut model on synthetic shapes (CPU, ~10 min)")
    p.add_argument("--out", help=f"run folder (default: a new {DEMO_OUT}-<date>-<time>, so reruns never clash)")
    p.add_argument("--steps", type=int, default=None, help=f"training steps (default {DEMO_STEPS})")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(run=_cmd_demo)

    p = sub.add_parser("train", help="train from a YAML config (key=value overrides allowed)")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in train.out_dir")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=100")
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint (Table 1 layout; Table 2 for video runs)")
    p.add_argument("checkpoint", type=Path, help="checkpoint.pt or its run directory")
    p.add_argument("--root", help="dataset root, if it moved since training")
    p.add_argument("--variants", nargs="+", help="evaluation variants, e.g. outd camo")
    p.add_argument("--num-eval", type=int)
    p.add_argument("--out", type=Path)
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=_cmd_eval)

    p = sub.add_parser("bench", help="benchmarks: `cutslots bench qp --out PATH [options]`")
    p.add_argument("what", choices=["qp"])
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(run=_cmd_bench)

    for name, module, text in (
        ("matching-experiment", "cutslots.experiments.cora_matching", "Cora bipartite matching (paper §6.2)"),
        ("cut-fidelity", "cutslots.experiments.cut_fidelity", "relaxed cut vs exact min cut"),
    ):
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(run=_forward(module))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as err:
        # Bad input of any kind: one clear line, no traceback.
        print(f"cutslots {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
