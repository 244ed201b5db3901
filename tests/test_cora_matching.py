"""The Cora matching experiment: evaluation LP, edge scorer, training, its configs and the command."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from cutslots import cli
from cutslots.config import ConfigError, load_config, resolve_config, to_dict
from cutslots.data.cora import synthetic_citation_graph, write_synthetic_cora
from cutslots.experiments.cora_graph import build_matching_instances
from cutslots.experiments.cora_matching import (
    CoraMatchingConfig,
    EdgeScorer,
    SyntheticCoraConfig,
    lp_matching,
    matched_true_edges,
    train_decision_focused,
    train_two_stage,
)
from cutslots.qp import MatchingQP

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

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


def test_command_end_to_end(tmp_path, capsys):
    data = write_synthetic_cora(tmp_path / "cora", seed=1, num_nodes=120)
    out = tmp_path / "res"
    overrides = [f"data.root={data}", "instances.num_parts=5", "instances.side=4", "training.repeats=2"]
    overrides += ["training.hidden=8", "training.two_stage.epochs=1", "training.decision_focused.epochs=2"]
    assert cli.main(["matching-experiment", "--config", "cora_matching", *overrides, "--out", str(out)]) == 0
    report = json.loads((tmp_path / "res.json").read_text())
    assert set(report["summary"]) == {"two_stage", "decision_focused", "random", "optimal"}
    for runs in report["per_repeat"].values():
        assert len(runs) == 2 and all(len(r) == 1 for r in runs)  # int(0.2 * 5) = 1 test instance
        for score, best in zip(itertools.chain(*runs), itertools.chain(*report["per_repeat"]["optimal"])):
            assert 0 <= score <= best
    assert len(report["epoch_losses"]["decision_focused"][0]) == 2
    table = (tmp_path / "res.md").read_text()
    assert "7.01 ± 1.15" in table and "6.15 ± 0.38" in table
    assert "decision-focused" in capsys.readouterr().out
    # The result says what produced it: the resolved config, in the JSON and as a rerunnable YAML.
    config = load_config(resolve_config("cora_matching"), overrides, schema=CoraMatchingConfig)
    assert load_config(tmp_path / "res.config.yaml", schema=CoraMatchingConfig) == config
    assert report["config"] == to_dict(config) and report["source"] == str(data)


SYNTHETIC = resolve_config("cora_synthetic")


# Every range the former command-line flags checked, now named by the dotted key.
@pytest.mark.parametrize(
    "override, key",
    [
        ("training.repeats=0", "training.repeats"),
        ("training.two_stage.epochs=-1", "training.two_stage.epochs"),
        ("training.decision_focused.epochs=-1", "training.decision_focused.epochs"),
        ("training.decision_focused.gamma=0", "training.decision_focused.gamma"),
        ("training.decision_focused.gamma=.inf", "training.decision_focused.gamma"),
        ("training.decision_focused.gamma_decay=0", "training.decision_focused.gamma_decay"),
        ("training.decision_focused.gamma_decay=1.5", "training.decision_focused.gamma_decay"),
        ("training.test_fraction=0", "training.test_fraction"),
        ("training.test_fraction=1", "training.test_fraction"),
        ("training.test_fraction=0.01", "training.test_fraction"),  # no test instance of 27
        ("training.hidden=0", "training.hidden"),
        ("data.num_nodes=1", "data.num_nodes"),
        ("threads=0", "threads"),
        ("instances.split=metis", "instances.split"),
        ("data.root=/data/cora", "data.root"),  # a synthetic graph has no folder (was: --synthetic --data)
    ],
)
def test_bad_settings_name_the_key_and_the_override(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(SYNTHETIC, [override], schema=CoraMatchingConfig)
    assert err.value.key == key and err.value.source == f"{SYNTHETIC} (override {override!r})"


def test_bad_settings_fail_the_command_before_running(tmp_path, capsys):
    out = tmp_path / "res"
    argv = ["matching-experiment", "--config", "cora_synthetic", "training.decision_focused.gamma=0"]
    assert cli.main([*argv, "--out", str(out)]) == 2
    assert (
        f"{SYNTHETIC} (override 'training.decision_focused.gamma=0'): training.decision_focused.gamma: "
        in capsys.readouterr().err
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {kind: synthetic}\ntraining: {repeats: 0}\n")
    assert cli.main(["matching-experiment", "--config", str(bad)]) == 2
    assert f"{bad}: training.repeats: " in capsys.readouterr().err
    assert not tmp_path.joinpath("res.json").exists()


def test_cora_yaml_is_the_published_setup_and_needs_the_data_folder():
    path = resolve_config("cora_matching")
    with pytest.raises(ConfigError) as err:
        load_config(path, schema=CoraMatchingConfig)
    assert (err.value.key, err.value.source) == ("data.root", str(path))
    real = load_config(path, ["data.root=/data/cora"], schema=CoraMatchingConfig)
    assert real == CoraMatchingConfig(data={"root": "/data/cora"})  # the defaults are the published settings
    assert real.training.repeats == 30 and real.data.format == "auto"
    # The stand-in differs in its graph and its 5 repeats only (docs/cora-matching.md).
    synthetic = to_dict(load_config(SYNTHETIC, schema=CoraMatchingConfig))
    expected = to_dict(real)
    expected["data"], expected["training"]["repeats"] = {"kind": "synthetic", "num_nodes": 2708}, 5
    assert synthetic == expected


def test_synthetic_yaml_has_the_settings_of_the_committed_results():
    committed = json.loads((RESULTS / "cora_synthetic.json").read_text())
    flags = committed["config"]  # written by the former command line, one key per flag
    config = load_config(SYNTHETIC, schema=CoraMatchingConfig)
    data, inst, training = config.data, config.instances, config.training
    two_stage, decision = training.two_stage, training.decision_focused
    assert isinstance(data, SyntheticCoraConfig) and flags["synthetic"] and flags["data"] is None
    assert {k: v for k, v in flags.items() if k not in ("data", "synthetic", "format")} == {
        "synthetic_nodes": data.num_nodes,
        "num_parts": inst.num_parts,
        "side": inst.side,
        "split": inst.split,
        "repeats": training.repeats,
        "test_fraction": training.test_fraction,
        "hidden": training.hidden,
        "two_stage_epochs": two_stage.epochs,
        "two_stage_lr": two_stage.lr,
        "decision_epochs": decision.epochs,
        "decision_lr": decision.lr,
        "gamma": decision.gamma,
        "gamma_decay": decision.gamma_decay,
        "seed": config.seed,
        "threads": config.threads,
    }
    assert committed["source"] == f"synthetic Cora-like graph (seed {config.seed})"
    assert committed["graph"]["nodes"] == data.num_nodes and len(committed["per_repeat"]["two_stage"]) == 5
