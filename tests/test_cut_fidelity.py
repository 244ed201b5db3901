import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cutslots import cli
from cutslots.config import ConfigError, load_config, resolve_config, to_dict
from cutslots.experiments.cut_fidelity import (
    CutFidelityConfig,
    boykov_jolly_weights,
    compare,
    cut_value,
    exact_min_cut,
    load_photo,
    seed_masks,
    sweep_cut,
)
from cutslots.qp import GridCutQP

CONFIG = resolve_config("cut_fidelity")
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

OFFSETS = {0: (0, 1), 1: (0, -1), 2: (1, 0), 3: (-1, 0)}


def oracle_cut(weights: np.ndarray, source_side: np.ndarray) -> float:
    """Cut capacity by walking every directed edge of the grid graph explicitly."""
    H, W = source_side.shape
    total = 0.0
    for i, j in itertools.product(range(H), range(W)):
        if not source_side[i, j]:
            total += weights[4, i, j]  # s -> v with v on the sink side
        else:
            total += weights[5, i, j]  # v -> t with v on the source side
            for ch, (di, dj) in OFFSETS.items():
                ni, nj = i + di, j + dj
                if 0 <= ni < H and 0 <= nj < W and not source_side[ni, nj]:
                    total += weights[ch, i, j]
    return total


def all_segmentations(H: int, W: int):
    for bits in itertools.product([False, True], repeat=H * W):
        yield np.array(bits).reshape(H, W)


def test_hand_built_two_pixel_graph():
    # Pixels a (left) and b (right): s->a 5, s->b 1, a->t 1, b->t 4, a<->b 2.
    # Cuts: {a,b} source: 1+4 = 5; none: 5+1 = 6; only a: a->t 1 + s->b 1 + a->b 2 = 4;
    # only b: s->a 5 + b->t 4 + b->a 2 = 11. Minimum 4 with a foreground, b background.
    w = np.zeros((6, 1, 2))
    w[0, 0, 0] = w[1, 0, 1] = 2.0
    w[4, 0] = [5.0, 1.0]
    w[5, 0] = [1.0, 4.0]
    want = {(True, True): 5.0, (False, False): 6.0, (True, False): 4.0, (False, True): 11.0}
    for seg, value in want.items():
        assert cut_value(w, np.array([seg])) == pytest.approx(value)
    side, flow = exact_min_cut(w)
    assert flow == pytest.approx(4.0)
    np.testing.assert_array_equal(side, [[True, False]])


def test_directed_maxflow_graph_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(3):
        w = rng.uniform(0, 2, size=(6, 3, 3))
        w[:4] *= rng.random((4, 3, 3)) < 0.7  # some missing edges, asymmetric capacities
        side, flow = exact_min_cut(w)  # off-grid entries (e.g. right in the last column) are junk
        values = [oracle_cut(w, seg) for seg in all_segmentations(3, 3)]
        assert flow == pytest.approx(min(values), rel=1e-9)
        assert cut_value(w, side) == pytest.approx(flow, rel=1e-9)
        assert oracle_cut(w, side) == pytest.approx(flow, rel=1e-9)
        for seg in list(all_segmentations(3, 3))[::37]:
            assert cut_value(w, seg) == pytest.approx(oracle_cut(w, seg))


def test_sweep_cut_equals_every_level_set():
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, size=(6, 4, 5))
    score = rng.integers(0, 6, size=(4, 5)).astype(float)  # ties on purpose
    thresholds, values = sweep_cut(w, score)
    np.testing.assert_array_equal(thresholds[1:], np.unique(score))
    assert thresholds[0] == -np.inf
    for tau, value in zip(thresholds, values):
        assert value == pytest.approx(oracle_cut(w, score > tau))


def test_boykov_jolly_weights_by_hand():
    rng = np.random.default_rng(1)
    img = rng.random((6, 7, 3))
    fg, bg = seed_masks(8)
    fg, bg = fg[1:7, :7], bg[1:7, :7]
    lam, bins = 2.5, 4
    w, beta = boykov_jolly_weights(img, fg, bg, lam, bins)

    diffs = [((img[i, j] - img[i, j + 1]) ** 2).sum() for i in range(6) for j in range(6)]
    diffs += [((img[i, j] - img[i + 1, j]) ** 2).sum() for i in range(5) for j in range(7)]
    assert beta == pytest.approx(1 / (2 * np.mean(diffs)))
    for i, j in itertools.product(range(6), range(7)):
        for ch, (di, dj) in OFFSETS.items():
            ni, nj = i + di, j + dj
            inside = 0 <= ni < 6 and 0 <= nj < 7
            want = lam * np.exp(-beta * ((img[i, j] - img[ni, nj]) ** 2).sum()) if inside else 0.0
            assert w[ch, i, j] == pytest.approx(want)

    edges = np.linspace(0, 1, bins + 1)
    prob = []
    for seeds in (fg, bg):
        hist, _ = np.histogramdd(img[seeds], bins=[edges] * 3)
        prob.append((hist + 1) / (hist + 1).sum())
    K = 1 + w[:4].sum(0).max()
    for i, j in itertools.product(range(6), range(7)):
        cell = tuple(np.minimum((img[i, j] * bins).astype(int), bins - 1))
        src = K if fg[i, j] else 0.0 if bg[i, j] else -np.log(prob[1][cell])
        snk = K if bg[i, j] else 0.0 if fg[i, j] else -np.log(prob[0][cell])
        assert w[4, i, j] == pytest.approx(src)
        assert w[5, i, j] == pytest.approx(snk)


@pytest.fixture(scope="module")
def photo_case():
    img = load_photo("coffee", 16)
    fg, bg = seed_masks(16)
    w, _ = boykov_jolly_weights(img, fg, bg, lam=3.0)
    return img, w


def test_min_cut_is_below_relaxed_and_random_segmentations(photo_case):
    _, w = photo_case
    exact, flow = exact_min_cut(w)
    min_cut = cut_value(w, exact)
    assert min_cut == pytest.approx(flow, rel=1e-9)
    sol = GridCutQP(16, 16, gamma=1.0)(torch.from_numpy(w[None]))
    p, p_s, p_t = sol.p[0].numpy(), sol.p_s.item(), sol.p_t.item()
    assert cut_value(w, p > (p_s + p_t) / 2) >= min_cut
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert cut_value(w, rng.random((16, 16)) < rng.random()) >= min_cut
    scores = compare(w, exact, min_cut, p, p_s, p_t)
    assert scores["cut_ratio_mid"] >= 1 and scores["cut_ratio_sweep"] >= 1
    assert scores["cut_ratio_sweep"] <= scores["cut_ratio_mid"]  # the sweep includes the midpoint cut
    assert 0 <= scores["agreement_mid"] <= 1 and 0 <= scores["iou_sweep"] <= 1


def test_documented_relaxation_facts(photo_case):
    """docs/cut-fidelity.md: in the paper form p_s - p_t = (2 g b0 - sum(source + sink)/2) / (g (N/2 + 3)),
    and the thresholded segmentations do not depend on gamma."""
    _, w = photo_case
    n = 16 * 16
    segs = []
    for gamma in (0.1, 10.0):
        sol = GridCutQP(16, 16, gamma=gamma)(torch.from_numpy(w[None]))
        gap = (2 * gamma * 1.0 - (w[4].sum() + w[5].sum()) / 2) / (gamma * (n / 2 + 3))
        assert (sol.p_s - sol.p_t).item() == pytest.approx(gap, rel=1e-9)
        p = sol.p[0].numpy()
        mid = (sol.p_s + sol.p_t).item() / 2
        thresholds, values = sweep_cut(w, p)
        # The exact comparison below rests on clear margins, not on ties breaking alike for
        # both gammas: no p near the midpoint, distinct p values (so the level sets are the
        # same for both), and a unique best sweep cut.
        scale = np.abs(p).max()
        assert np.abs(p - mid).min() > 1e-6 * scale
        assert np.diff(np.sort(p.ravel())).min() > 1e-9 * scale
        best, second = np.sort(values)[:2]
        assert second - best > 1e-6 * best
        segs.append((p > mid, p > thresholds[np.argmin(values)]))
    np.testing.assert_array_equal(segs[0][0], segs[1][0])
    np.testing.assert_array_equal(segs[0][1], segs[1][1])


def test_end_to_end_tiny(tmp_path, capsys):
    out = tmp_path / "cf"
    overrides = ["images=[camera, chelsea]", "sizes=[8]", "gammas=[1]", "lambdas=[0, 2]"]
    assert cli.main(["cut-fidelity", "--config", "cut_fidelity", *overrides, "--out", str(out)]) == 0
    report = json.loads((tmp_path / "cf.json").read_text())
    records = report["records"]
    assert len(records) == 2 * 2 * 2  # images x lambdas x forms
    assert {r["form"] for r in records} == {"paper", "released"}
    for r in records:
        assert r["min_cut"] == pytest.approx(r["max_flow"], rel=1e-9)
        assert r["cut_ratio_mid"] >= 1 and r["cut_ratio_sweep"] >= 1 and r["cut_ratio_unary"] >= 1
    released = [r for r in records if r["form"] == "released"]
    assert all(r["p_s_minus_p_t"] == pytest.approx(10.0) for r in released)  # hard terminal constraint, b0 = 10
    assert "| paper | 8 | 2 |" in (tmp_path / "cf.md").read_text()
    assert Image.open(tmp_path / "cf.png").size[0] > 0
    assert "Gamma sweep" in capsys.readouterr().out
    # The result says what produced it: the resolved config, in the JSON and as a rerunnable YAML.
    config = load_config(CONFIG, overrides, schema=CutFidelityConfig)
    assert load_config(tmp_path / "cf.config.yaml", schema=CutFidelityConfig) == config
    assert report["config"] == to_dict(config)


def test_bad_input():
    with pytest.raises(ValueError, match="image must be one of"):
        load_photo("lena", 16)
    with pytest.raises(ValueError, match="size"):
        load_photo("camera", 2)
    fg, bg = seed_masks(8)
    with pytest.raises(ValueError, match="overlap"):
        boykov_jolly_weights(np.zeros((8, 8, 1)), fg, fg, 1.0)
    with pytest.raises(ValueError, match="lam"):
        boykov_jolly_weights(np.zeros((8, 8, 1)), fg, bg, -1.0)
    with pytest.raises(ValueError, match="non-negative"):
        exact_min_cut(-np.ones((6, 2, 2)))


# Every range the former command-line flags checked, now named by the dotted key.
@pytest.mark.parametrize(
    "override, key",
    [
        ("sizes=[0]", "sizes[0]"),
        ("sizes=[8, 2]", "sizes[1]"),  # >= 4
        ("sizes=[]", "sizes"),
        ("images=[lena]", "images[0]"),
        ("gammas=[1, 0]", "gammas[1]"),
        ("gammas=[.nan]", "gammas[0]"),
        ("lambdas=[-1]", "lambdas[0]"),
        ("forms=[exact]", "forms[0]"),
        ("bins=0", "bins"),
    ],
)
def test_bad_settings_name_the_key_and_the_override(override, key, capsys):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIG, [override], schema=CutFidelityConfig)
    assert err.value.key == key and err.value.source == f"{CONFIG} (override {override!r})"
    assert cli.main(["cut-fidelity", "--config", "cut_fidelity", override]) == 2
    assert f"{CONFIG} (override {override!r}): {key}: " in capsys.readouterr().err


def test_yaml_has_the_settings_of_the_committed_results():
    committed = json.loads((RESULTS / "cut_fidelity.json").read_text())
    config = load_config(CONFIG, schema=CutFidelityConfig)
    assert to_dict(config) == committed["config"] == to_dict(CutFidelityConfig())  # the defaults, too
    assert len(committed["records"]) == (
        len(config.images) * len(config.sizes) * len(config.forms) * len(config.gammas) * len(config.lambdas)
    )
