"""End to end on tiny files in the published formats (written by ``dataset_fixtures``):
CLEVR with masks and ClevrTex through the image runner and the CLI (load, train a few steps,
evaluate, Table 1), MOVi-A clips through the video runner with an untrained frame-pair model.

Oracles: ground-truth labels come from the arrays the fixtures wrote, cropped and resized with
PIL (nearest); ARI-FG is recomputed with scikit-learn from the very masks (and matchings) the
report scored, captured on their way into the metrics, and those masks are checked against the
checkpointed model's own forward pass within float tolerance. An untrained or barely trained
model's masks are near ties (below 1e-5 apart on almost every pixel), so a second forward pass
with another batching may flip argmax pixels: the oracle never takes the argmax of anything
but the scored masks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

import dataset_fixtures as fx
from cutslots import cli
from cutslots.config import experiment_from_dict as config_from_dict
from cutslots.config import to_dict
from cutslots.data import registry
from cutslots.data.clevrtex import ClevrTex
from cutslots.data.registry import build_dataset, build_video_dataset
from cutslots.experiments import discovery, evaluation, video
from cutslots.models.builders import build_autoencoder, build_video_model
from cutslots.train.checkpoint import load_checkpoint, save_checkpoint

SIZE = 32  # 192 px crops -> 32 px: nearest picks source pixel 6 i + 3, as PIL does
CLEVR_BOX = (64, 29, 256, 221)  # Slot Attention's crop, PIL (left, top, right, bottom)
CLEVRTEX_BOX = (64, 24, 256, 216)  # ClevrTex's official centred 192 px crop
MOVI_BOX = (13, 13, 115, 115)  # int(0.8 * 128) = 102 px, centred
TRAIN = {
    "steps": 2,
    "batch_size": 2,
    "optimizer": {"lr": 1e-3},
    "warmup_steps": 0,
    "decay_steps": 10,
    "log_every": 1,
    "eval_every": None,
    "checkpoint_every": None,
    "device": "cpu",
}


def tiny_model(encoder: str = "cnn") -> dict[str, Any]:
    return {
        "num_slots": 4,
        "slot_dim": 8,
        "encoder": {"kind": encoder, "channels": 8, "resnet_blocks": 1},
        "decoder": {"channels": 8},
        "grouping": {"kind": "cut", "hidden": 8},
    }


def pil_labels(labels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    image = Image.fromarray(labels.astype(np.uint8)).crop(box)
    return np.array(image.resize((SIZE, SIZE), Image.NEAREST)).astype(np.int64)


def sklearn_ari_fg(true: np.ndarray, masks: torch.Tensor) -> float:
    """Mean ARI-FG over images: true (B, H, W) labels, masks (B, K, H, W) model masks."""
    pred = masks.argmax(dim=1).numpy()
    scores = [adjusted_rand_score(t[t > 0], p[t > 0]) for t, p in zip(true, pred) if (t > 0).any()]
    return float(np.mean(scores))


@pytest.fixture
def scored(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every (true labels (B, H, W), decoder masks (B, K, H, W)) batch the image evaluation
    scores, in order: the masks the reported metrics were computed from."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = evaluation.batch_metrics

    def spy(images: torch.Tensor, true_masks: torch.Tensor, out: dict[str, torch.Tensor]):
        seen.append((true_masks.clone(), out["masks"].detach().cpu().clone()))
        return real(images, true_masks, out)

    monkeypatch.setattr(evaluation, "batch_metrics", spy)
    return seen


def take_scored(scored: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> tuple[np.ndarray, torch.Tensor]:
    """Pop the next ``n`` scored images: (true labels (n, H, W), masks (n, K, H, W))."""
    true, masks, count = [], [], 0
    while count < n:
        t, m = scored.pop(0)
        true.append(t)
        masks.append(m)
        count += len(t)
    assert count == n, "an evaluation batch straddles two evaluation sets"
    return torch.cat(true).numpy(), torch.cat(masks)


def check_scored_set(scored, n: int, true: np.ndarray, masks: torch.Tensor, ari_fg: float) -> None:
    """The next ``n`` scored images hold the oracle labels ``true`` and the model's ``masks``
    (float tolerance), and ``ari_fg`` is scikit-learn's ARI-FG of the scored masks."""
    scored_true, scored_masks = take_scored(scored, n)
    np.testing.assert_array_equal(scored_true, true)
    torch.testing.assert_close(scored_masks, masks, rtol=1e-4, atol=1e-5)
    assert ari_fg == pytest.approx(sklearn_ari_fg(true, scored_masks), abs=1e-9)


def model_masks(run_dir: Path, images: list[torch.Tensor]) -> torch.Tensor:
    """The checkpointed model's masks (B, K, H, W) for ``images``, as one batch."""
    config = config_from_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True)["config"])
    model = build_autoencoder(config.model, config.data.image_size)
    load_checkpoint(run_dir / "checkpoint.pt", model)
    model.eval()
    with torch.no_grad():
        return model(torch.stack(images))["masks"]


def table_rows(text: str) -> dict[str, list[str]]:
    """Table 1 rows (decoder masks) of printed output: set name -> its three cells."""
    lines = text.splitlines()
    assert lines[0] == "Decoder masks:" and lines[1] == "| set | mIoU (%) | ARI-FG (%) | MSE |"
    end = lines.index("", 1)
    verdicts = lines.index("", end + 1)  # one sentence per set on the decoder's fixed layout
    assert all(": " in line for line in lines[end + 1 : verdicts]) and verdicts - end - 1 == end - 3
    assert lines[verdicts + 1] == "Grouping masks:"  # the cut model's k-partition follows
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[3:end])}


def check_row(cells: list[str], m: dict[str, Any]) -> None:
    assert cells == [
        f"{100 * m['miou']['mean']:.2f} ± {100 * m['miou']['std']:.2f}",
        f"{100 * m['ari_fg']['mean']:.2f} ± {100 * m['ari_fg']['std']:.2f}",
        f"{m['mse']['mean']:.1f} ± {m['mse']['std']:.1f}",
    ]


# ------------------------------------------------------------------ CLEVR with masks


@pytest.fixture
def clevr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[dict[str, np.ndarray]]]:
    """8 scenes; the runner's splits shrunk to records [0, 4) / [4, 5) / [5, 8)."""
    rng = np.random.default_rng(0)
    scenes = [fx.clevr_scene(rng, k) for k in (2, 8, 3, 7, 1, 9, 4, 10)]
    root = tmp_path / "clevr"
    fx.write_clevr_with_masks(root, scenes)
    monkeypatch.setattr(registry, "CLEVR_SPLITS", {"train": (0, 4), "val": (4, 5), "test": (5, None)})
    return root, scenes


def test_clevr6_trains_and_reports_table1(clevr, scored, tmp_path, capsys):
    root, scenes = clevr
    run_dir = tmp_path / "run"
    raw = {
        "name": "clevr6-tiny",
        "model": tiny_model("cnn"),
        "data": {
            "dataset": "clevr",
            "variant": "clevr6",
            "root": str(root),
            "image_size": SIZE,
            "eval_variants": ["full"],
        },
        "train": {**TRAIN, "out_dir": str(run_dir)},
    }
    config = tmp_path / "clevr.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert cli.main(["train", "--config", str(config)]) == 0
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 2

    metrics = json.loads((run_dir / "metrics.json").read_text())
    visible = [int(s["visibility"][1:].sum()) for s in scenes]
    test_ids = {"clevr6": [i for i in range(5, 8) if visible[i] <= 6], "full": [5, 6, 7]}
    assert 0 < len(test_ids["clevr6"]) < 3  # the filter matters on this fixture
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == list(metrics) == ["clevr6", "full"]
    for name, ids in test_ids.items():
        assert metrics[name]["num_images"] == len(ids)
        true = np.stack([pil_labels(scenes[i]["mask"][..., 0].argmax(axis=0), CLEVR_BOX) for i in ids])
        items = list(build_dataset(config_from_dict(raw).data, "test", name))
        assert [item["index"] for item in items] == ids
        masks = model_masks(run_dir, [item["image"] for item in items])
        check_scored_set(scored, len(ids), true, masks, metrics[name]["ari_fg"]["mean"])
        check_row(rows[name], metrics[name])
    assert not scored  # every scored batch was checked


def test_clevr_final_report_refused_under_multi_rank_ddp(clevr, tmp_path, monkeypatch):
    # As seen from rank 0 of 2: the streamed test set would give rank 0 only its records.
    root, _ = clevr
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 0)
    run_dir = tmp_path / "run"
    config = config_from_dict(
        {
            "name": "clevr-ddp",
            "model": tiny_model("cnn"),
            "data": {"dataset": "clevr", "root": str(root), "image_size": SIZE},
            "train": {**TRAIN, "steps": 1, "out_dir": str(run_dir)},
        }
    )
    with pytest.raises(ValueError, match=r"\['full'\] are streamed .* 2 DDP ranks.*cutslots eval"):
        discovery.run_experiment(config)
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "metrics.json").exists()


def test_clevr_counts_and_variants_are_checked(clevr):
    root, _ = clevr
    data = config_from_dict(
        {"name": "x", "data": {"dataset": "clevr", "root": str(root), "num_eval": 2, "image_size": SIZE}}
    ).data
    with pytest.raises(ValueError, match=r"data.num_eval: 2 records .* \[4, 5\)"):
        build_dataset(data, "val")
    assert [item["index"] for item in build_dataset(data, "test")] == [5, 6]  # first 2 records
    with pytest.raises(ValueError, match="data.variant: CLEVR variants are .*'clevr7'"):
        build_dataset(data, "test", "clevr7")


# ------------------------------------------------------------------ ClevrTex


def test_clevrtex_trains_then_evaluates_ood_and_camo(scored, tmp_path, capsys):
    root = tmp_path / "clevrtex"
    written = {
        "full": fx.write_clevrtex(root, "full", 20, seed=0),
        "outd": fx.write_clevrtex(root, "outd", 3, seed=1),
        "camo": fx.write_clevrtex(root, "camo", 10, seed=2),
    }
    run_dir = tmp_path / "run"
    raw = {
        "name": "clevrtex-tiny",
        "model": tiny_model("resnet"),
        "data": {"dataset": "clevrtex", "root": str(root), "image_size": SIZE},
        "train": {**TRAIN, "out_dir": str(run_dir)},
    }
    config = tmp_path / "clevrtex.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert cli.main(["train", "--config", str(config)]) == 0
    assert list(table_rows(capsys.readouterr().out)) == ["full"]
    scored.clear()  # the training run's own report; the evaluation below is checked

    # The data moved since training: --root points the checkpoint's config at it.
    moved = tmp_path / "moved"
    root.rename(moved)
    eval_dir = tmp_path / "eval"
    assert (
        cli.main(
            [
                "eval",
                str(run_dir / "checkpoint.pt"),
                "--root",
                str(moved),
                "--variants",
                "outd",
                "camo",
                "--out",
                str(eval_dir),
            ]
        )
        == 0
    )
    rows = table_rows(capsys.readouterr().out)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert list(rows) == list(metrics) == ["full", "outd", "camo"]
    # Official split: test = the first 10 % of the sorted indices; outd is all test data.
    test_ids = {"full": [0, 1], "outd": [0, 1, 2], "camo": [0]}
    for name, ids in test_ids.items():
        assert metrics[name]["num_images"] == len(ids)
        true = np.stack([pil_labels(written[name][i][1], CLEVRTEX_BOX) for i in ids])
        ds = ClevrTex(moved, name, split=None, resolution=SIZE)
        masks = model_masks(run_dir, [ds[i]["image"] for i in ids])
        check_scored_set(scored, len(ids), true, masks, metrics[name]["ari_fg"]["mean"])
        check_row(rows[name], metrics[name])
    assert not scored
    assert sorted(p.name for p in eval_dir.glob("decomposition_*.png")) == [
        "decomposition_camo.png",
        "decomposition_full.png",
        "decomposition_outd.png",
    ]


def test_clevrtex_and_dataset_errors(tmp_path):
    root = tmp_path / "clevrtex"
    fx.write_clevrtex(root, "full", 10)
    data = config_from_dict(
        {"name": "x", "data": {"dataset": "clevrtex", "root": str(root), "num_eval": 2, "image_size": SIZE}}
    ).data
    with pytest.raises(ValueError, match=r"data.num_eval: 2 images asked for, .* only 1"):
        build_dataset(data, "test")
    with pytest.raises(ValueError, match="data.variant: ClevrTex variants are .*'ood'"):
        build_dataset(data, "test", "ood")
    with pytest.raises(FileNotFoundError, match="clevrtex_camo"):
        build_dataset(data, "test", "camo")
    movi = config_from_dict({"name": "x", "data": {"dataset": "movi_a", "root": "/x"}}).data
    with pytest.raises(ValueError, match="data.dataset: 'movi_a' is not an image"):
        build_dataset(movi, "train")


# ------------------------------------------------------------------ MOVi-A


def track_labels(masks: torch.Tensor, matchings: torch.Tensor) -> np.ndarray:
    """Space-time labels of one clip: masks (T, K, H, W), matchings (T-1, K, K) -> (T, H, W).

    Frame 0's slot k is track k; slot j of frame t+1 takes the track of the slot i the
    Hungarian matching (max total weight) pairs it with."""
    steps, slots = masks.shape[:2]
    track = np.zeros((steps, slots), dtype=np.int64)
    track[0] = np.arange(slots)
    for t in range(steps - 1):
        rows, cols = linear_sum_assignment(matchings[t].numpy(), maximize=True)
        track[t + 1, cols] = track[t, rows]
    argmax = masks.argmax(dim=1).numpy()
    return np.stack([track[t][argmax[t]] for t in range(steps)])


def test_movi_a_clips_evaluated_with_an_untrained_frame_pair_model(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    clips = [fx.movi_clip(rng, 3, 128, n) for n in (2, 3)]
    root = tmp_path / "movi"
    fx.write_movi_a(root, {"train": [[fx.movi_clip(rng, 3, 128, 2)]], "validation": [clips]})
    config = config_from_dict(
        {
            "name": "movi-tiny",
            "model": tiny_model("cnn"),
            "data": {"dataset": "movi_a", "root": str(root), "image_size": SIZE},
            "train": {**TRAIN, "out_dir": str(tmp_path / "run")},
        }
    )
    items = list(build_video_dataset(config.data, "eval", "clips"))
    assert len(items) == 2
    for item, (_, segmentations) in zip(items, clips):
        assert item["video"].shape == (3, 3, SIZE, SIZE)
        np.testing.assert_array_equal(item["mask"].numpy(), np.stack([pil_labels(s, MOVI_BOX) for s in segmentations]))

    # Capture what the report scores: (true (B, T, H, W), masks (B, T, K, H, W), matchings).
    scored: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    real = video.evaluate_tracks

    def spy(true_labels, masks, matchings, method="hungarian"):
        scored.append((true_labels.clone(), masks.clone(), matchings.clone()))
        return real(true_labels, masks, matchings, method)

    monkeypatch.setattr(video, "evaluate_tracks", spy)
    torch.manual_seed(0)
    model = build_video_model(config.model, SIZE)
    checkpoint = save_checkpoint(tmp_path / "run" / "checkpoint.pt", model, step=0, config=to_dict(config))
    report = video.evaluate_video_checkpoint(checkpoint, out_dir=tmp_path / "eval")
    assert report["metrics"]["num_clips"] == 2
    assert (tmp_path / "eval" / "table2.txt").read_text() == report["table"] + "\n"
    # The first batch is the whole-clip evaluation (both clips); the far-apart pair comes after.
    true, masks, matchings = scored[0]
    assert masks.shape[:2] == (2, 3)
    model.eval()
    for index, item in enumerate(items):
        np.testing.assert_array_equal(true[index].numpy(), item["mask"].numpy())
        out = video.clip_outputs(model, item["video"][None])
        torch.testing.assert_close(masks[index], out["masks"][0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(matchings[index], out["matchings"][0], rtol=1e-4, atol=1e-5)
        labels = track_labels(masks[index], matchings[index])
        clip_true = item["mask"].numpy()
        expected = adjusted_rand_score(clip_true[clip_true > 0], labels[clip_true > 0])
        assert report["per_clip"]["ari_fg"][index] == pytest.approx(expected, abs=1e-9)
