"""The idealised masks of ``benchmarks/mask_bounds.py`` on hand-counted scenes, with
scikit-learn's ARI as the oracle for ARI-FG."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_mask_bounds", ROOT / "benchmarks" / "mask_bounds.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _two_squares() -> np.ndarray:
    mask = np.zeros((32, 32), dtype=np.int64)
    mask[2:10, 2:10] = 1  # 8 x 8, centroid (5.5, 5.5)
    mask[20:28, 18:26] = 2
    return mask


def test_equal_area_disc_loses_exactly_the_square_corners(bench):
    # Side 8: r = 8 / sqrt(pi) = 4.51, r^2 = 20.4. Pixel offsets from the centroid are
    # +-0.5 ... +-3.5; only (3.5, 3.5) (24.5 > 20.4) lies outside, so 4 corner pixels per
    # square go to the background and 60 of 64 stay with their object.
    mask = _two_squares()
    labels = bench.disc_labels(mask, 1.0)
    for k in (1, 2):
        assert (labels[mask == k] == k).sum() == 60
        assert (labels[mask == k] == 0).sum() == 4
    np.testing.assert_allclose(bench.pixel_destinations(mask[None], labels[None]), [120 / 128, 8 / 128, 0.0])


def test_enlarged_discs_cover_every_object_pixel(bench):
    # r = 1.5 * 4.51 = 6.77 reaches the corners (sqrt(24.5) = 4.95) and not the other square.
    mask = _two_squares()
    labels = bench.disc_labels(mask, 1.5)
    assert (labels[mask > 0] == mask[mask > 0]).all()
    fg = mask > 0
    assert adjusted_rand_score(mask[fg], labels[fg]) == pytest.approx(1.0)


def test_destinations_separate_own_background_and_other_slots(bench):
    true = np.zeros((1, 4, 4), dtype=np.int64)
    true[0, :2, :2] = 1  # 4 object pixels
    pred = np.full((1, 4, 4), 3)  # slot 3 holds the background
    pred[0, 0, :2] = 5  # 2 pixels to the object's own slot (5)...
    pred[0, 1, 0] = 3  # ...1 to the background slot...
    pred[0, 1, 1] = 5
    pred[0, 0, 0] = 7  # ...and 1 to another slot; slot 5 still holds most of it
    np.testing.assert_allclose(bench.pixel_destinations(true, pred), [0.5, 0.25, 0.25])


def test_bad_scale_is_refused(bench):
    with pytest.raises(ValueError, match="scale"):
        bench.disc_labels(_two_squares(), 0.0)


def test_coarse_truth_ties_go_to_the_background_unless_objects_are_preferred(bench):
    mask = np.zeros((4, 4), dtype=np.int64)
    mask[0, :2] = 1  # cell (0, 0): 2 object and 2 background pixels, a tie
    mask[2:, 2:] = 2  # cell (1, 1): all object 2
    mask[3, 0] = 1  # cell (1, 0): 1 object pixel of 4
    majority = bench.coarse_labels(mask, 2, prefer_objects=False)
    objects = bench.coarse_labels(mask, 2, prefer_objects=True)
    np.testing.assert_array_equal(majority[::2, ::2], [[0, 0], [0, 2]])
    np.testing.assert_array_equal(objects[::2, ::2], [[1, 0], [1, 2]])
    assert (objects[:2, :2] == 1).all() and objects.shape == (4, 4)
    with pytest.raises(ValueError, match="factor"):
        bench.coarse_labels(mask, 3, prefer_objects=False)


def test_report_on_the_demo_scenes_matches_sklearn(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    assert bench.main([]) == 0
    rows = [
        line.split(" | ")
        for line in (tmp_path / "mask_bounds.md").read_text().splitlines()
        if line.startswith("| 1.0 |")
    ]
    assert len(rows) == 1
    # The equal-area row, recomputed per image with scikit-learn's ARI over the object pixels.
    config = bench.demo_config()
    ds = next(iter(bench.eval_sets(config.data).values()))
    scores = []
    for i in range(len(ds)):
        mask = ds[i]["mask"].numpy()
        fg = mask > 0
        scores.append(adjusted_rand_score(mask[fg], bench.disc_labels(mask, 1.0)[fg]))
    assert float(rows[0][1]) == pytest.approx(100 * np.mean(scores), abs=0.05)
