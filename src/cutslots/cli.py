"""``cutslots`` command line: demo, train, eval, bench and the validation experiments."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TypeVar

from cutslots.config import ExperimentConfig, Section, load_config, load_experiment, resolve_config, to_dict
from cutslots.data.registry import VIDEO_DATASETS

DEMO_OUT = "runs/demo"
S = TypeVar("S", bound=Section)


def demo_config(out_dir: str = DEMO_OUT, steps: int | None = None) -> ExperimentConfig:
    """The embedded default, ``configs/demo.yaml``: the cut model on synthetic ``shapes``
    scenes, sized for a 2-core CPU (within 10 minutes); the recipe: docs/discovery.md."""
    overrides = [f"train.out_dir={out_dir}"] + ([] if steps is None else [f"train.steps={steps}"])
    return load_experiment("demo", overrides)


def _cmd_demo(args: argparse.Namespace) -> int:
    from cutslots.experiments.discovery import format_report, run_experiment

    if args.resume and not args.out:
        raise ValueError("--resume: name the run to continue with --out DIR")
    out = Path(args.out or f"{DEMO_OUT}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "checkpoint.pt").exists() and not args.resume:
        raise ValueError(
            f"--out: {out} already holds a demo run; pass --resume to continue it or --out DIR for a new one"
        )
    report = run_experiment(demo_config(str(out), args.steps), resume=args.resume)
    print(format_report(report["metrics"]))
    print(f"\nmetrics: {report['metrics_path']}")
    for fig in report["figures"]:
        print(f"figure:  {fig}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    """Print the validated config (defaults filled in, an older layout upgraded) as YAML."""
    import yaml

    config = load_experiment(args.config, args.overrides)
    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    config = load_experiment(args.config, args.overrides)
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


def _load(args: argparse.Namespace, schema: type[S]) -> S:
    """The ``--config`` file (or packaged name) of a command as ``schema``, with its overrides."""
    return load_config(resolve_config(args.config), args.overrides, schema=schema)


def _cmd_matching(args: argparse.Namespace) -> int:
    from cutslots.experiments.cora_matching import CoraMatchingConfig, run_experiment

    print(run_experiment(_load(args, CoraMatchingConfig), args.out))
    return 0


def _cmd_cut_fidelity(args: argparse.Namespace) -> int:
    from cutslots.experiments.cut_fidelity import CutFidelityConfig, run_experiment

    print(run_experiment(_load(args, CutFidelityConfig), args.out))
    return 0


def _cmd_bench_qp(args: argparse.Namespace) -> int:
    from cutslots.bench.qp import QPBenchConfig, run_benchmark

    print(run_benchmark(_load(args, QPBenchConfig), args.out), end="")
    return 0


def _config_arguments(p: argparse.ArgumentParser, example: str, out: str, out_required: bool = False) -> None:
    """``--config NAME_OR_PATH``, ``--out PATH`` and dotted overrides. Outputs are a flag, not a
    config key: a saved config then reruns anywhere, and a packaged one never names a path."""
    p.add_argument(
        "--config", required=True, metavar="NAME_OR_PATH", help=f"a YAML file, or a packaged config's name ({example})"
    )
    p.add_argument("--out", type=Path, required=out_required, metavar="PATH", help=out)
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (values read as YAML)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cutslots", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train and evaluate the cut model on synthetic shapes (CPU, ~6 min)")
    p.add_argument("--out", help=f"run folder (default: a new {DEMO_OUT}-<date>-<time>, so reruns never clash)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: those of configs/demo.yaml)")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(run=_cmd_demo)

    p = sub.add_parser("train", help="train from a YAML config (key=value overrides allowed)")
    p.add_argument("--config", required=True, help="a YAML file, or a packaged config's name (e.g. clevrtex)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in train.out_dir")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=100")
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("config", help="print a config as it will run: defaults filled in, older layouts upgraded")
    p.add_argument("config", help="a YAML file, or a packaged config's name")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=100")
    p.set_defaults(run=_cmd_config)

    p = sub.add_parser("eval", help="evaluate a checkpoint (Table 1 layout; Table 2 for video runs)")
    p.add_argument("checkpoint", type=Path, help="checkpoint.pt or its run directory")
    p.add_argument("--root", help="dataset root, if it moved since training")
    p.add_argument("--variants", nargs="+", help="evaluation variants, e.g. outd camo")
    p.add_argument("--num-eval", type=int)
    p.add_argument("--out", type=Path)
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=_cmd_eval)

    p = sub.add_parser("bench", help="benchmarks: `cutslots bench qp --config bench_qp --out PATH`")
    bench = p.add_subparsers(dest="what", required=True)
    p = bench.add_parser("qp", help="grid cut QP engines: forward + backward time")
    _config_arguments(
        p,
        "bench_qp",
        "write PATH.json, PATH.md and PATH.config.yaml (the committed run: benchmarks/results/qp)",
        out_required=True,
    )
    p.set_defaults(run=_cmd_bench_qp)

    p = sub.add_parser("matching-experiment", help="Cora bipartite matching (paper §6.2)")
    _config_arguments(
        p,
        "cora_matching, cora_synthetic",
        "write PATH.json, PATH.md and PATH.config.yaml (default: print the table only)",
    )
    p.set_defaults(run=_cmd_matching)

    p = sub.add_parser("cut-fidelity", help="relaxed cut vs exact min cut")
    _config_arguments(
        p, "cut_fidelity", "write PATH.json, PATH.md, PATH.png and PATH.config.yaml (default: print the tables only)"
    )
    p.set_defaults(run=_cmd_cut_fidelity)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as err:
        # Bad input of any kind: one clear line, no traceback.
        print(f"cutslots {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
