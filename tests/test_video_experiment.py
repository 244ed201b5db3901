"""Video experiment runner: models and data from configs, clip evaluation, report files, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import adjusted_rand_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor, nn
from torch.utils.data import Dataset

import dataset_fixtures as fx
from cutslots.cli import main
from cutslots.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig, experiment_from_dict, to_dict
from cutslots.config import load_experiment as load_config
from cutslots.data.moving import MovingScenes
from cutslots.data.registry import build_video_dataset
from cutslots.experiments.video import (
    clip_outputs,
    evaluate_video,
    evaluate_video_checkpoint,
    far_pair_frames,
    format_table2,
    run_video_experiment,
    video_report,
)
from cutslots.models.autoencoder import SlotAutoencoder
from cutslots.models.builders import build_video_model
from cutslots.models.frame_pair import FramePairAutoencoder
from cutslots.nn.matcher import SlotMatcher

TINY_MODEL = {"num_slots": 3, "slot_dim": 16, "encoder": {"channels": 16}, "decoder": {"channels": 16}}


def tiny_model(kind: str, **sections: Any) -> ModelConfig:
    grouping = {"kind": kind, "hidden": 16} if kind == "cut" else {"kind": kind}
    return ModelConfig(**TINY_MODEL, grouping=grouping, **sections)


def tiny_config(out_dir: Path, kind: str = "cut", **data: Any) -> ExperimentConfig:
    return experiment_from_dict(
        {
            "name": f"tiny-{kind}",
            "model": tiny_model(kind).model_dump(),
            "data": {
                "dataset": "moving",
                "image_size": 16,
                "num_train": 2,
                "num_eval": 3,
                "num_frames": 4,
                "min_objects": 1,
                "max_objects": 2,
                **data,
            },
            "train": {
                "steps": 2,
                "batch_size": 2,
                "warmup_steps": 0,
                "log_every": 1,
                "eval_every": None,
                "checkpoint_every": None,
                "out_dir": str(out_dir),
                "device": "cpu",
            },
        }
    )


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExperimentConfig, dict[str, Any]]:
    config = tiny_config(tmp_path_factory.mktemp("video") / "cut")
    torch.manual_seed(0)
    return config, run_video_experiment(config)


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        assert min(image.size) > 50, path


def table_cell(summary: dict[str, float]) -> str:
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"


# ----------------------------------------------------------------- models and data

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_shipped_configs_describe_the_paper_settings() -> None:
    moving = load_config(CONFIGS / "moving.yaml")
    movi = load_config(CONFIGS / "movi_a.yaml", ["data.root=/data/tfds"])
    for config in (moving, movi):
        assert (config.model.grouping.kind, config.model.num_slots) == ("cut", 8)
    assert (moving.data.dataset, movi.data.dataset, movi.data.image_size) == ("moving", "movi_a", 128)
    assert isinstance(build_video_model(moving.model, moving.data.image_size), FramePairAutoencoder)
    with pytest.raises(ValueError, match="root"):
        load_config(CONFIGS / "movi_a.yaml", ["data.root=null"])


def test_build_video_model_from_config() -> None:
    cfg = tiny_model("cut", matching={"form": "assignment", "gamma": 2.0, "temperature": 0.3})
    model = build_video_model(cfg, 16)
    assert isinstance(model, FramePairAutoencoder)
    assert (model.matcher.num_slots, model.matcher.slot_dim, model.matcher.temperature) == (3, 16, 0.3)
    assert model.matcher.qp.form == "assignment" and model.matcher.qp.gamma == 2.0
    out = model(torch.rand(2, 2, 3, 16, 16))
    assert out["masks"].shape == (2, 2, 3, 16, 16) and out["matching"].shape == (2, 3, 3)

    baseline = build_video_model(tiny_model("slot_attention"), 16)
    assert isinstance(baseline, SlotAutoencoder) and not any(isinstance(m, SlotMatcher) for m in baseline.modules())


def test_moving_datasets_give_pairs_frames_and_clips() -> None:
    data = DataConfig(dataset="moving", image_size=16, num_train=2, num_eval=1, num_frames=3, max_objects=2)
    videos = MovingScenes(split="train", size=16, num_videos=2, num_frames=3, max_objects=2)
    pairs = build_video_dataset(data, "train", "pairs")
    frames = build_video_dataset(data, "train", "frames")
    assert len(pairs) == 2 * 2 and len(frames) == 2 * 3
    assert torch.equal(pairs[3]["frames"], videos[1]["video"][1:3])
    assert torch.equal(frames[4]["image"], videos[1]["video"][1])
    assert torch.equal(frames[4]["mask"], videos[1]["mask"][1])
    clips = build_video_dataset(data, "eval", "clips")
    expected = MovingScenes(split="test", size=16, num_videos=1, num_frames=3, max_objects=2)[0]
    assert len(clips) == 1 and torch.equal(clips[0]["video"], expected["video"])


def test_movi_a_datasets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = [fx.movi_clip(rng, 3, 128, 2) for _ in range(2)]
    fx.write_movi_a(tmp_path, {"train": [train], "validation": [[fx.movi_clip(rng, 3, 128, 2)]]})
    data = DataConfig(dataset="movi_a", root=str(tmp_path), image_size=16)
    pairs = list(build_video_dataset(data, "train", "pairs"))
    frames = list(build_video_dataset(data, "train", "frames"))
    clips = list(build_video_dataset(data, "eval", "clips"))
    assert len(pairs) == 2 * 2 and len(frames) == 2 * 3 and len(clips) == 1
    assert pairs[0]["frames"].shape == (2, 3, 16, 16) and clips[0]["video"].shape == (3, 3, 16, 16)
    train_clips = list(build_video_dataset(data, "train", "clips"))
    assert torch.equal(frames[4]["image"], train_clips[1]["video"][1])
    assert torch.equal(pairs[3]["mask"], train_clips[1]["mask"][1:3])
    with pytest.raises(ValueError, match="data.num_train.*movi_a"):
        build_video_dataset(DataConfig(dataset="movi_a", root=str(tmp_path), num_train=5), "train", "pairs")


@pytest.mark.parametrize("kind", ["cut", "slot_attention"])
def test_run_on_streamed_movi_a(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(1)
    fx.write_movi_a(
        tmp_path / "tfds",
        {
            "train": [[fx.movi_clip(rng, 3, 128, 2) for _ in range(2)]],
            "validation": [[fx.movi_clip(rng, 3, 128, 2) for _ in range(3)]],
        },
    )
    config = tiny_config(
        tmp_path / "run", kind=kind, dataset="movi_a", root=str(tmp_path / "tfds"), num_train=None, num_eval=2
    )
    report = run_video_experiment(config)
    assert report["summary"].step == 2
    assert (report["metrics"]["num_clips"], report["metrics"]["clip_length"]) == (2, 3)
    assert report["metrics"]["far_pair"]["frames"] == [1, 2]


def test_dataset_errors() -> None:
    with pytest.raises(ValueError, match="data.dataset.*'moving', 'movi_a'.*'synthetic'"):
        build_video_dataset(DataConfig(dataset="synthetic"), "train", "pairs")
    with pytest.raises(ValueError, match="unit"):
        build_video_dataset(DataConfig(dataset="moving"), "train", "video")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("steps", "frames", "clamped"),
    [
        (24, (5, 20), False),
        (21, (5, 20), False),
        (12, (5, 11), True),
        (4, (2, 3), True),
        (2, (0, 1), True),
    ],
)
def test_far_pair_frames(steps: int, frames: tuple[int, int], clamped: bool) -> None:
    got, note = far_pair_frames(steps)
    assert got == frames
    assert (note is not None) == clamped
    if clamped:
        assert f"{steps} frames" in note and f"{frames[0]} and {frames[1]}" in note


# ----------------------------------------------------------------- evaluation against hand-made oracles


class OracleDecoder(nn.Module):
    """(slot_recons, masks, recon) from given masks (N, K, H, W), like the real decoder's output."""

    def forward(self, masks: Tensor, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return images[:, None].expand(-1, masks.shape[1], -1, -1, -1), masks, images


class OracleSlots(nn.Module):
    """A single-frame 'model' reading the ground truth from the image: red = object id / 10,
    green = frame index / 10. Object g sits in slot (g + t) % K of frame t (a different order
    every frame); its slot vector is one_hot(g) (``identity=True``, so Hungarian matching on
    inner products recovers the objects) or one_hot(slot index) (``identity=False``, so the
    matching links slot i to slot i: the wrong object in every frame after the first).
    ``one_slot_grouping=True`` adds grouping masks at half resolution that put every pixel in
    slot 0."""

    def __init__(self, num_slots: int, identity: bool, one_slot_grouping: bool = False) -> None:
        super().__init__()
        self.num_slots, self.identity, self.one_slot_grouping = num_slots, identity, one_slot_grouping
        self.decoder = OracleDecoder()

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        ids = (images[:, 0] * 10).round().long()  # (N, H, W)
        t = (images[:, 1, 0, 0] * 10).round().long()  # (N,)
        slot = (ids + t[:, None, None]) % self.num_slots
        masks = nn.functional.one_hot(slot, self.num_slots).permute(0, 3, 1, 2).float()
        k = torch.arange(self.num_slots)
        owner = (k[None] - t[:, None]) % self.num_slots  # object held by slot k: (N, K)
        slots = nn.functional.one_hot(owner if self.identity else k.expand_as(owner), self.num_slots).float()
        _, masks, recon = self.decoder(masks, images)
        out = {"masks": masks, "slots": slots, "recon": recon}
        if self.one_slot_grouping:
            grouping = torch.zeros(images.shape[0], self.num_slots, images.shape[2] // 2, images.shape[3] // 2)
            grouping[:, 0] = 1.0
            out["grouping_masks"] = grouping
        return out


class Clips(Dataset):
    """Clips whose objects 0..K-1 (0 = background) tile the frame and shift one column per frame."""

    def __init__(self, n: int, steps: int, size: int = 6, num_objects: int = 3) -> None:
        self.items = []
        for c in range(n):
            cols = (np.arange(size)[None, :] + np.arange(steps)[:, None] + c) % num_objects  # (T, W)
            mask = torch.from_numpy(np.repeat(cols[:, None, :], size, axis=1))  # (T, H, W)
            video = torch.zeros(steps, 3, size, size)
            video[:, 0] = mask / 10
            video[:, 1] = torch.arange(steps)[:, None, None] / 10
            self.items.append({"video": video, "mask": mask})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return self.items[i]


def test_evaluate_video_perfect_tracking() -> None:
    result = evaluate_video(OracleSlots(3, identity=True), Clips(3, steps=4), batch_size=2)
    assert result["num_clips"] == 3
    for key in ("ari", "ari_fg", "matching_accuracy"):
        np.testing.assert_allclose(result["per_clip"][key], 1.0)


def test_evaluate_video_scores_the_grouping_masks_with_the_same_tracks() -> None:
    clips = Clips(3, steps=4)
    result = evaluate_video(OracleSlots(3, identity=True, one_slot_grouping=True), clips, batch_size=2)
    for key in ("ari", "ari_fg", "matching_accuracy"):
        np.testing.assert_allclose(result["per_clip"][key], 1.0)
    # Every pixel in slot 0 of every frame, tracked with the object-following links: slot 0 of
    # frame t+1 continues slot K-1 of frame t, so slot 0 carries tracks 0, 2, 1, 0 in frames 0-3
    # and no object keeps its track through it (accuracy 0).
    np.testing.assert_allclose(result["per_clip"]["grouping_matching_accuracy"], 0.0)
    for c in range(3):
        true = clips[c]["mask"].numpy()  # (T, H, W)
        tracks = np.broadcast_to(np.array([0, 2, 1, 0])[:, None, None], true.shape)
        fg = true.ravel() > 0
        assert result["per_clip"]["grouping_ari"][c] == pytest.approx(adjusted_rand_score(true.ravel(), tracks.ravel()))
        assert result["per_clip"]["grouping_ari_fg"][c] == pytest.approx(
            adjusted_rand_score(true.ravel()[fg], tracks.ravel()[fg])
        )
    assert "grouping_ari" not in evaluate_video(OracleSlots(3, identity=True), Clips(1, steps=2))["per_clip"]


def test_evaluate_video_wrong_links_against_sklearn() -> None:
    clips = Clips(2, steps=3)
    result = evaluate_video(OracleSlots(3, identity=False), clips, batch_size=2)
    # Slot i is linked to slot i: in frame t the track of object g is (g + t) % 3, so every
    # continued object changes track (accuracy 0) and ARI is sklearn's on those labels.
    np.testing.assert_allclose(result["per_clip"]["matching_accuracy"], 0.0)
    for c in range(2):
        true = clips[c]["mask"].numpy()
        tracks = (true + np.arange(3)[:, None, None]) % 3
        assert result["per_clip"]["ari"][c] == pytest.approx(adjusted_rand_score(true.ravel(), tracks.ravel()))
        fg = true.ravel() > 0
        assert result["per_clip"]["ari_fg"][c] == pytest.approx(
            adjusted_rand_score(true.ravel()[fg], tracks.ravel()[fg])
        )


def test_evaluate_video_max_clips_and_frames() -> None:
    clips = Clips(3, steps=4)
    result = evaluate_video(OracleSlots(3, identity=False), clips, batch_size=2, max_clips=1, frames=(0, 2))
    assert result["num_clips"] == 1
    # Frames 0 and 2 with slot i linked to slot i: object g moves from slot g to slot g + 2.
    np.testing.assert_allclose(result["per_clip"]["matching_accuracy"], 0.0)
    with pytest.raises(ValueError, match=r"frames must be .*\[0, 4\)"):
        evaluate_video(OracleSlots(3, identity=True), clips, frames=(0, 4))
    with pytest.raises(ValueError, match="max_clips"):
        evaluate_video(OracleSlots(3, identity=True), clips, max_clips=0)


def test_clip_outputs_frame_pair_model_agrees_with_hungarian_tracks() -> None:
    torch.manual_seed(0)
    model = build_video_model(tiny_model("cut"), 16).eval()
    video = torch.rand(2, 3, 3, 16, 16)
    out = clip_outputs(model, video)
    assert out["slot_recons"].shape == (2, 3, 3, 3, 16, 16) and out["recon"].shape == (2, 3, 3, 16, 16)
    # The reconstruction is the mask-weighted sum of the slot reconstructions (decoder contract).
    torch.testing.assert_close((out["masks"][:, :, :, None] * out["slot_recons"]).sum(2), out["recon"])
    # Frame t's masks come from its frame-1 role in the pair (t, t+1): decode that pair directly.
    pair = model(video[:, 1:3])
    torch.testing.assert_close(out["masks"][:, 1], pair["masks"][:, 0])
    torch.testing.assert_close(out["matchings"][:, 1], pair["matching"])
    # The grouping masks are each frame's k-partition, upsampled to the frame size.
    partition = model.frame_slots(video[:, 1])["masks"]  # (B, K, h, w)
    expected = torch.nn.functional.interpolate(partition, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["grouping_masks"][:, 1], expected)


# ----------------------------------------------------------------- Table 2


def test_table2_layout_mean_and_std_in_percent() -> None:
    results = {
        "Slot Attention": {
            "ari": np.array([0.5, 0.7]),
            "ari_fg": torch.tensor([float("nan"), 0.9], dtype=torch.float64),
            "matching_accuracy": np.array([1.0, 0.5]),
        },
        "Ours": {"ari": np.array([0.8]), "ari_fg": np.array([0.85]), "matching_accuracy": np.array([0.25])},
    }
    lines = format_table2(results).splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["Method", "ARI", "ARI-FG", "Matching acc."]
    assert set(lines[1]) <= {"-", "+"}
    # mean +- population std over clips, NaN excluded: ARI (50, 70) -> 60 +- 10.
    assert [c.strip() for c in lines[2].split("|")] == ["Slot Attention", "60.0 ± 10.0", "90.0 ± 0.0", "75.0 ± 25.0"]
    assert [c.strip() for c in lines[3].split("|")] == ["Ours", "80.0 ± 0.0", "85.0 ± 0.0", "25.0 ± 0.0"]
    with pytest.raises(ValueError, match=r"results\['Ours'\] lacks \['matching_accuracy'\]"):
        format_table2({"Ours": {"ari": np.ones(1), "ari_fg": np.ones(1)}})
    with pytest.raises(ValueError, match="non-empty mapping"):
        format_table2({})


# ----------------------------------------------------------------- bad input


class MixedClips(Dataset):
    def __init__(self, shapes: list[tuple[int, int]]) -> None:
        self.shapes = shapes

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        steps, size = self.shapes[i]
        return {"video": torch.rand(steps, 3, size, size), "mask": torch.zeros(steps, size, size, dtype=torch.long)}


@pytest.mark.parametrize("shapes", [[(3, 16), (4, 16)], [(3, 16), (3, 32)]])
def test_clips_of_different_length_or_size_in_a_batch(shapes: list[tuple[int, int]]) -> None:
    model = build_video_model(tiny_model("slot_attention"), 16)
    with pytest.raises(ValueError, match="same length and size"):
        evaluate_video(model, MixedClips(shapes), batch_size=2)


def test_slot_count_mismatch_between_grouping_and_matcher() -> None:
    base = build_video_model(tiny_model("cut"), 16)
    model = FramePairAutoencoder(
        base.encoder, base.grouping, base.decoder, matcher=SlotMatcher(4, 16, gamma=1.0, temperature=0.1)
    )
    with pytest.raises(ValueError, match=r"\(B, 4, 16\).*got s \(\d+, 3, 16\)"):
        evaluate_video(model, MixedClips([(3, 16)]))


def test_models_and_clip_sets_that_cannot_be_evaluated(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="model must have a .decoder"):
        evaluate_video(nn.Linear(2, 2), Clips(1, steps=2))
    with pytest.raises(ValueError, match="no clips"):
        video_report(OracleSlots(3, identity=True), [], tmp_path, "oracle")


def test_run_rejects_image_datasets(tmp_path: Path) -> None:
    config = ExperimentConfig(
        name="img", model=ModelConfig(), data=DataConfig(dataset="synthetic"), train=TrainConfig(out_dir=str(tmp_path))
    )
    with pytest.raises(ValueError, match="data.dataset.*discovery"):
        run_video_experiment(config)
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------- end to end


def test_run_writes_metrics_table_and_figures(cut_run: tuple[ExperimentConfig, dict[str, Any]]) -> None:
    config, report = cut_run
    out = Path(config.train.out_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "Cut + matching" and metrics["tracking"] == "hungarian"
    assert (metrics["num_clips"], metrics["clip_length"]) == (3, 4)
    for key in ("ari", "ari_fg", "matching_accuracy"):
        assert metrics[key]["n"] + metrics[key]["n_nan"] == 3
        assert -1.0 <= metrics[key]["mean"] <= 1.0
        assert np.allclose(metrics[key]["mean"], np.nanmean(report["per_clip"][key]))
    assert 0.0 <= metrics["matching_accuracy"]["mean"] <= 1.0
    # 4-frame clips: the paper's frames 5 and 20 are clamped, and the note says so.
    assert metrics["far_pair"]["frames"] == [2, 3] and "4 frames" in metrics["far_pair"]["note"]
    table = (out / "table2.txt").read_text().splitlines()
    assert [c.strip() for c in table[0].split("|")] == ["Method", "ARI", "ARI-FG", "Matching acc."]
    cells = [c.strip() for c in table[2].split("|")]
    assert cells == ["Cut + matching"] + [table_cell(metrics[k]) for k in ("ari", "ari_fg", "matching_accuracy")]
    cells = [c.strip() for c in table[3].split("|")]
    assert cells == ["Cut + matching (grouping masks)"] + [
        table_cell(metrics[f"grouping_{k}"]) for k in ("ari", "ari_fg", "matching_accuracy")
    ]
    for name in ("clip_strip.png", "far_pair.png", "loss.png"):
        assert_png(out / name)
    assert (out / "checkpoint.pt").is_file() and (out / "config.yaml").is_file()


def test_slot_attention_baseline_run(tmp_path: Path) -> None:
    raw = to_dict(tiny_config(tmp_path / "sa", kind="slot_attention"))
    raw["train"]["eval_every"] = 2  # one periodic evaluation, at the last step
    report = run_video_experiment(experiment_from_dict(raw))
    metrics = json.loads((tmp_path / "sa" / "metrics.json").read_text())
    assert metrics["method"] == "Slot Attention + Hungarian" and metrics["num_clips"] == 3
    assert report["table"].splitlines()[2].startswith("Slot Attention + Hungarian")
    for name in ("clip_strip.png", "far_pair.png", "loss.png"):
        assert_png(tmp_path / "sa" / name)
    # The evaluation's clip strip in TensorBoard: the final figure's layout (the slots' random
    # initialisation differs between the two drawings, so the pixels may differ).
    tb = EventAccumulator(str(tmp_path / "sa" / "tb"), size_guidance={"images": 0})
    tb.Reload()
    (strip,) = tb.Images("eval/video/clip_strip")
    with Image.open(tmp_path / "sa" / "clip_strip.png") as saved:
        assert (strip.step, strip.width, strip.height) == (2, *saved.size)


def test_evaluate_checkpoint_reproduces_the_run(
    cut_run: tuple[ExperimentConfig, dict[str, Any]], tmp_path: Path
) -> None:
    config, report = cut_run
    again = evaluate_video_checkpoint(Path(config.train.out_dir), out_dir=tmp_path)
    for key in ("ari", "ari_fg", "matching_accuracy"):
        np.testing.assert_allclose(again["per_clip"][key], report["per_clip"][key])
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "table2.txt").is_file()
    fewer = evaluate_video_checkpoint(Path(config.train.out_dir) / "checkpoint.pt", tmp_path / "one", {"num_eval": 1})
    assert fewer["metrics"]["num_clips"] == 1 and fewer["per_clip"]["ari"].shape == (1,)


def test_evaluate_checkpoint_errors(cut_run: tuple[ExperimentConfig, dict[str, Any]], tmp_path: Path) -> None:
    config, _ = cut_run
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        evaluate_video_checkpoint(tmp_path / "nothing")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt is not a cutslots checkpoint"):
        evaluate_video_checkpoint(tmp_path / "junk.pt")
    payload = torch.load(Path(config.train.out_dir) / "checkpoint.pt", weights_only=True)
    payload["config"]["model"]["num_slots"] = 4  # weights for k = 3, config for k = 4
    torch.save(payload, tmp_path / "k4.pt")
    with pytest.raises(ValueError, match="different model.*shape differs"):
        evaluate_video_checkpoint(tmp_path / "k4.pt", tmp_path / "out")
    payload["config"]["model"]["num_slots"] = 3
    payload["config"]["data"]["dataset"] = "synthetic"
    torch.save(payload, tmp_path / "image.pt")
    with pytest.raises(ValueError, match="data.dataset"):
        evaluate_video_checkpoint(tmp_path / "image.pt", tmp_path / "out")


def test_main_eval_prints_table(
    cut_run: tuple[ExperimentConfig, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = cut_run
    assert main(["eval", config.train.out_dir, "--out", str(tmp_path), "--num-eval", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("Method") and "Cut + matching" in printed
    assert json.loads((tmp_path / "metrics.json").read_text())["num_clips"] == 2
