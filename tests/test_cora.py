"""Cora readers (LINQS, Planetoid), the LINQS writer and the synthetic stand-in graph."""

import collections
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from cutslots.data.cora import (
    read_cora,
    read_linqs,
    read_planetoid,
    synthetic_citation_graph,
    write_synthetic_cora,
)
from cutslots.data.errors import DatasetFormatError

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


def test_generator_arguments_are_checked():
    with pytest.raises(ValueError, match="num_nodes"):
        synthetic_citation_graph(num_nodes=1)
    with pytest.raises(ValueError, match="too small"):
        synthetic_citation_graph(num_nodes=10, num_features=60, num_classes=30, num_methods=30)
