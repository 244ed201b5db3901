"""Benchmark of the grid cut QP engines (issue: differentiable QP core).

Times forward + backward of a batch of cut QPs (default 768 = 64 images x 12 partitions) on
H x H grids for:

- the exact closed form (``engine="closed_form"``), loss on ``p`` only (how ``KPartition``
  uses it) and on ``p`` and the edge variables ``d``;
- the paper's method, the generic sparse KKT layer (``engine="sparse"``) with SuperLU and,
  when scikit-sparse is installed, CHOLMOD; timed on ``--sparse-batch`` QPs and extrapolated
  linearly to the full batch (the solve is a multi-right-hand-side triangular solve, linear in
  the batch);
- on small grids, outside references: a dense float64 KKT solve (numpy) and qpth, if installed
  (it needs one dummy inequality for an equality-only QP).

Run as ``cutslots bench qp`` or ``python benchmarks/qp.py``. Writes
``benchmarks/results/qp.{json,md}`` (under the working directory) and prints the table with the speed-up ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cutslots.qp import GridCutQP, build_grid_cut_graph, cholmod_available
from cutslots.qp.factor import SuperLUFactor, WoodburyFactor

RESULTS = Path("benchmarks") / "results"  # relative to the working directory (the repo root)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocations, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fwd_bwd(qp: GridCutQP, weights: torch.Tensor, with_d: bool) -> Callable[[], None]:
    grad_p = torch.randn(weights.shape[0], weights.shape[2], weights.shape[3], dtype=weights.dtype)
    grad_d = torch.randn_like(weights)

    def run() -> None:
        w = weights.detach().requires_grad_(True)
        sol = qp(w)
        loss = (sol.p * grad_p).sum()
        if with_d:
            loss = loss + (sol.d * grad_d).sum()
        loss.backward()

    return run


def factor_nnz(qp: GridCutQP) -> int:
    factor = qp.qp.factorization.factor  # type: ignore[union-attr]
    base = factor.base if isinstance(factor, WoodburyFactor) else factor
    if isinstance(base, SuperLUFactor):
        return int(base.lu.L.nnz + base.lu.U.nnz)
    return int(base.factor.L().nnz)  # CHOLMOD


def dense_kkt_time(size: int, batch: int, repeats: int) -> float:
    g = build_grid_cut_graph(size, size)
    A = g.A.toarray()
    m, n = A.shape
    kkt = np.block([[np.eye(n), A.T], [A, np.zeros((m, m))]])
    rhs = np.random.default_rng(0).normal(size=(n + m, batch))
    # Forward and backward are one KKT solve each (same matrix, new right-hand sides).
    return median_time(lambda: (np.linalg.solve(kkt, rhs), np.linalg.solve(kkt, rhs)), repeats)


def qpth_time(size: int, batch: int, repeats: int) -> float | None:
    try:
        from qpth.qp import QPFunction, QPSolvers
    except ImportError:
        return None
    g = build_grid_cut_graph(size, size)
    A = torch.from_numpy(g.A.toarray())
    b = torch.from_numpy(g.b)
    n = A.shape[1]
    Q = torch.eye(n, dtype=torch.float64)
    G = torch.zeros(1, n, dtype=torch.float64)  # one dummy inequality 0 <= 1: qpth needs one
    h = torch.ones(1, dtype=torch.float64)
    c = torch.randn(batch, n, dtype=torch.float64)

    def run() -> None:
        cc = c.clone().requires_grad_(True)
        z = QPFunction(verbose=-1, solver=QPSolvers.PDIPM_BATCHED)(Q, cc, G, h, A, b)
        z.sum().backward()

    return median_time(run, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--batch", type=int, default=768, help="cut QPs per forward+backward")
    parser.add_argument("--sparse-batch", type=int, default=64, help="QPs actually timed on the sparse path")
    parser.add_argument("--reference-sizes", type=int, nargs="*", default=[8, 16])
    parser.add_argument("--reference-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "qp")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    device = torch.device(args.device)
    backends = ["scipy"] + (["cholmod"] if cholmod_available() else [])
    rows: list[dict[str, object]] = []

    for size in args.sizes:
        row: dict[str, object] = {"size": size, "batch": args.batch}
        w = torch.randn(args.batch, 6, size, size, device=device)
        closed = GridCutQP(size, size, gamma=1.0, engine="closed_form")
        row["closed_form_p_s"] = median_time(fwd_bwd(closed, w, with_d=False), args.repeats)
        row["closed_form_p_d_s"] = median_time(fwd_bwd(closed, w, with_d=True), args.repeats)
        print(f"{size}px closed form: {row['closed_form_p_s']:.3f} s (p), {row['closed_form_p_d_s']:.3f} s (p+d)", flush=True)
        if device.type == "cpu":
            ws = w[: args.sparse_batch].double()
            for backend in backends:
                start = time.perf_counter()
                sparse = GridCutQP(size, size, gamma=1.0, engine="sparse", backend=backend, cache_dir=False)
                row[f"{backend}_factor_s"] = time.perf_counter() - start
                row[f"{backend}_factor_nnz"] = factor_nnz(sparse)
                t = median_time(fwd_bwd(sparse, ws, with_d=True), max(1, args.repeats // 2))
                row[f"{backend}_s"] = t * args.batch / args.sparse_batch
                row[f"{backend}_ratio"] = row[f"{backend}_s"] / row["closed_form_p_d_s"]  # type: ignore[operator]
                print(
                    f"{size}px {backend}: factor {row[f'{backend}_factor_s']:.2f} s, "
                    f"{row[f'{backend}_factor_nnz']:,} nnz, fwd+bwd {row[f'{backend}_s']:.2f} s "
                    f"(extrapolated from {args.sparse_batch}), {row[f'{backend}_ratio']:.0f}x the closed form",
                    flush=True,
                )
        rows.append(row)

    refs: list[dict[str, object]] = []
    if device.type == "cpu":
        for size in args.reference_sizes:
            ref: dict[str, object] = {"size": size, "batch": args.reference_batch}
            w = torch.randn(args.reference_batch, 6, size, size, dtype=torch.float64)
            ref["closed_form_s"] = median_time(fwd_bwd(GridCutQP(size, size), w, True), args.repeats)
            ref["dense_kkt_s"] = dense_kkt_time(size, args.reference_batch, max(1, args.repeats // 2))
            ref["qpth_s"] = qpth_time(size, args.reference_batch, 1)
            refs.append(ref)
            print(f"{size}px references: {ref}", flush=True)

    by_size = {r["size"]: r for r in rows}
    growth = None
    if 64 in by_size and 128 in by_size:
        growth = {k: by_size[128][k] / by_size[64][k] for k in ("closed_form_p_s", "closed_form_p_d_s")}  # type: ignore[operator]
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "device": str(device),
        "date": time.strftime("%Y-%m-%d"),
    }
    result = {"meta": meta, "rows": rows, "references": refs, "growth_64_to_128": growth}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(render_markdown(result, backends))
    print(render_markdown(result, backends))
    return 0


def targets(result: dict) -> list[str]:
    """The issue's targets at 64 px, each with its measured value, for both read-outs."""
    row = next((r for r in result["rows"] if r["size"] == 64 and r["batch"] == 768), None)
    if row is None:
        return []
    lines = ["", "Targets (768 QPs at 64 x 64; loss on p only / on p and d):", "",
             "| target | p only | p and d |", "|---|---|---|"]

    def cell(value: float, ok: bool, unit: str = "x") -> str:
        return f"{value:.3g}{unit} {'met' if ok else 'missed'}"

    p, pd = row["closed_form_p_s"], row["closed_form_p_d_s"]
    lines.append(f"| closed form <= 0.25 s | {cell(p, p <= 0.25, ' s')} | {cell(pd, pd <= 0.25, ' s')} |")
    for backend, need in (("cholmod", 5), ("scipy", 50)):
        if f"{backend}_s" in row:
            a, b = row[f"{backend}_s"] / p, row[f"{backend}_s"] / pd
            lines.append(f"| >= {need}x faster than {backend} | {cell(a, a >= need)} | {cell(b, b >= need)} |")
    growth = result["growth_64_to_128"]
    if growth is not None:
        a, b = growth["closed_form_p_s"], growth["closed_form_p_d_s"]
        lines.append(f"| growth 64 -> 128 px <= 5x | {cell(a, a <= 5)} | {cell(b, b <= 5)} |")
    return lines


def render_markdown(result: dict, backends: list[str]) -> str:
    meta = result["meta"]
    lines = [
        "# Grid cut QP: forward + backward time",
        "",
        f"{meta['date']}, {meta['device']}, {meta['cpu_count']} cores, {meta['torch_threads']} torch threads, "
        f"torch {meta['torch']}. Median of repeated runs. Closed form in float32; sparse path in float64 "
        "(the solver computes in float64 whatever the input), timed on a smaller batch and extrapolated "
        "linearly to the full batch.",
        "",
    ]
    head = ["px", "QPs", "closed form (p) s", "closed form (p+d) s"]
    for b in backends:
        head += [f"{b} factor s", f"{b} factor nnz", f"{b} fwd+bwd s", f"{b} / closed(p+d)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [str(r["size"]), str(r["batch"]), f"{r['closed_form_p_s']:.3f}", f"{r['closed_form_p_d_s']:.3f}"]
        for b in backends:
            if f"{b}_s" in r:
                cells += [f"{r[f'{b}_factor_s']:.2f}", f"{r[f'{b}_factor_nnz']:,}", f"{r[f'{b}_s']:.2f}", f"{r[f'{b}_ratio']:.0f}x"]
            else:
                cells += ["-"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    lines += targets(result)
    if result["references"]:
        lines += ["", "Outside references on small grids (float64, fwd+bwd):", "",
                  "| px | QPs | closed form s | dense KKT (numpy) s | qpth s |", "|---|---|---|---|---|"]
        for r in result["references"]:
            qpth = "not installed" if r["qpth_s"] is None else f"{r['qpth_s']:.3f}"
            lines.append(f"| {r['size']} | {r['batch']} | {r['closed_form_s']:.4f} | {r['dense_kkt_s']:.3f} | {qpth} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
