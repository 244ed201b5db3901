"""Decision-focused bipartite matching on Cora (Wilder, Dilkina & Tambe 2019; paper §6.2).

A network scores every left/right node pair of an instance from the concatenated
bag-of-words of the two papers (Linear(2F, 500)-ReLU-Linear(500, 1)); the decision is the
maximum-value matching under the predicted values, and it is judged by how many true
citations it matches.

- Two-stage: binary cross-entropy on the edge labels, Adam 1e-3, 2 epochs, minibatches of
  100 edges drawn from each training instance (Wilder et al.'s code).
- Decision-focused: the relaxed matching QP :class:`cutslots.qp.MatchingQP` (form
  ``"assignment"``: row and column sums plus a slack equal 1, i.e. "at most one") with costs
  ``-sigmoid(net)``; loss ``-c_true . x*``; Adam 1e-4, 12 epochs, one instance per step, gamma
  0.1 multiplied by 0.8 after every epoch.
- Evaluation: the true LP ``max sum p_ij x_ij`` s.t. row/column sums <= 1, 0 <= x <= 1 with
  the predicted values ``p = sigmoid(net)`` (SciPy HiGHS); the score is ``c_true . x``.

Gamma convention: this package's ``1/2 gamma |z|^2``. Wilder et al. pass ``Q = gamma I`` to
qpth, which minimises ``1/2 z'Qz + p'z``, so their gamma 0.1 is this gamma 0.1 (the paper's
``gamma sum z^2`` would call it 0.05). Without ``x >= 0`` the QP's solution is affine in the
costs, ``x* = x0 - P c / gamma`` (P projects onto the constraints' null space), so the loss
gradient with respect to the costs is ``P c_true / gamma``: gamma only rescales it, which
Adam largely undoes.

The network's first layer is applied to all ``side x side`` concatenations at once by
splitting its weight into the left and right halves (``W [a; b] = W_l a + W_r b``): the same
function as on explicit edge features, without materialising ``(2500, 2866)`` per instance.

Settings: :class:`CoraMatchingConfig` (``configs/cora_matching.yaml``: real Cora;
``configs/cora_synthetic.yaml``: the committed synthetic run), run by :func:`run_experiment`.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Discriminator, Field, Tag, model_validator
from scipy.optimize import linprog

from cutslots.config import ConfigError, Section, save_config, to_dict
from cutslots.data.cora import CitationGraph, read_cora, write_synthetic_cora
from cutslots.experiments.cora_graph import MatchingInstances, build_matching_instances
from cutslots.qp import MatchingQP

PAPER_REFERENCE = {
    "Pervez et al. 2023 (QP layer)": (7.01, 1.15),
    "Wilder et al. 2019 (decision-focused)": (6.15, 0.38),
}
METHODS = ("two_stage", "decision_focused", "random", "optimal")

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
LearningRate = Annotated[float, Field(ge=0)]  # what torch's Adam accepts


class CoraDataConfig(Section):
    """Cora on disk, in the LINQS (``cora.content``, ``cora.cites``) or Planetoid (``ind.cora.*``) format."""

    kind: Literal["cora"] = "cora"
    root: Annotated[str, Field(min_length=1)]  # its folder; required, as nothing is downloaded
    format: Literal["auto", "linqs", "planetoid"] = "auto"


class SyntheticCoraConfig(Section):
    """A Cora-like graph from ``seed``, written as LINQS files and read back by the same reader."""

    kind: Literal["synthetic"] = "synthetic"
    num_nodes: Annotated[int, Field(ge=2)] = 2708


def _data_kind(value: Any) -> str:
    """The tag of a data section; one without ``kind`` is real Cora, the paper's data."""
    return str(value.get("kind", "cora")) if isinstance(value, dict) else str(getattr(value, "kind", ""))


DataSource = Annotated[
    Annotated[CoraDataConfig, Tag("cora")] | Annotated[SyntheticCoraConfig, Tag("synthetic")], Discriminator(_data_kind)
]


class InstancesConfig(Section):
    """How the graph becomes matching instances (:func:`build_matching_instances`)."""

    num_parts: PositiveInt = 27  # one instance per part
    side: PositiveInt = 50  # nodes per side of an instance
    split: Literal["maxcut", "random"] = "maxcut"  # how a part is split into sides


class TwoStageConfig(Section):
    """The two-stage network: BCE on the edge labels, minibatches of 100 edges (Wilder et al.)."""

    epochs: NonNegativeInt = 2
    lr: LearningRate = 1e-3


class DecisionFocusedConfig(Section):
    """The network trained through the relaxed matching QP, one instance a step."""

    epochs: NonNegativeInt = 12
    lr: LearningRate = 1e-4
    gamma: Annotated[float, Field(gt=0)] = 0.1  # QP gamma, convention 1/2 gamma |z|^2
    gamma_decay: Annotated[float, Field(gt=0, le=1)] = 0.8  # gamma multiplier after every epoch


class TrainingConfig(Section):
    """Repeated random train/test splits, each training fresh networks of width ``hidden``."""

    repeats: PositiveInt = 30
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    hidden: PositiveInt = 500
    two_stage: TwoStageConfig = Field(default_factory=TwoStageConfig)
    decision_focused: DecisionFocusedConfig = Field(default_factory=DecisionFocusedConfig)


class CoraMatchingConfig(Section):
    """The whole experiment; the defaults are the published settings (real Cora, 30 repeats)."""

    data: DataSource  # no default: a config says which graph it uses
    instances: InstancesConfig = Field(default_factory=InstancesConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0  # synthetic graph, sides, splits, initialisation
    threads: PositiveInt = 1  # torch threads (small networks: more threads mostly contend)

    @model_validator(mode="after")
    def _test_split(self) -> CoraMatchingConfig:
        # Checked here too, so a bad split fails before the graph is read and names its key.
        num = self.instances.num_parts
        n_test = int(self.training.test_fraction * num)
        if not 1 <= n_test < num:
            raise ConfigError(
                "training.test_fraction",
                f"expected 1..{num - 1} test instances of instances.num_parts="
                f"{num}, got {self.training.test_fraction} ({n_test})",
            )
        return self


class EdgeScorer(torch.nn.Module):
    """``Linear(2F, hidden)-ReLU-Linear(hidden, 1)`` on every edge ``[left_i, right_j]``.

    Forward: ``left: (B, n, F)``, ``right: (B, m, F)`` -> logits ``(B, n, m)``.
    """

    def __init__(self, num_features: int, hidden: int = 500) -> None:
        super().__init__()
        self.num_features = num_features
        self.hidden = torch.nn.Linear(2 * num_features, hidden)
        self.out = torch.nn.Linear(hidden, 1)

    def _project(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First layer split by endpoint: ``(B, n, hidden)`` and ``(B, m, hidden)`` (bias in the second)."""
        f = self.num_features
        return left @ self.hidden.weight[:, :f].T, right @ self.hidden.weight[:, f:].T + self.hidden.bias

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        a, b = self._project(left, right)
        return self.out(torch.relu(a[:, :, None] + b[:, None])).squeeze(-1)

    def score_pairs(
        self, left: torch.Tensor, right: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(B, P)`` of the edges ``(rows[k], cols[k])`` only (a training minibatch)."""
        a, b = self._project(left, right)
        return self.out(torch.relu(a[:, rows] + b[:, cols])).squeeze(-1)


def _adam(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    # The fused CPU kernel (torch >= 2.4) makes a step ~5x cheaper for the 1.4 M weights.
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def lp_matching(values: np.ndarray) -> np.ndarray:
    """Solve ``max sum v_ij x_ij`` s.t. row/column sums <= 1, ``0 <= x <= 1``: ``(n, m) -> (n, m)``.

    The constraint matrix is totally unimodular, so HiGHS returns an integral vertex.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or not np.isfinite(values).all():
        raise ValueError(f"values must be a finite (n, m) array, got shape {values.shape}")
    n, m = values.shape
    rows = sp.kron(sp.identity(n), np.ones((1, m)))
    cols = sp.kron(np.ones((1, n)), sp.identity(m))
    res = linprog(
        -values.ravel(), A_ub=sp.vstack([rows, cols]).tocsc(), b_ub=np.ones(n + m), bounds=(0, 1), method="highs"
    )
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the matching LP: {res.message}")
    return res.x.reshape(n, m)


def matched_true_edges(values: np.ndarray, target: np.ndarray) -> float:
    """Number of true edges (``target == 1``) in the LP matching under predicted ``values``."""
    return float((lp_matching(values) * target).sum())


def _tensors(instances: MatchingInstances, idx: Sequence[int]) -> tuple[torch.Tensor, ...]:
    idx = list(idx)
    return tuple(torch.from_numpy(a[idx]) for a in (instances.left, instances.right, instances.target))


def train_two_stage(
    model: EdgeScorer,
    instances: MatchingInstances,
    train_idx: Sequence[int],
    epochs: int = 2,
    lr: float = 1e-3,
    batch_edges: int = 100,
    generator: torch.Generator | None = None,
) -> list[float]:
    """BCE on edge labels, Adam, ``batch_edges`` random edges a step (``floor(n m / batch_edges)``
    steps per instance and epoch, as Wilder et al.); returns the mean loss per epoch."""
    opt = _adam(model, lr)
    bce = torch.nn.BCEWithLogitsLoss()
    history = []
    for _ in range(epochs):
        losses = []
        for k in torch.randperm(len(train_idx), generator=generator).tolist():
            left, right, target = _tensors(instances, [train_idx[k]])
            order = torch.randperm(target.numel(), generator=generator)
            size = min(batch_edges, target.numel())  # a small instance is one batch
            m = target.shape[2]
            for start in range(0, target.numel() - size + 1, size):
                batch = order[start : start + size]
                logits = model.score_pairs(left, right, batch // m, batch % m)
                loss = bce(logits, target.reshape(1, -1)[:, batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        history.append(float(np.mean(losses)))
    return history


def train_decision_focused(
    model: EdgeScorer,
    instances: MatchingInstances,
    train_idx: Sequence[int],
    epochs: int = 12,
    lr: float = 1e-4,
    gamma: float = 0.1,
    gamma_decay: float = 0.8,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Loss ``-c_true . x*`` through the relaxed matching QP, one instance a step; returns the
    mean loss per epoch (at that epoch's gamma, so values of different epochs differ in scale)."""
    n, m = instances.target.shape[1:]
    opt = _adam(model, lr)
    history = []
    for _ in range(epochs):
        qp = MatchingQP(n, m, gamma=gamma, form="assignment")
        losses = []
        for k in torch.randperm(len(train_idx), generator=generator).tolist():
            left, right, target = _tensors(instances, [train_idx[k]])
            x = qp(-torch.sigmoid(model(left, right)))
            loss = -(target * x).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
        gamma *= gamma_decay
    return history


@torch.no_grad()
def evaluate(model: EdgeScorer, instances: MatchingInstances, idx: Sequence[int]) -> list[float]:
    """Matched true edges per instance when the LP uses ``sigmoid(model)`` as edge values."""
    left, right, target = _tensors(instances, idx)
    values = torch.sigmoid(model(left, right)).double().numpy()
    return [matched_true_edges(v, t) for v, t in zip(values, target.numpy())]


def run_matching_experiment(
    instances: MatchingInstances,
    repeats: int = 30,
    test_fraction: float = 0.2,
    two_stage_epochs: int = 2,
    decision_epochs: int = 12,
    two_stage_lr: float = 1e-3,
    decision_lr: float = 1e-4,
    gamma: float = 0.1,
    gamma_decay: float = 0.8,
    hidden: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """``repeats`` random train/test splits of the instances; returns per-method scores.

    Each repeat trains fresh networks; ``random`` scores uniform random values and ``optimal``
    the true adjacency (the best any predictor can do). Result: ``{"per_repeat": {method:
    [[score per test instance] per repeat]}, "losses": {...}}``.
    """
    num = len(instances)
    n_test = int(test_fraction * num)
    if not 1 <= n_test < num:
        raise ValueError(f"test_fraction={test_fraction} gives {n_test} test instances of {num}; need 1..{num - 1}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    scores: dict[str, list[list[float]]] = {m: [] for m in METHODS}
    losses: dict[str, list[list[float]]] = {"two_stage": [], "decision_focused": []}
    for r in range(repeats):
        order = rng.permutation(num)
        test, train = sorted(order[:n_test].tolist()), order[n_test:].tolist()
        gen = torch.Generator().manual_seed(seed * 1000 + r)
        torch.manual_seed(seed * 1000 + r)
        two_stage = EdgeScorer(instances.left.shape[2], hidden)
        decision = EdgeScorer(instances.left.shape[2], hidden)
        losses["two_stage"].append(
            train_two_stage(two_stage, instances, train, two_stage_epochs, two_stage_lr, generator=gen)
        )
        losses["decision_focused"].append(
            train_decision_focused(
                decision, instances, train, decision_epochs, decision_lr, gamma, gamma_decay, generator=gen
            )
        )
        scores["two_stage"].append(evaluate(two_stage, instances, test))
        scores["decision_focused"].append(evaluate(decision, instances, test))
        shape = instances.target.shape[1:]
        scores["random"].append([matched_true_edges(rng.random(shape), instances.target[k]) for k in test])
        scores["optimal"].append([matched_true_edges(instances.target[k], instances.target[k]) for k in test])
    return {"per_repeat": scores, "losses": losses}


def summarize(per_repeat: dict[str, list[list[float]]]) -> dict[str, dict[str, float]]:
    """Mean and std over all (repeat, test instance) scores, and std of the per-repeat means."""
    out = {}
    for method, runs in per_repeat.items():
        flat = np.concatenate([np.asarray(r, dtype=np.float64) for r in runs])
        means = np.asarray([np.mean(r) for r in runs])
        out[method] = {"mean": float(flat.mean()), "std": float(flat.std()), "std_of_repeat_means": float(means.std())}
    return out


def format_table(summary: dict[str, dict[str, float]], title: str) -> str:
    """Markdown table of the summary plus the paper's reference numbers."""
    lines = [
        f"### {title}",
        "",
        "| method | matched true edges (mean ± std) | std of repeat means |",
        "| --- | --- | --- |",
    ]
    names = {
        "two_stage": "two-stage (BCE)",
        "decision_focused": "decision-focused (QP layer)",
        "random": "random values",
        "optimal": "true adjacency (upper bound)",
    }
    for method, s in summary.items():
        name = names.get(method, method)
        lines.append(f"| {name} | {s['mean']:.2f} ± {s['std']:.2f} | {s['std_of_repeat_means']:.2f} |")
    for name, (mean, std) in PAPER_REFERENCE.items():
        lines.append(f"| reference, real Cora: {name} | {mean:.2f} ± {std:.2f} | - |")
    return "\n".join(lines)


def _load_graph(data: DataSource, seed: int) -> tuple[CitationGraph, str]:
    """The citation graph of ``data`` and a description of where it came from."""
    if isinstance(data, SyntheticCoraConfig):
        with tempfile.TemporaryDirectory() as tmp:
            graph = read_cora(write_synthetic_cora(tmp, seed=seed, num_nodes=data.num_nodes), "linqs")
        return graph, f"synthetic Cora-like graph (seed {seed})"
    return read_cora(data.root, data.format), data.root


def run_experiment(config: CoraMatchingConfig, out: Path | None = None) -> str:
    """The experiment of ``config``; returns the result table. With ``out``, writes
    ``<out>.json``, ``<out>.md`` and ``<out>.config.yaml`` (the config that produced them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run(config, out)
    finally:
        torch.set_num_threads(threads)


def _run(config: CoraMatchingConfig, out: Path | None) -> str:
    start = time.time()
    graph, source = _load_graph(config.data, config.seed)
    inst, training = config.instances, config.training
    instances = build_matching_instances(graph, inst.num_parts, inst.side, inst.split, config.seed)
    two_stage, decision = training.two_stage, training.decision_focused
    result = run_matching_experiment(
        instances,
        training.repeats,
        training.test_fraction,
        two_stage.epochs,
        decision.epochs,
        two_stage.lr,
        decision.lr,
        decision.gamma,
        decision.gamma_decay,
        training.hidden,
        config.seed,
    )
    summary = summarize(result["per_repeat"])
    title = f"Matched true edges on test instances: {source}, {len(instances)} instances, {training.repeats} repeats"
    table = format_table(summary, title)
    if out is not None:
        report = {
            "source": source,
            "graph": {"nodes": graph.num_nodes, "edges": graph.num_edges, "features": int(graph.features.shape[1])},
            "instance_edges": [float(t.sum()) for t in instances.target],
            "config": to_dict(config),
            "summary": summary,
            "paper_reference": {k: {"mean": m, "std": s} for k, (m, s) in PAPER_REFERENCE.items()},
            "per_repeat": result["per_repeat"],
            "epoch_losses": result["losses"],
            "seconds": round(time.time() - start, 1),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{out}.json").write_text(json.dumps(report, indent=1))
        Path(f"{out}.md").write_text(table + "\n")
        save_config(config, f"{out}.config.yaml")
    return table
