import collections
import itertools
import json
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from cutslots.data.cora import (
    CitationGraph,
    build_matching_instances,
    partition_graph,
    read_cora,
    read_linqs,
    read_planetoid,
    synthetic_citation_graph,
    write_synthetic_cora,
)
from cutslots.data.errors import DatasetFormatError
from cutslots.experiments.cora_matching import (
    EdgeScorer,
    lp_matching,
    main,
    matched_true_edges,
    train_decision_focused,
    train_two_stage,
)
from cutslots.qp import MatchingQP

# ----------------------------------------------------------------------------- readers

CONTENT = "31336\t0\t1\t0\t0\t1\tNeural_Networks\n1061127\t1\t0\t0\t0\t0\tRule_Learning\n"
CONTENT += "1106406\t0\t0\t1\t1\t0\tNeural_Networks\n13195\t0\t0\t0\t0\t0\tTheory\n"
CITES = "31336\t1061127\n1061127\t31336\n1106406\t31336\n13195\t1106406\n"


def write_linqs_by_hand(root, content=CONTENT, cites=CITES):
    root.mkdir(exist_ok=True)
    (root / "cora.content").write_text(content)
    (root / "cora.cites").write_text(cites)
    return root


def test_linqs_reader(tmp_path):
    g = read_linqs(write_linqs_by_hand(tmp_path / "linqs"))
    assert g.node_ids == ("31336", "1061127", "1106406", "13195")
    np.testing.assert_array_equal(g.features, [[0, 1, 0, 0, 1], [1, 0, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]])
    assert g.classes == ("Neural_Networks", "Rule_Learning", "Theory")
    np.testing.assert_array_equal(g.labels, [0, 1, 0, 2])
    # Both directions of 31336-1061127 collapse into one undirected edge.
    want = np.zeros((4, 4))
    for a, b in [(0, 1), (2, 0), (3, 2)]:
        want[a, b] = want[b, a] = 1
    np.testing.assert_array_equal(g.adjacency.toarray(), want)
    assert g.num_edges == 3


@pytest.mark.parametrize(
    "content,cites,match",
    [
        (CONTENT + "99\t1\t0\tTheory\n", CITES, r"cora.content:5: expected 7 fields"),
        (CONTENT.replace("\t1\t0\t0\t0\t0\t", "\t2\t0\t0\t0\t0\t"), CITES, "binary"),
        (CONTENT + CONTENT.splitlines()[0] + "\n", CITES, "appears more than once"),
        (CONTENT, CITES + "31336\t777\n", r"cora.cites:5: paper id '777' is not in cora.content"),
        (CONTENT, CITES + "31336\n", r"cora.cites:5: expected"),
    ],
)
def test_linqs_malformed(tmp_path, content, cites, match):
    with pytest.raises(DatasetFormatError, match=match):
        read_linqs(write_linqs_by_hand(tmp_path / "bad", content, cites))


def test_linqs_missing_file(tmp_path):
    root = write_linqs_by_hand(tmp_path / "linqs")
    os.remove(root / "cora.cites")
    with pytest.raises(FileNotFoundError, match="cora.cites"):
        read_linqs(root)


def write_planetoid_by_hand(root, protocol=2, **override):
    """Five nodes; like Planetoid's files: pickled scipy CSR features, one-hot numpy labels,
    a defaultdict of adjacency lists, and an unsorted test.index (tx row k is node test.index[k])."""
    root.mkdir(exist_ok=True)
    allx = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32))
    tx = sp.csr_matrix(np.array([[0, 0, 1], [1, 0, 1]], dtype=np.float32))  # nodes 4, 3
    ally = np.array([[1, 0], [0, 1], [1, 0]])
    ty = np.array([[0, 1], [1, 0]])
    graph = collections.defaultdict(list, {0: [1, 4], 1: [0], 2: [3], 3: [2], 4: [0]})
    parts = {"x": allx[:2], "y": ally[:2], "allx": allx, "ally": ally, "tx": tx, "ty": ty, "graph": graph}
    parts.update(override)
    for name, obj in parts.items():
        data = pickle.dumps(obj, protocol=protocol)
        # Name the classes by the module paths of the numpy/scipy that wrote the published files.
        data = data.replace(b"scipy.sparse._csr", b"scipy.sparse.csr").replace(b"numpy._core", b"numpy.core")
        (root / f"ind.cora.{name}").write_bytes(data)
    (root / "ind.cora.test.index").write_text("4\n3\n")
    return root


@pytest.mark.parametrize("protocol", [0, 2])
def test_planetoid_reader(tmp_path, protocol):
    g = read_planetoid(write_planetoid_by_hand(tmp_path / "planetoid", protocol))
    np.testing.assert_array_equal(g.features, [[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(g.labels, [0, 1, 0, 0, 1])
    want = np.zeros((5, 5))
    for a, b in [(0, 1), (0, 4), (2, 3)]:
        want[a, b] = want[b, a] = 1
    np.testing.assert_array_equal(g.adjacency.toarray(), want)
    assert g.node_ids == ("0", "1", "2", "3", "4")


class NotPlanetoid:
    pass


@pytest.mark.parametrize(
    "override,match",
    [
        ({"tx": sp.csr_matrix(np.ones((3, 3), dtype=np.float32)), "ty": np.eye(3, 2)}, "3 rows of tx"),
        ({"allx": np.ones((3, 3))}, "ind.cora.allx: expected a scipy sparse"),
        ({"graph": NotPlanetoid()}, "ind.cora.graph: not a Planetoid pickle"),
        ({"graph": collections.defaultdict(list, {0: [9]})}, "node index outside"),
        ({"ty": np.eye(2, 3)}, "class count"),
    ],
)
def test_planetoid_malformed(tmp_path, override, match):
    with pytest.raises(DatasetFormatError, match=match):
        read_planetoid(write_planetoid_by_hand(tmp_path / "bad", **override))


def test_planetoid_refuses_code_in_pickles(tmp_path):
    root = write_planetoid_by_hand(tmp_path / "evil")
    with open(root / "ind.cora.x", "wb") as f:
        pickle.dump(os.system, f, protocol=2)  # loading would only resolve it; still refused
    with pytest.raises(DatasetFormatError, match=r"ind.cora.x: not a Planetoid pickle \((posix|nt)\.system"):
        read_planetoid(root)


def test_planetoid_missing_index(tmp_path):
    root = write_planetoid_by_hand(tmp_path / "planetoid")
    os.remove(root / "ind.cora.test.index")
    with pytest.raises(FileNotFoundError, match="ind.cora.test.index"):
        read_planetoid(root)


def test_read_cora_detects_format(tmp_path):
    assert read_cora(write_linqs_by_hand(tmp_path / "a")).num_nodes == 4
    assert read_cora(write_planetoid_by_hand(tmp_path / "b")).num_nodes == 5
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="cora.content .* ind.cora"):
        read_cora(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="dataset path not found"):
        read_cora(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="format"):
        read_cora(tmp_path / "a", format="npz")


def test_synthetic_graph_round_trips_through_linqs(tmp_path):
    want = synthetic_citation_graph(num_nodes=150, seed=4)
    got = read_cora(write_synthetic_cora(tmp_path / "syn", seed=4, num_nodes=150))
    assert got.node_ids == want.node_ids
    np.testing.assert_array_equal(got.features, want.features)
    assert [got.classes[i] for i in got.labels] == [want.classes[i] for i in want.labels]
    assert (got.adjacency != want.adjacency).nnz == 0
    assert want.features.shape == (150, 1433) and want.num_edges > 100
    # Citations follow communities: most edges join papers of one community (~0.87 expected).
    sparse = synthetic_citation_graph(num_nodes=500, num_citations=800, seed=4)
    rows, cols = sp.triu(sparse.adjacency).nonzero()
    assert np.mean(sparse.labels[rows] == sparse.labels[cols]) > 0.75


# --------------------------------------------------------------------------- instances


def graph_from_edges(n, edges, features=None):
    rows, cols = np.array(edges).T
    adj = sp.csr_matrix((np.ones(2 * len(edges)), (np.r_[rows, cols], np.r_[cols, rows])), shape=(n, n))
    feats = np.arange(n * 3, dtype=np.float32).reshape(n, 3) if features is None else features
    return CitationGraph(feats, np.zeros(n, dtype=np.int64), ("c",), adj, tuple(map(str, range(n))))


def test_instances_from_two_squares():
    # Two 4-cycles joined by one edge: 2 parts = the two cycles; the split with all 4 cycle
    # edges crossing puts opposite corners on the same side.
    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (3, 4)]
    g = graph_from_edges(8, edges)
    inst = build_matching_instances(g, num_parts=2, side=2)
    assert inst.left.shape == (2, 2, 3) and inst.target.shape == (2, 2, 2)
    members = np.concatenate([inst.left_nodes, inst.right_nodes], 1).tolist()
    assert sorted(map(sorted, members)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    for k in range(2):
        assert {frozenset(inst.left_nodes[k]), frozenset(inst.right_nodes[k])} in (
            {frozenset({0, 2}), frozenset({1, 3})},
            {frozenset({4, 6}), frozenset({5, 7})},
        )
        np.testing.assert_array_equal(inst.target[k], np.ones((2, 2)))
        np.testing.assert_array_equal(inst.left[k], g.features[inst.left_nodes[k]])
        feats = inst.edge_features(k)
        assert feats.shape == (4, 6)
        for i, j in itertools.product(range(2), range(2)):
            want = np.r_[g.features[inst.left_nodes[k, i]], g.features[inst.right_nodes[k, j]]]
            np.testing.assert_array_equal(feats[i * 2 + j], want)


def test_instances_pad_trim_and_random_split():
    # A triangle plus a pendant path: one part of 6 nodes.
    edges = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 5)]
    g = graph_from_edges(6, edges)
    padded = build_matching_instances(g, num_parts=1, side=4, split="random", seed=1)
    assert (padded.left_nodes < 0).sum() + (padded.right_nodes < 0).sum() == 2
    real = np.concatenate([padded.left_nodes[0], padded.right_nodes[0]])
    assert sorted(real[real >= 0]) == list(range(6))
    adj = g.adjacency.toarray()
    for i, j in itertools.product(range(4), range(4)):
        a, b = padded.left_nodes[0, i], padded.right_nodes[0, j]
        assert padded.target[0, i, j] == (adj[a, b] if a >= 0 and b >= 0 else 0)
    assert np.all(padded.left[0][padded.left_nodes[0] < 0] == 0)
    # side 2 keeps the 4 nodes with most edges inside the part: 2 (3 edges), then 0, 1, 3 (2 each).
    trimmed = build_matching_instances(g, num_parts=1, side=2)
    assert sorted(np.concatenate([trimmed.left_nodes[0], trimmed.right_nodes[0]])) == [0, 1, 2, 3]
    assert trimmed.target.sum() == 3  # the cut split keeps 3 of the 4 edges among 0..3 crossing


def test_instance_and_generator_arguments_are_checked():
    g = graph_from_edges(4, [(0, 1), (2, 3)])
    with pytest.raises(ValueError, match="side"):
        build_matching_instances(g, num_parts=2, side=0)
    with pytest.raises(ValueError, match="split"):
        build_matching_instances(g, num_parts=2, side=1, split="metis")
    with pytest.raises(ValueError, match="num_parts"):
        build_matching_instances(g, num_parts=5, side=1)
    with pytest.raises(ValueError, match="num_nodes"):
        synthetic_citation_graph(num_nodes=1)
    with pytest.raises(ValueError, match="too small"):
        synthetic_citation_graph(num_nodes=10, num_features=60, num_classes=30, num_methods=30)


def test_partition_recovers_planted_communities():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 12)
    pairs = itertools.combinations(range(36), 2)
    edges = [(a, b) for a, b in pairs if rng.random() < (0.6 if truth[a] == truth[b] else 0.02)]
    parts = partition_graph(graph_from_edges(36, edges).adjacency, 3)
    assert adjusted_rand_score(truth, parts) == 1.0
    assert np.bincount(parts).tolist() == [12, 12, 12]
    with pytest.raises(ValueError, match="num_parts"):
        partition_graph(sp.identity(3), 4)


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
