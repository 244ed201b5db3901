"""Graph partitioning and matching-instance construction (cutslots.experiments.cora_graph)."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from cutslots.data.cora import CitationGraph
from cutslots.experiments.cora_graph import build_matching_instances, partition_graph

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


def test_instance_arguments_are_checked():
    g = graph_from_edges(4, [(0, 1), (2, 3)])
    with pytest.raises(ValueError, match="side"):
        build_matching_instances(g, num_parts=2, side=0)
    with pytest.raises(ValueError, match="split"):
        build_matching_instances(g, num_parts=2, side=1, split="metis")
    with pytest.raises(ValueError, match="num_parts"):
        build_matching_instances(g, num_parts=5, side=1)


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
