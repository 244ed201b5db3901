"""RandomWalkerQP timing and CG iteration counts (``benchmarks/results/random_walker.{json,md}``).

Timing: forward + backward of ``batch`` images x ``labels`` unaries, for fixed output
gradients (the layer alone, no loss), median of ``repeats`` calls after 3 warm-ups, at every
size of ``sizes``: the CG engine (float32, the training dtype) against the sparse engine
(one SuperLU per image, CHOLMOD too where installed) in the same run. Inputs: 8 Voronoi
regions per image, edge weights ``strong`` inside a region and ``strong / contrast`` across
boundaries, unaries a softmax of Gaussian noise over the labels (a partition, like a CNN's).
Iterations: CG steps of the forward solve (the most any right-hand side of an image took;
mean and max over the batch) against the edge contrast, at 64 px, float32 and float64.

    python benchmarks/random_walker.py [key=value ...] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field

from cutslots.bench.qp import median_time
from cutslots.config import Section, to_dict, with_overrides
from cutslots.config.core import Tuple
from cutslots.qp import RandomWalkerQP, cholmod_available

RESULTS = Path(__file__).resolve().parent / "results" / "random_walker"


class RandomWalkerBenchConfig(Section):
    """What the benchmark runs; the defaults are the committed run's (the issue's setting)."""

    sizes: Tuple[Annotated[int, Field(ge=4)]] = (32, 64, 128)
    batch: Annotated[int, Field(ge=1)] = 64
    labels: Annotated[int, Field(ge=1)] = 12
    strong: Annotated[float, Field(gt=0)] = 1.0
    contrast: Annotated[float, Field(ge=1)] = 1e2  # of the timing inputs
    contrasts: Tuple[Annotated[float, Field(ge=1)]] = (1.0, 1e2, 1e4)  # of the iteration table
    strengths: Tuple[Annotated[float, Field(gt=0)]] = (1.0, 1e2, 1e4)
    repeats: Annotated[int, Field(ge=1)] = 5
    threads: Annotated[int, Field(ge=1)] = 2
    seed: Annotated[int, Field(ge=0)] = 0


def inputs(
    config: RandomWalkerBenchConfig, size: int, strong: float, contrast: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Voronoi-piecewise edge weights ``(B, 2, H, W)`` and softmax unaries ``(B, K, H, W)``."""
    gen = torch.Generator().manual_seed(config.seed)
    B, K = config.batch, config.labels
    pos = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij"), -1).double()  # (H, W, 2)
    seeds = torch.rand(B, 8, 2, generator=gen, dtype=torch.float64) * size  # (B, 8, 2)
    labels = ((pos[None, :, :, None] - seeds[:, None, None]) ** 2).sum(-1).argmin(-1)  # (B, H, W)
    same = torch.ones(B, 2, size, size, dtype=torch.bool)
    same[:, 0, :, :-1] = labels[:, :, :-1] == labels[:, :, 1:]
    same[:, 1, :-1] = labels[:, :-1] == labels[:, 1:]
    weights = torch.where(same, strong, strong / contrast)  # (B, 2, H, W)
    unaries = torch.softmax(torch.randn(B, K, size, size, generator=gen, dtype=torch.float64), dim=1)  # (B, K, H, W)
    return weights.to(dtype), unaries.to(dtype)


def fwd_bwd(layer: RandomWalkerQP, weights: torch.Tensor, unaries: torch.Tensor) -> Callable[[], None]:
    grad = torch.randn(unaries.shape, generator=torch.Generator().manual_seed(1), dtype=unaries.dtype)

    def run() -> None:
        w, u = weights.detach().requires_grad_(True), unaries.detach().requires_grad_(True)
        layer(w, u).backward(grad)

    return run


def timings(config: RandomWalkerBenchConfig) -> list[dict[str, Any]]:
    backends = ["scipy", "cholmod"] if cholmod_available() else ["scipy"]
    rows = []
    for size in config.sizes:
        w, u = inputs(config, size, config.strong, config.contrast, torch.float32)
        cg = RandomWalkerQP(size, size)
        row: dict[str, Any] = {"size": size, "cg_s": median_time(fwd_bwd(cg, w, u), config.repeats)}
        row["cg_iterations_forward"] = float(cg.stats.forward.iterations.double().mean())
        row["cg_iterations_adjoint"] = float(cg.stats.backward.iterations.double().mean())
        for backend in backends:
            sparse = RandomWalkerQP(size, size, engine="sparse", backend=backend)
            row[f"{backend}_s"] = median_time(fwd_bwd(sparse, w, u), max(1, config.repeats // 2), warmup=1)
            row[f"{backend}_ratio"] = row[f"{backend}_s"] / row["cg_s"]
        rows.append(row)
        print(row, flush=True)
    return rows


def iterations(config: RandomWalkerBenchConfig) -> list[dict[str, Any]]:
    rows = []
    for dtype in (torch.float32, torch.float64):
        for strong in config.strengths:
            for contrast in config.contrasts:
                w, u = inputs(config, 64, strong, contrast, dtype)
                layer = RandomWalkerQP(64, 64, on_nonconvergence="warn")
                layer(w, u)
                stats = layer.stats.forward
                assert stats is not None
                its = stats.iterations.double()
                rows.append(
                    {
                        "dtype": str(dtype).removeprefix("torch."),
                        "strong": strong,
                        "contrast": contrast,
                        "mean": float(its.mean()),
                        "max": int(its.max()),
                        "stalled": int(stats.stalled.sum()),
                        "worst_residual": float(stats.residual.max()),
                    }
                )
    return rows


def render(config: RandomWalkerBenchConfig, times: list[dict[str, Any]], its: list[dict[str, Any]]) -> str:
    backends = [b for b in ("scipy", "cholmod") if f"{b}_s" in times[0]]
    lines = [
        "# RandomWalkerQP: timing and CG iterations",
        "",
        f"{config.batch} images x K = {config.labels}, forward + backward, {config.threads} CPU threads, "
        f"median of {config.repeats}; CG in float32 (tol 1e-4), the sparse engine in float64 (one "
        f"factorization per image). Inputs: 8 Voronoi regions, weights {config.strong:g} inside, "
        f"contrast {config.contrast:g} across boundaries; softmax unaries.",
        "",
        "| size | CG (s) | CG iterations fwd / adjoint | " + " | ".join(f"{b} (s) | {b} / CG" for b in backends) + " |",
        "| --- " * (3 + 2 * len(backends)) + "|",
    ]
    for r in times:
        cells = " | ".join(f"{r[f'{b}_s']:.3f} | {r[f'{b}_ratio']:.1f}x" for b in backends)
        lines.append(
            f"| {r['size']} | {r['cg_s']:.3f} | {r['cg_iterations_forward']:.1f} / "
            f"{r['cg_iterations_adjoint']:.1f} | {cells} |"
        )
    lines += [
        "",
        "CG forward iterations at 64 px (mean / max over the batch; tol 1e-4 float32, 1e-8 float64):",
        "",
        "| dtype | strong | contrast | iterations | stalled images | worst residual |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in its:
        lines.append(
            f"| {r['dtype']} | {r['strong']:g} | {r['contrast']:g} | {r['mean']:.1f} / {r['max']} | "
            f"{r['stalled']} | {r['worst_residual']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS, help="writes OUT.json and OUT.md")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of RandomWalkerBenchConfig")
    cli = parser.parse_args(argv)
    config = with_overrides({}, cli.overrides, schema=RandomWalkerBenchConfig, source="benchmarks/random_walker.py")
    torch.set_num_threads(config.threads)
    times, its = timings(config), iterations(config)
    text = render(config, times, its)
    cli.out.parent.mkdir(parents=True, exist_ok=True)
    cli.out.with_suffix(".json").write_text(
        json.dumps({"config": to_dict(config), "timings": times, "iterations": its}, indent=1)
    )
    cli.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
