"""Benchmark of the grid cut QP engines (issue: differentiable QP core).

Times forward + backward of a batch of cut QPs (default 768 = 64 images x 12 partitions) on
H x H grids for:

- the exact closed form (``engine="closed_form"``), output gradient on ``p`` only (how
  ``KPartition`` uses it) and on ``p`` and the edge variables ``d``. Each size runs in a fresh
  process, once with glibc's default malloc and once with freed memory kept in the heap
  (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``): with the defaults every page of the
  layer's large fresh outputs is faulted in and zeroed by the kernel, which is a large and
  machine-dependent share of the time;
- the paper's method, the generic sparse KKT layer (``engine="sparse"``) with SuperLU and,
  when scikit-sparse is installed, CHOLMOD; timed on ``sparse_batch`` QPs and extrapolated
  linearly to the full batch (the solve is a multi-right-hand-side triangular solve, linear in
  the batch);
- on small grids, outside references: a dense float64 KKT solve (numpy) and qpth, if installed
  (it needs one dummy inequality for an equality-only QP).

Settings: :class:`QPBenchConfig`. Run as ``cutslots bench qp --config bench_qp --out PATH``
(the committed results: ``--out benchmarks/results/qp``, as ``make bench`` and
``python benchmarks/qp.py`` pass it). Writes ``PATH.json``, ``PATH.md`` and ``PATH.config.yaml``
and prints the table with the speed-up ratios.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field, field_validator

from cutslots.config import Section, save_config
from cutslots.config.core import Tuple
from cutslots.qp import GridCutQP, build_grid_cut_graph, cholmod_available
from cutslots.qp.factor import Backend, CholmodFactor, SuperLUFactor, WoodburyFactor

PositiveInt = Annotated[int, Field(ge=1)]

# Process environments for the closed-form timings: glibc defaults, or freed memory kept.
ALLOCATORS: dict[str, dict[str, str]] = {
    "default": {},
    "kept": {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 36)},
}
_ALLOCATOR_VARS = ("MALLOC_", "THP_MEM_ALLOC_ENABLE")


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median over ``repeats`` calls after ``warmup`` untimed ones (until the heap has grown to
    its steady size, caches are filled and lazily built state exists)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fwd_bwd(qp: GridCutQP, weights: torch.Tensor, with_d: bool) -> Callable[[], None]:
    """One forward and backward of the layer, given fixed output gradients (no loss to compute:
    the timing is the layer's alone)."""
    B, _, H, W = weights.shape
    grads = [torch.randn(B, H, W, dtype=weights.dtype, device=weights.device)]
    if with_d:
        grads.append(torch.randn_like(weights))

    def run() -> None:
        w = weights.detach().requires_grad_(True)
        sol = qp(w)
        torch.autograd.backward([sol.p, sol.d] if with_d else [sol.p], grads)
        _synchronize(weights)

    return run


def first_touch(weights: torch.Tensor, with_d: bool) -> Callable[[], None]:
    """Allocate and write once fresh tensors the size of the layer's unavoidable new memory:
    ``p`` and the weight gradient (and ``d``). A floor for any implementation on this allocator."""
    B, _, H, W = weights.shape

    def run() -> None:
        weights.new_empty(B, H, W).fill_(1.0)
        weights.new_empty(B, 6, H, W).fill_(1.0)
        if with_d:
            weights.new_empty(B, 6, H, W).fill_(1.0)
        _synchronize(weights)

    return run


def _synchronize(x: torch.Tensor) -> None:
    """Wait for queued CUDA work, so that a wall-clock timing covers it."""
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def closed_form_timings(size: int, batch: int, repeats: int, device: str) -> dict[str, float]:
    """Closed-form timings at one grid size (run by :func:`in_fresh_process`)."""
    torch.manual_seed(size)
    w = torch.randn(batch, 6, size, size, device=device)
    closed = GridCutQP(size, size, gamma=1.0, engine="closed_form")
    return {
        "p_s": median_time(fwd_bwd(closed, w, with_d=False), repeats),
        "p_d_s": median_time(fwd_bwd(closed, w, with_d=True), repeats),
        "first_touch_p_s": median_time(first_touch(w, with_d=False), repeats),
        "first_touch_p_d_s": median_time(first_touch(w, with_d=True), repeats),
    }


def in_fresh_process(allocator: str, fn: Callable[..., dict[str, float]], *args: object) -> dict[str, float]:
    """``fn(*args)`` in a new interpreter with the allocator settings of ``ALLOCATORS[allocator]``
    (malloc reads them at start-up); a fresh heap also keeps one measurement's allocation
    history from shaping the next."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith(_ALLOCATOR_VARS)]:
        del os.environ[key]
    os.environ.update(ALLOCATORS[allocator])
    try:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(fn, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def factor_nnz(qp: GridCutQP) -> int:
    assert qp.qp is not None, "the sparse engine"
    factor = qp.qp.factorization.factor
    base = factor.base if isinstance(factor, WoodburyFactor) else factor
    if isinstance(base, SuperLUFactor):
        return int(base.lu.L.nnz + base.lu.U.nnz)
    assert isinstance(base, CholmodFactor), type(base)
    return int(base.factor.L().nnz)


def dense_kkt_time(size: int, batch: int, repeats: int) -> float:
    g = build_grid_cut_graph(size, size)
    A = g.A.toarray()
    m, n = A.shape
    kkt = np.block([[np.eye(n), A.T], [A, np.zeros((m, m))]])
    rhs = np.random.default_rng(0).normal(size=(n + m, batch))
    # Forward and backward are one KKT solve each (same matrix, new right-hand sides).
    return median_time(lambda: (np.linalg.solve(kkt, rhs), np.linalg.solve(kkt, rhs)), repeats, warmup=1)


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

    return median_time(run, repeats, warmup=0)


class QPBenchConfig(Section):
    """What is timed, and how often."""

    sizes: Annotated[Tuple[PositiveInt], Field(min_length=1)] = (32, 64, 128)  # grid side, px
    batch: PositiveInt = 768  # cut QPs per forward+backward (64 images x 12 partitions)
    sparse_batch: PositiveInt = 64  # QPs actually timed on the sparse path
    reference_sizes: Tuple[PositiveInt] = (8, 16)  # grids of the outside references (none: skip them)
    reference_batch: PositiveInt = 16
    repeats: PositiveInt = 11  # timed calls per measurement (median)
    rounds: PositiveInt = 3  # fresh-process rounds of the closed-form timings
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"; the sparse path and the references run on the CPU only
    kept_malloc: bool = True  # also time the closed form with freed memory kept (see ALLOCATORS)

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if re.fullmatch(r"cpu|cuda(:\d+)?", device) is None:
            raise ValueError(f"expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        return device

    @property
    def allocators(self) -> list[str]:
        return list(ALLOCATORS) if self.kept_malloc else ["default"]


def run_benchmark(config: QPBenchConfig, out: Path) -> str:
    """Run the benchmark; writes ``out.json``, ``out.md`` and ``out.config.yaml`` (the config that
    produced them) and returns the markdown."""
    torch.manual_seed(0)
    device = torch.device(config.device)
    backends: list[Backend] = ["scipy", "cholmod"] if cholmod_available() else ["scipy"]
    rounds = closed_form_rounds(config)
    rows = median_rows(rounds, config.sizes, config.batch)
    refs: list[dict[str, object]] = []
    if device.type == "cpu":  # the sparse engine and the references run on the CPU only
        for row in rows:
            time_sparse(row, backends, config)
        refs = reference_timings(config)
    result = {
        "meta": run_meta(config, device),
        "rows": rows,
        "references": refs,
        "growth_64_to_128": growth_64_to_128(rounds),
    }
    markdown = render_markdown(result, backends)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown)
    save_config(config, out.with_suffix(".config.yaml"))
    return markdown


def closed_form_rounds(config: QPBenchConfig) -> list[dict[int, dict[str, float]]]:
    """Closed-form timings of every size and allocator, ``config.rounds`` times: ``[round][size][key]``.

    Rounds interleave the sizes, so a slow drift of the machine's speed hits all of them alike."""
    rounds: list[dict[int, dict[str, float]]] = []
    for r in range(config.rounds):
        per_size: dict[int, dict[str, float]] = {}
        for size in config.sizes:
            cells: dict[str, float] = {}
            for allocator in config.allocators:
                t = in_fresh_process(allocator, closed_form_timings, size, config.batch, config.repeats, config.device)
                prefix = "closed_form" if allocator == "default" else allocator
                cells[f"{prefix}_p_s"], cells[f"{prefix}_p_d_s"] = t["p_s"], t["p_d_s"]
                if allocator == "default":
                    cells["first_touch_p_s"], cells["first_touch_p_d_s"] = t["first_touch_p_s"], t["first_touch_p_d_s"]
                print(
                    f"round {r + 1}, {size}px closed form, {allocator} malloc: "
                    f"{t['p_s']:.3f} s (p), {t['p_d_s']:.3f} s (p+d)",
                    flush=True,
                )
            per_size[size] = cells
        rounds.append(per_size)
    return rounds


def median_rows(rounds: list[dict[int, dict[str, float]]], sizes: Sequence[int], batch: int) -> list[dict[str, object]]:
    """One row per size: each cell the median over rounds, with its range."""
    rows: list[dict[str, object]] = []
    for size in sizes:
        row: dict[str, object] = {"size": size, "batch": batch}
        for key in rounds[0][size]:
            values = [rd[size][key] for rd in rounds]
            row[key], row[f"{key}_range"] = statistics.median(values), [min(values), max(values)]
        rows.append(row)
    return rows


def growth_64_to_128(rounds: list[dict[int, dict[str, float]]]) -> dict[str, float] | None:
    """Closed-form time ratio 128 px / 64 px, taken round by round (median), if both were run."""
    if not {64, 128} <= set(rounds[0]):
        return None
    return {k: statistics.median(rd[128][k] / rd[64][k] for rd in rounds) for k in rounds[0][64] if k in _CLOSED_KEYS}


def time_sparse(row: dict[str, object], backends: list[Backend], config: QPBenchConfig) -> None:
    """Add the sparse engine's factor time, factor size and fwd+bwd time per backend to ``row``,
    timed on ``config.sparse_batch`` QPs and extrapolated to ``config.batch``."""
    size = int(row["size"])  # type: ignore[call-overload]
    ws = torch.randn(config.sparse_batch, 6, size, size, dtype=torch.float64)
    for backend in backends:
        start = time.perf_counter()
        sparse = GridCutQP(size, size, gamma=1.0, engine="sparse", backend=backend, cache_dir=False)
        row[f"{backend}_factor_s"] = time.perf_counter() - start
        row[f"{backend}_factor_nnz"] = factor_nnz(sparse)
        t = median_time(fwd_bwd(sparse, ws, with_d=True), config.repeats)
        row[f"{backend}_s"] = t * config.batch / config.sparse_batch
        row[f"{backend}_ratio"] = row[f"{backend}_s"] / row["closed_form_p_d_s"]  # type: ignore[operator]
        print(
            f"{size}px {backend}: factor {row[f'{backend}_factor_s']:.2f} s, "
            f"{row[f'{backend}_factor_nnz']:,} nnz, fwd+bwd {row[f'{backend}_s']:.2f} s "
            f"(extrapolated from {config.sparse_batch}), {row[f'{backend}_ratio']:.0f}x the closed form",
            flush=True,
        )


def reference_timings(config: QPBenchConfig) -> list[dict[str, object]]:
    """Closed form, dense KKT and qpth on the small ``config.reference_sizes`` grids (float64)."""
    refs: list[dict[str, object]] = []
    for size in config.reference_sizes:
        ref: dict[str, object] = {"size": size, "batch": config.reference_batch}
        w = torch.randn(config.reference_batch, 6, size, size, dtype=torch.float64)
        ref["closed_form_s"] = median_time(fwd_bwd(GridCutQP(size, size), w, True), config.repeats)
        ref["dense_kkt_s"] = dense_kkt_time(size, config.reference_batch, max(1, config.repeats // 2))
        ref["qpth_s"] = qpth_time(size, config.reference_batch, 1)
        refs.append(ref)
        print(f"{size}px references: {ref}", flush=True)
    return refs


def run_meta(config: QPBenchConfig, device: torch.device) -> dict[str, object]:
    """Machine, versions and settings the timings were taken with."""
    return {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "device": str(device),
        "date": time.strftime("%Y-%m-%d"),
        "allocators": {a: ALLOCATORS[a] for a in config.allocators},
        "rounds": config.rounds,
        "sparse_allocator_env": {k: v for k, v in os.environ.items() if k.startswith(_ALLOCATOR_VARS)},
    }


# Closed-form timing keys of a row: (allocator label, read-out label, key).
_CLOSED = [
    ("default malloc", "p", "closed_form_p_s"),
    ("default malloc", "p+d", "closed_form_p_d_s"),
    ("memory kept", "p", "kept_p_s"),
    ("memory kept", "p+d", "kept_p_d_s"),
]
_CLOSED_KEYS = {key for _, _, key in _CLOSED}


def targets(result: dict) -> list[str]:
    """The issue's targets at 64 px, each with its measured value, per allocator and read-out."""
    row = next((r for r in result["rows"] if r["size"] == 64 and r["batch"] == 768), None)
    if row is None:
        return []
    cols = [(a, o, k) for a, o, k in _CLOSED if k in row]
    lines = [
        "",
        "Targets (768 QPs at 64 x 64):",
        "",
        "| target | " + " | ".join(f"{o}, {a}" for a, o, _ in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]

    def cell(value: float, ok: bool, unit: str = "x") -> str:
        return f"{value:.3g}{unit} {'met' if ok else 'missed'}"

    lines.append("| closed form <= 0.25 s | " + " | ".join(cell(row[k], row[k] <= 0.25, " s") for *_, k in cols) + " |")
    for backend, need in (("cholmod", 5), ("scipy", 50)):
        if f"{backend}_s" in row:
            ratios = [row[f"{backend}_s"] / row[k] for *_, k in cols]
            lines.append(
                f"| >= {need}x faster than {backend} | " + " | ".join(cell(x, x >= need) for x in ratios) + " |"
            )
    growth = result["growth_64_to_128"]
    if growth is not None:
        lines.append(
            "| growth 64 -> 128 px <= 5x | " + " | ".join(cell(growth[k], growth[k] <= 5) for *_, k in cols) + " |"
        )
    return lines


def _with_range(row: dict, key: str) -> str:
    if key not in row:
        return "-"
    low, high = row.get(f"{key}_range", (row[key], row[key]))
    return f"{row[key]:.3f} ({low:.3f}-{high:.3f})"


def render_markdown(result: dict, backends: Sequence[str]) -> str:
    meta = result["meta"]
    kept = ", ".join(f"{k}={v}" for k, v in ALLOCATORS["kept"].items())
    lines = [
        "# Grid cut QP: forward + backward time",
        "",
        f"{meta['date']}, {meta['device']}, {meta['cpu_count']} cores, {meta['torch_threads']} torch threads, "
        f"torch {meta['torch']}. Each time is one forward and one backward of the layer for fixed output "
        'gradients on p ("p") or on p and the edge variables d ("p+d"), median of repeated runs. '
        f"Closed form in float32, each size in a fresh process, {meta['rounds']} rounds over the sizes (median "
        "over rounds, range in brackets; the growth is the median of the rounds' ratios), with glibc's default "
        + (f"malloc and with freed memory kept in the heap ({kept})" if "kept" in meta["allocators"] else "malloc")
        + ". Sparse path in float64 (the solver computes in float64 whatever "
        "the input), timed on a smaller batch and extrapolated linearly to the full batch; its ratios are "
        "against the closed form's p+d time with the default malloc.",
        "",
    ]
    cols = [(a, o, k) for a, o, k in _CLOSED if any(k in r for r in result["rows"])]
    head = ["px", "QPs"] + [f"closed form {o} s ({a})" for a, o, _ in cols]
    for b in backends:
        head += [f"{b} factor s", f"{b} factor nnz", f"{b} fwd+bwd s", f"{b} / closed(p+d)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [str(r["size"]), str(r["batch"])] + [_with_range(r, k) for *_, k in cols]
        for b in backends:
            if f"{b}_s" in r:
                cells += [
                    f"{r[f'{b}_factor_s']:.2f}",
                    f"{r[f'{b}_factor_nnz']:,}",
                    f"{r[f'{b}_s']:.2f}",
                    f"{r[f'{b}_ratio']:.0f}x",
                ]
            else:
                cells += ["-"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    if all("first_touch_p_s" in r for r in result["rows"]):
        lines += [
            "",
            "Share of the closed form's time (default malloc) spent creating its outputs: allocating and "
            "first writing tensors the size of p, d and the weight gradient, whose pages the kernel faults "
            "in and zeroes:",
            "",
            "| px | p: closed form s | p: output creation s | p+d: closed form s | p+d: output creation s |",
            "|---|---|---|---|---|",
        ]
        for r in result["rows"]:
            lines.append(
                f"| {r['size']} | {r['closed_form_p_s']:.3f} | {r['first_touch_p_s']:.3f} "
                f"({100 * r['first_touch_p_s'] / r['closed_form_p_s']:.0f} %) | {r['closed_form_p_d_s']:.3f} | "
                f"{r['first_touch_p_d_s']:.3f} ({100 * r['first_touch_p_d_s'] / r['closed_form_p_d_s']:.0f} %) |"
            )
    lines += targets(result)
    if result["references"]:
        lines += [
            "",
            "Outside references on small grids (float64, fwd+bwd):",
            "",
            "| px | QPs | closed form s | dense KKT (numpy) s | qpth s |",
            "|---|---|---|---|---|",
        ]
        for r in result["references"]:
            qpth = "not installed" if r["qpth_s"] is None else f"{r['qpth_s']:.3f}"
            lines.append(f"| {r['size']} | {r['batch']} | {r['closed_form_s']:.4f} | {r['dense_kkt_s']:.3f} | {qpth} |")
    return "\n".join(lines) + "\n"
