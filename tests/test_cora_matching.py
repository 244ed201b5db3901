"""The Cora matching experiment: evaluation LP, edge scorer, training and the command line."""

import itertools
import json

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from cutslots.data.cora import synthetic_citation_graph, write_synthetic_cora
from cutslots.experiments.cora_graph import build_matching_instances
from cutslots.experiments.cora_matching import (
    EdgeScorer,
    lp_matching,
    main,
    matched_true_edges,
    train_decision_focused,
    train_two_stage,
)
from cutslots.qp import MatchingQP

# ------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("n,m", [(6, 6), (4, 7)])
def test_lp_matches_hungarian(n, m):
    rng = np.random.default_rng(n * m)
    for _ in range(3):
        values = rng.random((n, m))
        target = (rng.random((n, m)) < 0.3).astype(float)
        x = lp_matching(values)
        np.testing.assert_allclose(x, np.round(x), atol=1e-7)  # integral vertex
        rows, cols = linear_sum_assignment(values, maximize=True)
        assert (values * x).sum() == pytest.approx(values[rows, cols].sum())
        assert matched_true_edges(values, target) == pytest.approx(target[rows, cols].sum())


def test_lp_brute_force_with_negative_values():
    # With negative values leaving nodes unmatched is better: enumerate all partial matchings.
    rng = np.random.default_rng(5)
    values = rng.normal(size=(3, 3))
    best = 0.0
    for perm in itertools.permutations(range(3)):
        for keep in itertools.product([False, True], repeat=3):
            best = max(best, sum(values[i, perm[i]] for i in range(3) if keep[i]))
    assert (values * lp_matching(values)).sum() == pytest.approx(best)
    with pytest.raises(ValueError, match="values"):
        lp_matching(np.full((2, 2), np.nan))


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def small_instances():
    g = synthetic_citation_graph(num_nodes=160, num_features=60, num_classes=2, num_citations=500, seed=2)
    return build_matching_instances(g, num_parts=4, side=6)


def test_edge_scorer_equals_linear_on_concatenated_features(small_instances):
    torch.manual_seed(0)
    model = EdgeScorer(60, hidden=16)
    left, right = (torch.from_numpy(a[:2]) for a in (small_instances.left, small_instances.right))
    got = model(left, right)
    for k in range(2):
        feats = torch.from_numpy(small_instances.edge_features(k))
        want = model.out(torch.relu(model.hidden(feats))).reshape(6, 6)
        torch.testing.assert_close(got[k], want, atol=1e-5, rtol=1e-5)
    rows, cols = torch.tensor([0, 5, 2, 2]), torch.tensor([3, 0, 2, 4])
    torch.testing.assert_close(model.score_pairs(left, right, rows, cols), got[:, rows, cols])


def test_training_reduces_the_losses(small_instances):
    inst, idx = small_instances, [0, 1, 2, 3]
    left, right, target = (torch.from_numpy(a) for a in (inst.left, inst.right, inst.target))
    bce = torch.nn.BCEWithLogitsLoss()
    torch.manual_seed(0)
    model = EdgeScorer(60, hidden=16)
    with torch.no_grad():
        before = bce(model(left, right), target).item()
    train_two_stage(model, inst, idx, epochs=3, lr=1e-2, batch_edges=12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert bce(model(left, right), target).item() < before

    qp = MatchingQP(6, 6, gamma=0.1, form="assignment")

    def decision_loss(net):
        with torch.no_grad():
            return -(target * qp(-torch.sigmoid(net(left, right)))).sum().item()

    torch.manual_seed(0)
    model = EdgeScorer(60, hidden=16)
    before = decision_loss(model)
    history = train_decision_focused(model, inst, idx, epochs=5, lr=1e-3, gamma=0.1, gamma_decay=1.0)
    assert len(history) == 5
    assert decision_loss(model) < before


def test_main_end_to_end(tmp_path, capsys):
    data = write_synthetic_cora(tmp_path / "cora", seed=1, num_nodes=120)
    out = tmp_path / "res"
    args = ["--num-parts", "5", "--side", "4", "--repeats", "2", "--hidden", "8"]
    args += ["--two-stage-epochs", "1", "--decision-epochs", "2"]
    assert main(["--data", str(data), *args, "--out", str(out)]) == 0
    report = json.loads((tmp_path / "res.json").read_text())
    assert set(report["summary"]) == {"two_stage", "decision_focused", "random", "optimal"}
    for method, runs in report["per_repeat"].items():
        assert len(runs) == 2 and all(len(r) == 1 for r in runs)  # int(0.2 * 5) = 1 test instance
        for score, best in zip(itertools.chain(*runs), itertools.chain(*report["per_repeat"]["optimal"])):
            assert 0 <= score <= best
    assert len(report["epoch_losses"]["decision_focused"][0]) == 2
    table = (tmp_path / "res.md").read_text()
    assert "7.01 ± 1.15" in table and "6.15 ± 0.38" in table
    assert "decision-focused" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--synthetic", "--gamma", "0"])
    with pytest.raises(SystemExit):
        main(["--synthetic", "--data", str(data)])
