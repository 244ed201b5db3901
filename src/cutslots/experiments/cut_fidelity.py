"""How close is the relaxed grid cut QP to the exact s-t min cut? (PyMaxflow as the oracle.)

Problem: Boykov-Jolly interactive segmentation of scikit-image photographs (centre-cropped
to a square, resized to ``size`` px). Seeds are placed deterministically: a centre box
(side ``size // 4``) is foreground, a border frame (width ``max(1, size // 32)``) background.

Capacities, in the channel order of :data:`cutslots.qp.EDGE_CHANNELS` (``weights: (6, H, W)``):

- pairwise ``w_uv = lam * exp(-beta |I_u - I_v|^2)`` with ``beta = 1 / (2 E|I_u - I_v|^2)``
  over all neighbour pairs, the same capacity in both directions (``right`` at (i, j) and
  ``left`` at (i, j+1) are one pair);
- ``source`` (s -> v, paid when v ends on the background side) = ``-log P(I_v | background)``,
  ``sink`` (v -> t, paid when v ends on the foreground side) = ``-log P(I_v | foreground)``,
  colour models = Laplace-smoothed ``bins^C`` histograms of the seed pixels;
- hard seeds: ``K = 1 + max_v sum of v's pairwise capacities`` on the seed's own terminal
  edge, 0 on the other (Boykov & Jolly 2001).

The cut QP uses these capacities as its edge weights unchanged: an edge ``u -> v`` with
weight ``w`` costs ``w d_e`` and ``d_e = 1`` exactly when ``u`` is on the source side and
``v`` on the sink side, which is the directed cut capacity max-flow counts. A pixel is put
on the source (foreground) side when ``p > (p_s + p_t) / 2`` ("mid"), or by the level set
``{p > tau}`` of lowest cut value over all ``tau`` ("sweep"). For the ``"released"`` form
(neighbour edges leave interior pixels only) the relaxation sees fewer pairwise edges, but
its segmentation is scored on the full graph like every other.

Measured per (image, size, form, gamma, lambda): pixel agreement and foreground IoU with
the exact cut, the ratio of the thresholded segmentation's cut value to the min cut (>= 1),
and ``soft_l1``, the mean ``|clip((p - p_t) / (p_s - p_t), 0, 1) - exact|`` (only when
``p_s > p_t``). As a baseline, the same scores for the unary-only labelling
``source > sink`` (``*_unary``): what the relaxation must beat to have used the pairwise terms.

Settings: :class:`CutFidelityConfig` (``configs/cut_fidelity.yaml``: the committed run), run by
:func:`run_experiment`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
import torch
from pydantic import Field

from cutslots.config import Section, save_config, to_dict
from cutslots.config.core import Tuple
from cutslots.plots import cut_fidelity_figure, random_walker_fidelity_figure, save_figure
from cutslots.qp import GridCutQP, RandomWalkerQP
from cutslots.qp.grid_graph import CutForm

Photo = Literal["coffee", "astronaut", "camera", "chelsea"]
IMAGES: tuple[Photo, ...] = get_args(Photo)
_OFFSETS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # right, left, down, up


class CutFidelityConfig(Section):
    """The sweep: every (image, size, form, gamma, lambda) is one comparison."""

    images: Annotated[Tuple[Photo], Field(min_length=1)] = IMAGES  # scikit-image photos
    sizes: Annotated[Tuple[Annotated[int, Field(ge=4)]], Field(min_length=1)] = (32, 64, 128)  # px
    # QP gamma, convention 1/2 gamma |z|^2; the first is the gamma of the main table and figure.
    gammas: Annotated[Tuple[Annotated[float, Field(gt=0)]], Field(min_length=1)] = (0.1, 1.0, 10.0)
    lambdas: Annotated[Tuple[Annotated[float, Field(ge=0)]], Field(min_length=1)] = (0.0, 1.0, 4.0, 16.0)
    forms: Annotated[Tuple[CutForm], Field(min_length=1)] = ("paper", "released")
    bins: Annotated[int, Field(ge=1)] = 8  # colour histogram bins per channel
    # The random walker on the same problems: IRLS steps (0: the plain quadratic relaxation) and
    # floors eps of the reweighting (cutslots.qp.random_walker_irls).
    irls_iterations: Tuple[Annotated[int, Field(ge=0)]] = (0, 2, 4, 8, 16)
    irls_eps: Tuple[Annotated[float, Field(gt=0, le=1)]] = (0.05, 0.01)


def load_photo(name: str, size: int) -> np.ndarray:
    """scikit-image photo ``name``, centre square crop resized to ``(size, size, C)`` in [0, 1]."""
    import skimage.data
    from skimage.transform import resize
    from skimage.util import img_as_float64

    if name not in IMAGES:
        raise ValueError(f"image must be one of {IMAGES}, got {name!r}")
    if not isinstance(size, int) or size < 4:
        raise ValueError(f"size must be an integer >= 4, got {size!r}")
    img = img_as_float64(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    s = min(h, w)
    crop = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return np.clip(resize(crop, (size, size), order=1, anti_aliasing=True), 0.0, 1.0)


def seed_masks(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Foreground (centre box) and background (border frame) seeds: two ``(size, size)`` bools."""
    box, border = max(1, size // 4), max(1, size // 32)
    fg = np.zeros((size, size), dtype=bool)
    lo = (size - box) // 2
    fg[lo : lo + box, lo : lo + box] = True
    bg = np.ones((size, size), dtype=bool)
    bg[border:-border, border:-border] = False
    return fg, bg


def colour_costs(image: np.ndarray, fg: np.ndarray, bg: np.ndarray, bins: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``-log P(I | foreground)``, ``-log P(I | background)``: two ``(H, W)`` arrays from
    Laplace-smoothed ``bins^C`` colour histograms of the seeds. ``image: (H, W, C)`` in [0, 1]."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    q = np.minimum((image * bins).astype(np.int64), bins - 1)
    code = (q * bins ** np.arange(image.shape[2])).sum(-1)
    costs = []
    for seeds in (fg, bg):
        if not seeds.any():
            raise ValueError("each seed mask needs at least one pixel")
        hist = np.bincount(code[seeds], minlength=bins ** image.shape[2]) + 1.0
        costs.append(-np.log(hist / hist.sum())[code])
    return costs[0], costs[1]


def boykov_jolly_weights(
    image: np.ndarray, fg: np.ndarray, bg: np.ndarray, lam: float, bins: int = 8
) -> tuple[np.ndarray, float]:
    """Capacities ``(6, H, W)`` of the interactive segmentation graph (module docstring) and beta."""
    if image.ndim != 3 or fg.shape != image.shape[:2] or bg.shape != image.shape[:2]:
        raise ValueError(f"image must be (H, W, C) and seeds (H, W); got {image.shape}, {fg.shape}, {bg.shape}")
    if (fg & bg).any():
        raise ValueError("foreground and background seeds overlap")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    d_right = ((image[:, 1:] - image[:, :-1]) ** 2).sum(-1)  # (H, W-1)
    d_down = ((image[1:] - image[:-1]) ** 2).sum(-1)  # (H-1, W)
    mean_sq = np.concatenate([d_right.ravel(), d_down.ravel()]).mean()
    beta = 0.5 / mean_sq if mean_sq > 0 else 0.0
    w = np.zeros((6, *image.shape[:2]))
    w[0, :, :-1] = w[1, :, 1:] = lam * np.exp(-beta * d_right)
    w[2, :-1, :] = w[3, 1:, :] = lam * np.exp(-beta * d_down)
    cost_fg, cost_bg = colour_costs(image, fg, bg, bins)
    k = 1.0 + w[:4].sum(0).max()
    w[4] = np.where(fg, k, np.where(bg, 0.0, cost_bg))
    w[5] = np.where(bg, k, np.where(fg, 0.0, cost_fg))
    return w, float(beta)


def cut_value(weights: np.ndarray, source_side: np.ndarray) -> float:
    """Capacity of the directed cut: edges from the source side to the sink side.

    ``weights: (6, H, W)`` (neighbour weights pointing off the grid are ignored),
    ``source_side: (H, W)`` bool.
    """
    s, t = source_side, ~source_side
    total = weights[4][t].sum() + weights[5][s].sum()
    total += (weights[0, :, :-1] * (s[:, :-1] & t[:, 1:])).sum()
    total += (weights[1, :, 1:] * (s[:, 1:] & t[:, :-1])).sum()
    total += (weights[2, :-1] * (s[:-1] & t[1:])).sum()
    total += (weights[3, 1:] * (s[1:] & t[:-1])).sum()
    return float(total)


def exact_min_cut(weights: np.ndarray) -> tuple[np.ndarray, float]:
    """PyMaxflow min cut of the grid graph: source side ``(H, W)`` bool and the max-flow value."""
    import maxflow

    if weights.ndim != 3 or weights.shape[0] != 6 or (weights < 0).any():
        raise ValueError(f"weights must be non-negative capacities of shape (6, H, W), got {weights.shape}")
    g = maxflow.Graph[float]()
    ids = g.add_grid_nodes(weights.shape[1:])
    for ch, (di, dj) in enumerate(_OFFSETS):
        structure = np.zeros((3, 3))
        structure[1 + di, 1 + dj] = 1.0
        g.add_grid_edges(ids, weights=weights[ch], structure=structure, symmetric=False)
    g.add_grid_tedges(ids, weights[4], weights[5])
    flow = g.maxflow()
    return ~g.get_grid_segments(ids), float(flow)


def sweep_cut(weights: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut values of every level set ``{score > tau}``: ``(thresholds (K+1,), values (K+1,))``.

    ``tau`` runs over ``-inf`` and the K distinct scores. Each capacity is paid on an interval
    of ``tau`` (``u -> v`` when ``score_v <= tau < score_u``), so one difference array gives all
    values in O(N log N).
    """
    levels = np.unique(score)
    k = levels.size

    def idx(x: np.ndarray) -> np.ndarray:  # first threshold index with tau >= x
        return np.searchsorted(levels, x) + 1

    diff = np.zeros(k + 2)

    def pay(lo: np.ndarray, hi: np.ndarray, w: np.ndarray) -> None:
        np.add.at(diff, lo, w)
        np.add.at(diff, hi, -w)

    at = idx(score.ravel())
    pay(at, np.full_like(at, k + 1), weights[4].ravel())  # s -> v: v on the sink side
    pay(np.zeros_like(at), at, weights[5].ravel())  # v -> t: v on the source side
    for ch, (di, dj) in enumerate(_OFFSETS):
        h, w = score.shape
        src = score[max(0, -di) : h - max(0, di), max(0, -dj) : w - max(0, dj)]
        dst = score[max(0, di) : h - max(0, -di), max(0, dj) : w - max(0, -dj)]
        cap = weights[ch, max(0, -di) : h - max(0, di), max(0, -dj) : w - max(0, dj)]
        lo, hi = idx(dst.ravel()), idx(src.ravel())
        keep = hi > lo
        pay(lo[keep], hi[keep], cap.ravel()[keep])
    return np.concatenate([[-np.inf], levels]), np.cumsum(diff)[: k + 1]


def _segmentation_scores(weights: np.ndarray, exact: np.ndarray, min_cut: float, seg: np.ndarray) -> dict[str, float]:
    value = cut_value(weights, seg)
    if value < min_cut * (1 - 1e-9) - 1e-9:
        raise RuntimeError(f"a segmentation cuts {value} < the min cut {min_cut}: the max-flow graph is wrong")
    union = (seg | exact).sum()
    return {
        "agreement": float((seg == exact).mean()),
        "iou": float((seg & exact).sum() / union) if union else 1.0,
        "cut_ratio": value / min_cut,
        "fg_fraction": float(seg.mean()),
    }


def compare(
    weights: np.ndarray, exact: np.ndarray, min_cut: float, p: np.ndarray, p_s: float, p_t: float
) -> dict[str, float | None]:
    """Scores of the relaxed solution ``p: (H, W)`` against the exact cut (module docstring)."""
    mid = _segmentation_scores(weights, exact, min_cut, p > (p_s + p_t) / 2)
    thresholds, values = sweep_cut(weights, p)
    sweep = _segmentation_scores(weights, exact, min_cut, p > thresholds[np.argmin(values)])
    out: dict[str, float | None] = {f"{k}_mid": v for k, v in mid.items()}
    out.update({f"{k}_sweep": v for k, v in sweep.items()})
    # The soft map only means "fraction of the way to the source" when p_s > p_t, which the
    # paper form does not guarantee (docs/cut-fidelity.md): None there.
    out["soft_l1"] = float(np.abs(np.clip((p - p_t) / (p_s - p_t), 0, 1) - exact).mean()) if p_s > p_t else None
    out["p_s_minus_p_t"] = float(p_s - p_t)
    return out


Case = tuple[str, float, np.ndarray, float, np.ndarray, float, float, np.ndarray]


def _cases(size: int, images: Sequence[str], lambdas: Sequence[float], bins: int) -> list[Case]:
    """(image, lambda, weights (6, H, W), beta, exact cut, its value, max-flow value, photo)."""
    fg, bg = seed_masks(size)
    cases = []
    for name in images:
        photo = load_photo(name, size)
        for lam in lambdas:
            w, beta = boykov_jolly_weights(photo, fg, bg, lam, bins)
            exact, flow = exact_min_cut(w)
            cases.append((name, lam, w, beta, exact, cut_value(w, exact), flow, photo))
    return cases


def _relaxed_records(
    cases: list[Case], size: int, form: CutForm, gamma: float
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, np.ndarray]:
    """The paper's relaxation on every case: its records, ``p: (B, H, W)``, ``p_s, p_t: (B,)``."""
    sol = GridCutQP(size, size, gamma, form=form, cache_dir=False)(torch.from_numpy(np.stack([c[2] for c in cases])))
    p, p_s, p_t = sol.p.numpy(), sol.p_s.numpy(), sol.p_t.numpy()
    records = []
    for b, (name, lam, w, beta, exact, min_cut, flow, _) in enumerate(cases):
        rec = {"image": name, "size": size, "form": form, "gamma": gamma, "lambda": lam, "beta": beta}
        rec.update({"min_cut": min_cut, "max_flow": flow, "fg_fraction_exact": float(exact.mean())})
        rec.update(compare(w, exact, min_cut, p[b], float(p_s[b]), float(p_t[b])))
        unary = _segmentation_scores(w, exact, min_cut, w[4] > w[5])
        rec.update({f"{k}_unary": v for k, v in unary.items() if k != "fg_fraction"})
        records.append(rec)
    return records, p, p_s, p_t


def run_cut_fidelity(config: CutFidelityConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """All comparisons: the paper's relaxation's records, the random walker's, and the figure's
    panels (every image at the size closest to 64, the middle lambda, ``gammas[0]``, paper form;
    beside them the plain random walker and IRLS with the most steps and the last eps)."""
    records: list[dict[str, Any]] = []
    walker: list[dict[str, Any]] = []
    fig_size = min(config.sizes, key=lambda s: abs(s - 64))
    fig_lam = sorted(config.lambdas)[len(config.lambdas) // 2]
    figure: dict[str, Any] = {"size": fig_size, "lambda": fig_lam, "gamma": config.gammas[0], "panels": []}
    for size in config.sizes:
        cases = _cases(size, config.images, config.lambdas, config.bins)
        for form in config.forms:
            for gamma in config.gammas:
                rs, p, p_s, p_t = _relaxed_records(cases, size, form, gamma)
                records += rs
                if (size, form, gamma) == (fig_size, "paper", config.gammas[0]):
                    figure["panels"] = _panels(cases, fig_lam, p, p_s, p_t)
        rw_records, solutions = run_random_walker(
            [(c[0], c[1], c[2], c[4], c[5]) for c in cases], size, config.irls_iterations, config.irls_eps
        )
        walker += rw_records
        if size == fig_size:
            plain = solutions[(0, config.irls_eps[0])] if 0 in config.irls_iterations else None
            best = solutions[(max(config.irls_iterations), config.irls_eps[-1])]
            figure["walker"] = {
                "iterations": max(config.irls_iterations),
                "eps": config.irls_eps[-1],
                "panels": [
                    (c[0], None if plain is None else plain[b], best[b]) for b, c in enumerate(cases) if c[1] == fig_lam
                ],
            }
    return records, walker, figure


def _panels(cases: list[Case], lam: float, p: np.ndarray, p_s: np.ndarray, p_t: np.ndarray) -> list[tuple]:
    """The figure's row of each case at ``lam`` (see :func:`cutslots.plots.cut_fidelity_figure`)."""
    panels = []
    for b, (name, case_lam, w, _, exact, _, _, photo) in enumerate(cases):
        if case_lam == lam:
            thresholds, values = sweep_cut(w, p[b])
            sweep_seg = p[b] > thresholds[np.argmin(values)]
            free = ~np.logical_or(*seed_masks(w.shape[-1]))
            panels.append((name, photo, exact, p[b], float(p_s[b]), float(p_t[b]), sweep_seg, free))
    return panels


def random_walker_inputs(weights: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The Boykov-Jolly problems ``weights: (B, 6, H, W)`` as random-walker inputs: edges
    ``(B, 2, H, W)`` (right, down: the capacities are symmetric) and unaries ``(B, 2, H, W)``
    ``[source, sink]``, so ``x_0`` is the foreground: ``u_fg (x - 1)^2 + u_bg x^2`` is the
    terminal cost ``source (1 - x) + sink x`` of a binary ``x``, squared."""
    w = torch.from_numpy(weights)
    return w[:, [0, 2]].contiguous(), w[:, [4, 5]].contiguous()


def run_random_walker(
    cases: Sequence[tuple[str, float, np.ndarray, np.ndarray, float]],
    size: int,
    iterations: Sequence[int],
    eps_values: Sequence[float],
) -> tuple[list[dict[str, Any]], dict[tuple[int, float], np.ndarray]]:
    """Random walker and IRLS (CG engine, float64) on ``cases`` of (image, lambda, weights,
    exact cut, min cut): IoU, agreement and cut ratio of ``x_fg > 1/2`` and of its best level
    set, per (iterations, eps); and each setting's foreground ``x: (B, H, W)``."""
    edges, unaries = random_walker_inputs(np.stack([c[2] for c in cases]))
    records = []
    solutions: dict[tuple[int, float], np.ndarray] = {}
    for eps in eps_values:
        for steps in iterations:
            if steps == 0 and eps != eps_values[0]:
                continue  # the plain solve does not depend on eps
            layer = RandomWalkerQP(size, size, mode="irls", iterations=steps, eps=eps)
            x = solutions[(steps, eps)] = layer(edges, unaries)[:, 0].numpy()  # (B, H, W) foreground
            for b, (name, lam, w, exact, min_cut) in enumerate(cases):
                rec: dict[str, Any] = {"image": name, "size": size, "lambda": lam, "iterations": steps, "eps": eps}
                mid = _segmentation_scores(w, exact, min_cut, x[b] > 0.5)
                thresholds, values = sweep_cut(w, x[b])
                sweep = _segmentation_scores(w, exact, min_cut, x[b] > thresholds[np.argmin(values)])
                rec.update({f"{k}_mid": v for k, v in mid.items()})
                rec.update({f"{k}_sweep": v for k, v in sweep.items()})
                records.append(rec)
    return records, solutions


def _mean(records: list[dict[str, Any]], key: str, fmt: str = ".3f") -> str:
    values = [r[key] for r in records if r[key] is not None]
    return format(float(np.mean(values)), fmt) if values else "-"


def format_tables(records: list[dict[str, Any]], gamma: float) -> str:
    """Markdown: per (form, size, lambda) at ``gamma``, then the gamma sweep; means over images."""
    cols = (
        "fg_fraction_exact",
        "fg_fraction_mid",
        "agreement_mid",
        "iou_mid",
        "cut_ratio_mid",
        "fg_fraction_sweep",
        "agreement_sweep",
        "iou_sweep",
        "cut_ratio_sweep",
        "agreement_unary",
        "cut_ratio_unary",
    )
    lines = [
        f"### Relaxed vs exact cut at gamma = {gamma:g} (mean over {len({r['image'] for r in records})} images)",
        "",
        "| form | size | lambda | " + " | ".join(cols) + " |",
        "| --- " * (3 + len(cols)) + "|",
    ]
    for form, size, lam in sorted({(r["form"], r["size"], r["lambda"]) for r in records}):
        rs = [r for r in records if (r["form"], r["size"], r["lambda"], r["gamma"]) == (form, size, lam, gamma)]
        lines.append(f"| {form} | {size} | {lam:g} | " + " | ".join(_mean(rs, c) for c in cols) + " |")
    lines += [
        "",
        "### Gamma sweep (mean over images and lambdas)",
        "",
        "| form | size | gamma | agreement_mid | cut_ratio_mid | agreement_sweep | cut_ratio_sweep | soft_l1 "
        "| p_s - p_t |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for form, size, g in sorted({(r["form"], r["size"], r["gamma"]) for r in records}):
        rs = [r for r in records if (r["form"], r["size"], r["gamma"]) == (form, size, g)]
        keys = ("agreement_mid", "cut_ratio_mid", "agreement_sweep", "cut_ratio_sweep", "soft_l1")
        vals = " | ".join(_mean(rs, k, ".4f") for k in keys)
        lines.append(f"| {form} | {size} | {g:g} | {vals} | {_mean(rs, 'p_s_minus_p_t', '.3g')} |")
    return "\n".join(lines)


def format_walker_tables(walker: list[dict[str, Any]], records: list[dict[str, Any]], gamma: float) -> str:
    """Markdown: foreground IoU with the exact cut of the random walker and IRLS (``x_fg > 1/2``
    / best level set) per (size, lambda), beside the paper relaxation's best level set at
    ``gamma`` (paper form); means over images. One table per eps."""
    steps = sorted({r["iterations"] for r in walker})
    lines = []
    for eps in sorted({r["eps"] for r in walker if r["iterations"] > 0}, reverse=True) or [None]:
        heads = [("plain RW" if n == 0 else f"IRLS {n}") for n in steps]
        lines += [
            f"### Random walker and IRLS (eps = {eps:g}) vs the exact cut: foreground IoU, x > 1/2 / best level set"
            if eps is not None
            else "### Random walker vs the exact cut: foreground IoU, x > 1/2 / best level set",
            "",
            f"| size | lambda | paper relaxation, best level set (gamma {gamma:g}) | " + " | ".join(heads) + " |",
            "| --- " * (3 + len(steps)) + "|",
        ]
        for size, lam in sorted({(r["size"], r["lambda"]) for r in walker}):
            paper = [
                r for r in records if (r["size"], r["lambda"], r["gamma"], r["form"]) == (size, lam, gamma, "paper")
            ]
            cells = []
            for n in steps:
                rs = [
                    r
                    for r in walker
                    if (r["size"], r["lambda"], r["iterations"]) == (size, lam, n) and (n == 0 or r["eps"] == eps)
                ]
                cells.append(f"{_mean(rs, 'iou_mid')} / {_mean(rs, 'iou_sweep')}")
            lines.append(f"| {size} | {lam:g} | {_mean(paper, 'iou_sweep')} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def run_experiment(config: CutFidelityConfig, out: Path | None = None) -> str:
    """The comparison of ``config``; returns the tables. With ``out``, writes ``<out>.json``,
    ``<out>.md``, ``<out>.png`` (the paper's relaxation), ``<out>_random_walker.png`` and
    ``<out>.config.yaml`` (the config that produced them)."""
    start = time.time()
    records, walker, figure = run_cut_fidelity(config)
    tables = format_tables(records, config.gammas[0]) + "\n\n" + format_walker_tables(walker, records, config.gammas[0])
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "config": to_dict(config),
            "seconds": round(time.time() - start, 1),
            "records": records,
            "random_walker": walker,
        }
        Path(f"{out}.json").write_text(json.dumps(report, indent=1))
        Path(f"{out}.md").write_text(tables)
        save_config(config, f"{out}.config.yaml")
        if figure["panels"]:  # the figure shows the paper form
            save_figure(cut_fidelity_figure(figure), Path(f"{out}.png"), dpi=80)
            save_figure(random_walker_fidelity_figure(figure), Path(f"{out}_random_walker.png"), dpi=80)
    return tables
