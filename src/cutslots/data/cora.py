"""The Cora citation graph in its two published formats, and a synthetic stand-in.

Formats read (``read_cora`` picks one from the files present):

LINQS (``cora.content``, ``cora.cites``)
    ``cora.content``: one paper per line, whitespace separated: paper id, the binary
    bag-of-words (1433 entries for Cora), class label. ``cora.cites``: one citation per line,
    ``<cited id> <citing id>``. Every id in ``cora.cites`` must appear in ``cora.content``.
Planetoid (``ind.cora.{x,y,tx,ty,allx,ally,graph}``, ``ind.cora.test.index``)
    Python-2 pickles (read with ``encoding="latin1"``): ``x``/``tx``/``allx`` scipy sparse
    feature matrices, ``y``/``ty``/``ally`` one-hot numpy label matrices, ``graph`` a dict of
    adjacency lists over node indices; ``test.index`` is a text file with one node index per
    line. Rows of ``allx``/``ally`` are nodes ``0..len(allx)-1``; row ``k`` of ``tx``/``ty`` is
    node ``test.index[k]`` (the file is not sorted); ``x``/``y`` are the labelled subset.

The graph is used undirected: ``adjacency`` is the symmetric 0/1 matrix of all citations.
Pickles are unpickled with a whitelist of the classes the format uses (numpy, scipy.sparse,
``collections``) so a malformed or foreign file cannot run code.

``synthetic_citation_graph`` is a Cora-sized stand-in for machines without Cora;
``write_linqs`` / ``write_synthetic_cora`` write a graph in the LINQS format, so the stand-in
goes through the same reader as the real files.
"""

from __future__ import annotations

import io
import itertools
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from cutslots.data.errors import DatasetFormatError, missing_dataset

LINQS_SOURCE = "https://linqs.org/datasets/#cora"
PLANETOID_SOURCE = "https://github.com/kimiyoung/planetoid (data/ind.cora.*)"
PLANETOID_PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph")
CoraFormat = Literal["auto", "linqs", "planetoid"]


@dataclass(frozen=True)
class CitationGraph:
    """An undirected citation graph with binary bag-of-words node features.

    Attributes:
        features: ``(N, F)`` float32, 0/1 word indicators.
        labels: ``(N,)`` int64 index into ``classes``; -1 for a node without a label.
        classes: class names (LINQS labels, or ``"0".."C-1"`` for Planetoid).
        adjacency: ``(N, N)`` symmetric 0/1 CSR float64 matrix of citations.
        node_ids: ``N`` paper ids (LINQS) or node indices as strings (Planetoid).
    """

    features: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    adjacency: sp.csr_matrix
    node_ids: tuple[str, ...]

    @property
    def num_nodes(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_edges(self) -> int:
        """Undirected edges (a self-citation counts once)."""
        upper = sp.triu(self.adjacency)
        return int(upper.nnz)


def _symmetric_adjacency(n: int, rows: np.ndarray, cols: np.ndarray) -> sp.csr_matrix:
    both = (np.concatenate([rows, cols]), np.concatenate([cols, rows]))
    adj = sp.csr_matrix((np.ones(2 * rows.size), both), shape=(n, n))
    adj.data[:] = 1.0  # duplicates and both citation directions collapse to one edge
    return adj


# --------------------------------------------------------------------------- LINQS


def read_linqs(root: str | Path, name: str = "cora") -> CitationGraph:
    """Read ``<root>/<name>.content`` and ``<root>/<name>.cites`` (module docstring)."""
    root = Path(root)
    content, cites = root / f"{name}.content", root / f"{name}.cites"
    for path in (content, cites):
        if not path.is_file():
            raise missing_dataset(path, f"{name}.content and {name}.cites (LINQS format)", LINQS_SOURCE)
    ids: list[str] = []
    rows: list[list[str]] = []
    label_names: list[str] = []
    width = None
    for lineno, line in enumerate(content.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if width is None:
            width = len(fields)
        if len(fields) != width or width < 3:
            raise DatasetFormatError(
                f"{content}:{lineno}: expected {width if width and width >= 3 else '>= 3'} fields "
                f"(paper id, binary features, label), got {len(fields)}"
            )
        ids.append(fields[0])
        rows.append(fields[1:-1])
        label_names.append(fields[-1])
    if not ids:
        raise DatasetFormatError(f"{content}: no papers found")
    try:
        features = np.asarray(rows, dtype=np.float32)
    except ValueError as err:
        raise DatasetFormatError(f"{content}: features must be numbers 0/1 ({err})") from None
    if not np.isin(features, (0.0, 1.0)).all():
        bad = int(np.argwhere(~np.isin(features, (0.0, 1.0)))[0, 0]) + 1
        raise DatasetFormatError(f"{content}: features must be binary 0/1 (paper {bad} is not)")
    index = {pid: i for i, pid in enumerate(ids)}
    if len(index) != len(ids):
        dup = next(pid for pid in ids if ids.count(pid) > 1)
        raise DatasetFormatError(f"{content}: paper id {dup!r} appears more than once")
    classes = tuple(sorted(set(label_names)))
    labels = np.asarray([classes.index(lab) for lab in label_names], dtype=np.int64)

    src, dst = [], []
    for lineno, line in enumerate(cites.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DatasetFormatError(f"{cites}:{lineno}: expected '<cited id> <citing id>', got {line!r}")
        for pid in fields:
            if pid not in index:
                raise DatasetFormatError(f"{cites}:{lineno}: paper id {pid!r} is not in {content.name}")
        src.append(index[fields[0]])
        dst.append(index[fields[1]])
    adjacency = _symmetric_adjacency(len(ids), np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64))
    return CitationGraph(features, labels, classes, adjacency, tuple(ids))


def write_linqs(graph: CitationGraph, root: str | Path, name: str = "cora") -> Path:
    """Write ``graph`` as ``<root>/<name>.content`` and ``<root>/<name>.cites``; returns ``root``.

    Each undirected edge is written once, as ``<id of the higher index> <id of the lower>``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    feats = graph.features.astype(np.int64)
    with open(root / f"{name}.content", "w") as f:
        for pid, row, lab in zip(graph.node_ids, feats, graph.labels):
            f.write("\t".join([pid, *map(str, row), graph.classes[lab]]) + "\n")
    upper = sp.triu(graph.adjacency).tocoo()
    with open(root / f"{name}.cites", "w") as f:
        for i, j in sorted(zip(upper.row.tolist(), upper.col.tolist())):
            f.write(f"{graph.node_ids[j]}\t{graph.node_ids[i]}\n")
    return root


# ------------------------------------------------------------------------ Planetoid


class _PlanetoidUnpickler(pickle.Unpickler):
    """Only the classes a Planetoid file is made of (module docstring)."""

    _NUMPY = frozenset(("_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"))
    _BUILTINS = frozenset(
        {"object", "list", "dict", "tuple", "set", "frozenset", "int", "float", "complex", "bytes", "str", "slice"}
    )

    def find_class(self, module: str, name: str) -> Any:
        allowed = (
            (module.split(".")[0] == "numpy" and name in self._NUMPY)
            or (module.startswith("scipy.sparse") and name.endswith(("_matrix", "_array")))
            or (module == "collections" and name in ("defaultdict", "OrderedDict"))
            or (module in ("copy_reg", "copyreg") and name == "_reconstructor")
            or (module == "_codecs" and name == "encode")  # bytes in pickles written by Python 3
            or (module in ("__builtin__", "builtins") and name in self._BUILTINS)
        )
        if not allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of the Planetoid format")
        return super().find_class(module, name)


def _load_planetoid_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            # The published files name old module paths (scipy.sparse.csr, numpy.core) that
            # still resolve but warn.
            warnings.simplefilter("ignore", DeprecationWarning)
            return _PlanetoidUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as err:
        raise DatasetFormatError(f"{path}: not a Planetoid pickle ({err})") from None


def _check_planetoid_types(obj: dict[str, Any], paths: dict[str, Path]) -> None:
    """Sparse feature matrices, 2-D one-hot label matrices and a dict graph (module docstring)."""
    for part in ("x", "tx", "allx"):
        if not sp.issparse(obj[part]):
            kind = type(obj[part]).__name__
            raise DatasetFormatError(f"{paths[part]}: expected a scipy sparse feature matrix, got {kind}")
    for part in ("y", "ty", "ally"):
        if not isinstance(obj[part], np.ndarray) or obj[part].ndim != 2:
            kind = type(obj[part]).__name__
            raise DatasetFormatError(f"{paths[part]}: expected a 2-D numpy one-hot label matrix, got {kind}")
    if not isinstance(obj["graph"], dict):
        kind = type(obj["graph"]).__name__
        raise DatasetFormatError(f"{paths['graph']}: expected a dict of adjacency lists, got {kind}")


def _check_planetoid_shapes(obj: dict[str, Any], paths: dict[str, Path], test_index: np.ndarray) -> None:
    """Features and labels agree in rows and widths; test indices number the nodes after ``allx``."""
    num_feat, num_cls = obj["allx"].shape[1], obj["ally"].shape[1]
    for feat, lab in (("x", "y"), ("tx", "ty"), ("allx", "ally")):
        if obj[feat].shape[1] != num_feat or obj[lab].shape[1] != num_cls:
            raise DatasetFormatError(f"{paths[feat]} / {paths[lab]}: feature or class count differs from allx/ally")
        if obj[feat].shape[0] != obj[lab].shape[0]:
            rows = (obj[feat].shape[0], obj[lab].shape[0])
            raise DatasetFormatError(f"{paths[feat]} has {rows[0]} rows but {paths[lab]} has {rows[1]}")
    n_all = obj["allx"].shape[0]
    if obj["x"].shape[0] > n_all:
        raise DatasetFormatError(f"{paths['x']}: the labelled subset is larger than allx")
    if test_index.size != obj["tx"].shape[0]:
        raise DatasetFormatError(
            f"{paths['test.index']}: {test_index.size} indices for {obj['tx'].shape[0]} rows of tx"
        )
    if test_index.size and (test_index.min() < n_all or np.unique(test_index).size != test_index.size):
        raise DatasetFormatError(f"{paths['test.index']}: test indices must be distinct and >= len(allx) = {n_all}")


def read_planetoid(root: str | Path, name: str = "cora") -> CitationGraph:
    """Read ``<root>/ind.<name>.*`` (module docstring)."""
    root = Path(root)
    paths = {part: root / f"ind.{name}.{part}" for part in (*PLANETOID_PARTS, "test.index")}
    for path in paths.values():
        if not path.is_file():
            layout = ", ".join(f"ind.{name}.{p}" for p in (*PLANETOID_PARTS, "test.index"))
            raise missing_dataset(path, layout + " (Planetoid format)", PLANETOID_SOURCE)
    obj = {part: _load_planetoid_pickle(paths[part]) for part in PLANETOID_PARTS}
    _check_planetoid_types(obj, paths)
    try:
        test_index = np.asarray([int(t) for t in paths["test.index"].read_text().split()], dtype=np.int64)
    except ValueError:
        raise DatasetFormatError(f"{paths['test.index']}: expected one integer node index per line") from None
    _check_planetoid_shapes(obj, paths, test_index)

    n_all, num_feat, num_cls = obj["allx"].shape[0], obj["allx"].shape[1], obj["ally"].shape[1]
    graph = obj["graph"]
    try:
        edges = [(int(u), int(v)) for u, nbrs in graph.items() for v in nbrs]
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{paths['graph']}: adjacency lists must hold integer node indices") from None
    n = max(n_all, int(test_index.max()) + 1 if test_index.size else 0, len(graph))
    if edges and (min(min(e) for e in edges) < 0 or max(max(e) for e in edges) >= n):
        raise DatasetFormatError(f"{paths['graph']}: node index outside 0..{n - 1}")

    features = np.zeros((n, num_feat), dtype=np.float32)
    features[:n_all] = obj["allx"].toarray()
    features[test_index] = obj["tx"].toarray()
    onehot = np.zeros((n, num_cls), dtype=np.float32)
    onehot[:n_all] = obj["ally"]
    onehot[test_index] = obj["ty"]
    labels = np.where(onehot.any(1), onehot.argmax(1), -1).astype(np.int64)
    pairs = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    adjacency = _symmetric_adjacency(n, pairs[:, 0], pairs[:, 1])
    classes = tuple(str(c) for c in range(num_cls))
    return CitationGraph(features, labels, classes, adjacency, tuple(str(i) for i in range(n)))


def read_cora(root: str | Path, format: CoraFormat = "auto", name: str = "cora") -> CitationGraph:
    """Read Cora from ``root`` in the LINQS or Planetoid format (``"auto"``: whichever is there)."""
    root = Path(root)
    if format not in ("auto", "linqs", "planetoid"):
        raise ValueError(f"format must be 'auto', 'linqs' or 'planetoid', got {format!r}")
    if not root.is_dir():
        raise missing_dataset(
            root, f"a folder with {name}.content + {name}.cites (LINQS) or ind.{name}.* (Planetoid)", LINQS_SOURCE
        )
    if format == "auto":
        if (root / f"{name}.content").exists():
            format = "linqs"
        elif (root / f"ind.{name}.graph").exists():
            format = "planetoid"
        else:
            raise FileNotFoundError(
                f"no Cora files in {root}: expected {name}.content + {name}.cites (LINQS, {LINQS_SOURCE}) "
                f"or ind.{name}.{{x,y,tx,ty,allx,ally,graph,test.index}} (Planetoid, {PLANETOID_SOURCE})"
            )
    return read_linqs(root, name) if format == "linqs" else read_planetoid(root, name)


# ------------------------------------------------------------------------ synthetic


def _synthetic_words(
    rng: np.random.Generator,
    community: np.ndarray,
    method: np.ndarray,
    appeal: np.ndarray,
    num_features: int,
    num_classes: int,
    num_methods: int,
    per_group: int,
) -> np.ndarray:
    """``(N, F)`` float32 0/1 words: community, method and Zipf background words, and the
    "impact" words that grow with the appeal (:func:`synthetic_citation_graph`)."""
    num_nodes, n_impact = community.size, num_features // 50
    words = rng.permutation(np.arange(n_impact, num_features))
    groups = words[: (num_classes + num_methods) * per_group].reshape(-1, per_group)
    topic_words, method_words = groups[:num_classes], groups[num_classes:]
    background = 1.0 / np.arange(1, num_features - n_impact + 1)  # Zipf-like word frequencies
    background /= background.sum()
    features = np.zeros((num_nodes, num_features), dtype=np.float32)
    for v in range(num_nodes):
        kind = rng.choice(3, size=max(1, rng.poisson(16)), p=(0.4, 0.25, 0.35))
        features[v, rng.choice(topic_words[community[v]], size=int((kind == 0).sum()))] = 1
        features[v, rng.choice(method_words[method[v]], size=int((kind == 1).sum()))] = 1
        features[v, n_impact + rng.choice(num_features - n_impact, size=int((kind == 2).sum()), p=background)] = 1
    rank = appeal.argsort().argsort() / (num_nodes - 1)  # appeal quantile in [0, 1]
    features[:, :n_impact] = rng.random((num_nodes, n_impact)) < 0.5 * rank[:, None] ** 2
    return features


def _synthetic_citations(
    rng: np.random.Generator,
    community: np.ndarray,
    method: np.ndarray,
    appeal: np.ndarray,
    num_citations: int,
    num_classes: int,
    num_methods: int,
) -> sp.csr_matrix:
    """Symmetric adjacency of ``num_citations`` citations (self-citations dropped): a uniform
    citing paper cites within its community (p 0.85) and method (p 0.8), in proportion to appeal."""
    num_nodes = community.size
    citing = rng.integers(num_nodes, size=num_citations)
    same_c = rng.random(num_citations) < 0.85
    same_m = rng.random(num_citations) < 0.8
    cited = np.empty(num_citations, dtype=np.int64)
    everyone = np.ones(num_nodes, dtype=bool)
    for c, m, sc, sm in itertools.product(range(num_classes), range(num_methods), (False, True), (False, True)):
        rows = np.flatnonzero((community[citing] == c) & (method[citing] == m) & (same_c == sc) & (same_m == sm))
        pool = np.flatnonzero((community == c if sc else everyone) & (method == m if sm else everyone))
        if rows.size:
            pool = pool if pool.size else np.arange(num_nodes)  # an empty group (tiny graphs): anyone
            cited[rows] = rng.choice(pool, size=rows.size, p=appeal[pool] / appeal[pool].sum())
    keep = citing != cited
    return _symmetric_adjacency(num_nodes, citing[keep], cited[keep])


def synthetic_citation_graph(
    num_nodes: int = 2708,
    num_features: int = 1433,
    num_classes: int = 7,
    num_citations: int = 5429,
    num_methods: int = 5,
    seed: int = 0,
) -> CitationGraph:
    """A Cora-sized stand-in with the structure a matching model can learn from.

    Every paper has a community (its class label), a "method" shared across communities,
    and an appeal. Its ~16 words mix community words, method words and Zipf-distributed
    background words; the first ``num_features // 50`` "impact" words appear more often the
    higher the appeal. A citing paper (uniform) cites within its community with probability
    0.85 and within its method with probability 0.8, choosing among the candidates in
    proportion to appeal. Graph partitions then follow communities, and inside a part the
    edges follow methods: an interaction between the two endpoints' words that recurs in
    every part, as topics do in Cora. Defaults are Cora's counts.
    """
    checks = (
        ("num_nodes", num_nodes, 2),
        ("num_features", num_features, 50),
        ("num_classes", num_classes, 1),
        ("num_citations", num_citations, 1),
        ("num_methods", num_methods, 1),
    )
    for key, value, low in checks:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
    n_impact = num_features // 50
    per_group = min(40, (num_features - n_impact) // (2 * (num_classes + num_methods)))
    if per_group < 1:
        raise ValueError(
            f"num_features={num_features} is too small for {num_classes} classes and {num_methods} methods"
        )
    rng = np.random.default_rng(seed)
    community = rng.choice(num_classes, size=num_nodes, p=rng.dirichlet(np.full(num_classes, 5.0)))
    method = rng.integers(num_methods, size=num_nodes)
    appeal = rng.lognormal(0.0, 1.0, size=num_nodes)
    # Both steps draw from rng in this order; reordering them would change every seed's graph.
    features = _synthetic_words(rng, community, method, appeal, num_features, num_classes, num_methods, per_group)
    adjacency = _synthetic_citations(rng, community, method, appeal, num_citations, num_classes, num_methods)
    ids = rng.choice(np.arange(10_000, 10_000 + 100 * num_nodes), size=num_nodes, replace=False)
    return CitationGraph(
        features,
        community.astype(np.int64),
        tuple(f"community_{c}" for c in range(num_classes)),
        adjacency,
        tuple(str(i) for i in ids),
    )


def write_synthetic_cora(root: str | Path, seed: int = 0, num_nodes: int = 2708) -> Path:
    """Write :func:`synthetic_citation_graph` to ``root`` in the LINQS format; returns ``root``."""
    return write_linqs(synthetic_citation_graph(num_nodes=num_nodes, seed=seed), root)
