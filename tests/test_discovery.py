"""The image experiment runner (``cutslots.experiments.discovery``) and its CLI on synthetic data.

Everything runs a tiny cut model (16 px images, 3 slots, 8 channels) for a few steps on CPU.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cutslots import cli
from cutslots.config import ConfigError, ExperimentConfig, experiment_from_dict, load_experiment, to_dict
from cutslots.experiments.discovery import evaluate_checkpoint, format_report, format_table, run_experiment
from cutslots.train.checkpoint import save_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
load_config = load_experiment
config_from_dict = experiment_from_dict
# Small enough for a couple of seconds per run, big enough that training moves the metrics.
TINY_MODEL = {
    "num_slots": 3,
    "slot_dim": 8,
    "encoder": {"channels": 8},
    "decoder": {"channels": 8},
    "grouping": {"kind": "cut", "hidden": 8},
}


def tiny_config(out_dir: Path, steps: int = 3, seed: int = 0) -> dict[str, Any]:
    return {
        "name": "tiny",
        "model": dict(TINY_MODEL),
        "data": {
            "dataset": "synthetic",
            "variant": "textured",
            "image_size": 16,
            "num_train": 8,
            "num_eval": 4,
            "min_objects": 1,
            "max_objects": 2,
            "eval_variants": ["camo"],
        },
        "train": {
            "steps": steps,
            "batch_size": 4,
            "optimizer": {"lr": 1e-2},
            "warmup_steps": 0,
            "decay_steps": 10,
            "log_every": 1,
            "eval_every": None,
            "checkpoint_every": None,
            "out_dir": str(out_dir),
            "device": "cpu",
            "seed": seed,
        },
    }


def run(out_dir: Path, **kwargs: Any) -> dict[str, Any]:
    return run_experiment(config_from_dict(tiny_config(out_dir, **kwargs)))


def write_yaml(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One finished 3-step run, shared by the checkpoint tests (they never write into it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    # Module fixtures run before conftest's per-test single thread: set it here too, as CPU
    # results depend on the thread count.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"out": out, "report": run(out)}
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ runner


def test_same_seed_same_metrics_and_another_seed_differs(tmp_path, trained):
    again = run(tmp_path / "again")
    assert again["metrics"] == trained["report"]["metrics"]
    assert json.loads((tmp_path / "again" / "metrics.json").read_text()) == again["metrics"]
    other = run(tmp_path / "other", seed=1)
    assert other["metrics"] != again["metrics"]


def test_report_files_and_counts(trained):
    out, report = trained["out"], trained["report"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["textured", "camo"]
    for m in metrics.values():
        assert m["num_images"] == 4 and m["ari_fg"]["n"] + m["ari_fg"]["n_nan"] == 4
    assert load_config(out / "config.yaml") == config_from_dict(tiny_config(out))
    for name in ("decomposition_textured.png", "decomposition_camo.png", "loss.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.width > 0
    assert sorted(Path(f).name for f in report["figures"]) == [
        "decomposition_camo.png",
        "decomposition_textured.png",
        "loss.png",
    ]


def test_resume_continues_to_the_same_result(tmp_path):
    config = write_yaml(tmp_path / "tiny.yaml", tiny_config(tmp_path / "split", steps=4))
    assert cli.main(["train", "--config", str(config), "train.steps=2"]) == 0
    first = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert first["step"] == 2
    assert cli.main(["train", "--config", str(config), "--resume"]) == 0
    resumed = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert resumed["step"] == 4
    straight_dir = tmp_path / "straight"
    assert cli.main(["train", "--config", str(config), f"train.out_dir={straight_dir}"]) == 0
    straight = torch.load(straight_dir / "checkpoint.pt", weights_only=True)
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert json.loads((tmp_path / "split" / "metrics.json").read_text()) == json.loads(
        (straight_dir / "metrics.json").read_text()
    )


def test_resume_without_checkpoint_is_exit_2(tmp_path, capsys):
    config = write_yaml(tmp_path / "tiny.yaml", tiny_config(tmp_path / "none"))
    assert cli.main(["train", "--config", str(config), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint to resume from" in err[0]


# ------------------------------------------------------------------ evaluate_checkpoint


def test_evaluate_checkpoint_reproduces_the_run(tmp_path, trained):
    report = evaluate_checkpoint(trained["out"] / "checkpoint.pt", out_dir=tmp_path / "eval")
    assert report["metrics"] == trained["report"]["metrics"]
    assert (tmp_path / "eval" / "metrics.json").is_file()
    # A run directory works as well as its checkpoint file, and data overrides apply.
    report = evaluate_checkpoint(
        trained["out"], out_dir=tmp_path / "eval2", overrides={"eval_variants": ["ood"], "num_eval": 2}
    )
    assert list(report["metrics"]) == ["textured", "ood"]
    assert [m["num_images"] for m in report["metrics"].values()] == [2, 2]


# What cutslots 0.1 stored for tiny_config: the flat model section and train.lr.
def flat_v01(raw: dict[str, Any]) -> dict[str, Any]:
    model = {
        "kind": "cut",
        "num_slots": 3,
        "slot_dim": 8,
        "encoder_channels": 8,
        "decoder_channels": 8,
        "partition_hidden": 8,
        "slot_attention_iters": 3,
        "matching_gamma": 1.0,
    }
    train = {k: v for k, v in raw["train"].items() if k != "optimizer"}
    return {**raw, "model": model, "train": {**train, "lr": raw["train"]["optimizer"]["lr"]}}


def test_checkpoints_of_version_0_1_evaluate_and_resume(tmp_path, trained):
    payload = torch.load(trained["out"] / "checkpoint.pt", weights_only=True)
    payload["config"] = flat_v01(tiny_config(trained["out"]))
    old = tmp_path / "old" / "checkpoint.pt"
    old.parent.mkdir()
    torch.save(payload, old)
    report = evaluate_checkpoint(old, out_dir=tmp_path / "eval")
    assert report["metrics"] == trained["report"]["metrics"]
    # Resuming an old run: its flat train section is the same schedule as the nested one.
    raw = tiny_config(old.parent, steps=payload["step"] + 1)
    assert cli.main(["train", "--config", str(write_yaml(tmp_path / "c.yaml", raw)), "--resume"]) == 0
    assert torch.load(old, weights_only=True)["step"] == payload["step"] + 1


def test_evaluate_checkpoint_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pt"):
        evaluate_checkpoint(tmp_path / "nope.pt")


def test_evaluate_checkpoint_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(ValueError, match="junk.pt is not a cutslots checkpoint"):
        evaluate_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="plain.pt holds no experiment config"):
        evaluate_checkpoint(plain)
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, torch.nn.Linear(2, 2), step=0)  # a real checkpoint without a config
    with pytest.raises(ValueError, match="bare.pt holds no experiment config"):
        evaluate_checkpoint(bare)


def test_evaluate_checkpoint_of_a_different_model(tmp_path, trained, capsys):
    payload = torch.load(trained["out"] / "checkpoint.pt", weights_only=True)
    payload["config"]["model"]["slot_dim"] = 16  # the config now describes another model
    other = tmp_path / "other.pt"
    torch.save(payload, other)
    with pytest.raises(ValueError, match=r"other.pt was saved from a different model: .*shape"):
        evaluate_checkpoint(other, out_dir=tmp_path / "eval")
    assert cli.main(["eval", str(other), "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cutslots eval: error:") and "different model" in err[0]


# ------------------------------------------------------------------ CLI


def test_train_unknown_key_is_exit_2_with_one_line(tmp_path, capsys):
    raw = tiny_config(tmp_path / "run")
    raw["model"]["num_slotz"] = 3
    config = write_yaml(tmp_path / "bad.yaml", raw)
    assert cli.main(["train", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1
    assert "bad.yaml" in err[0] and "model.num_slotz" in err[0] and "unknown key" in err[0]
    assert not (tmp_path / "run").exists()


def test_demo_writes_metrics_and_pngs(tmp_path, monkeypatch, capsys):
    original = cli.demo_config

    def tiny_demo(out_dir: str, steps: int) -> ExperimentConfig:
        raw = to_dict(original(out_dir, steps))
        raw["model"].update(num_slots=3, slot_dim=8, encoder={"channels": 8}, decoder={"channels": 8, "broadcast": 16})
        raw["model"]["grouping"]["hidden"] = 8  # the demo's grouping otherwise
        raw["data"].update(image_size=16, num_train=8, num_eval=3, eval_variants=["camo"])
        raw["train"].update(batch_size=4, log_every=1, eval_every=1)
        return config_from_dict(raw)

    monkeypatch.setattr(cli, "demo_config", tiny_demo)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--steps", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    sets = list(metrics)
    assert sets == [cli.demo_config(str(out), 2).data.variant, "camo"]
    assert all(m["num_images"] == 3 for m in metrics.values())
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted([f"decomposition_{name}.png" for name in sets] + ["learning_curve.png", "loss.png"])
    # The learning curve's points: ARI-FG of the decoder, the grouping and their static
    # baselines per set, evaluated at both steps.
    rows = list(csv.DictReader((out / "scalars.csv").open()))
    for name in sets:
        for key in ("ari_fg", "decoder_static_ari_fg", "grouping_ari_fg", "static_ari_fg", "image_dependence"):
            assert [r["step"] for r in rows if r["name"] == f"eval/{name}/{key}"] == ["1", "2"]
    # TensorBoard gets each evaluation's decomposition figures; the last one shows what the
    # final report's PNG shows (same weights, same images).
    tb = EventAccumulator(str(out / "tb"), size_guidance={"images": 0})
    tb.Reload()
    for name in sets:
        shown = tb.Images(f"eval/{name}/decomposition")
        assert [e.step for e in shown] == [1, 2]
        with (
            Image.open(io.BytesIO(shown[-1].encoded_image_string)) as logged,
            Image.open(out / f"decomposition_{name}.png") as saved,
        ):
            np.testing.assert_array_equal(np.asarray(logged.convert("RGB")), np.asarray(saved.convert("RGB")))
    printed = capsys.readouterr().out
    assert printed.startswith("Decoder masks:\n| set | mIoU (%) | ARI-FG (%) | MSE |\n")
    assert "\nGrouping masks:\n| set | grouping mIoU (%) | grouping ARI-FG (%) |" in printed
    for name in sets:  # the verdicts on each set, in words
        assert f"\n{name}: {metrics[name]['decoder_verdict']}\n" in printed
        assert f"\n{name}: {metrics[name]['grouping_verdict']}\n" in printed


def test_format_table_hand_computed():
    metrics = {
        "full": {
            "miou": {"mean": 0.51234, "std": 0.1},
            "ari_fg": {"mean": 0.9, "std": 0.0456},
            "mse": {"mean": 123.45, "std": 6.78},
        },
        "camo": {
            "miou": {"mean": 0.0, "std": 0.0},
            "ari_fg": {"mean": 1.0, "std": 0.0},
            "mse": {"mean": 0.04, "std": 0.06},
        },
    }
    assert format_table(metrics).splitlines() == [
        "| set | mIoU (%) | ARI-FG (%) | MSE |",
        "|---|---|---|---|",
        "| full | 51.23 ± 10.00 | 90.00 ± 4.56 | 123.5 ± 6.8 |",
        "| camo | 0.00 ± 0.00 | 100.00 ± 0.00 | 0.0 ± 0.1 |",
    ]


def test_format_report_adds_the_grouping_table_and_verdicts_hand_computed():
    decoder = {"miou": {"mean": 0.5, "std": 0.1}, "ari_fg": {"mean": 0.9, "std": 0.0}, "mse": {"mean": 1.0, "std": 0.0}}
    grouping = {
        "grouping_miou": {"mean": 0.25, "std": 0.05},
        "grouping_ari_fg": {"mean": 0.6, "std": 0.1},
        "static_miou": {"mean": 0.2, "std": 0.0},
        "static_ari_fg": {"mean": 0.55, "std": 0.02},
        "image_dependence": {"mean": 0.0421, "std": 0.0012},
        "grouping_verdict": "not clearly ...",
    }
    assert format_report({"full": decoder}) == format_table({"full": decoder})
    report = format_report({"full": {**decoder, **grouping}}).splitlines()
    assert report[0] == "Decoder masks:" and report[1:4] == format_table({"full": decoder}).splitlines()
    assert report[4:] == [
        "",
        "Grouping masks:",
        "| set | grouping mIoU (%) | grouping ARI-FG (%) | static mIoU (%) | static ARI-FG (%) | image dependence |",
        "|---|---|---|---|---|---|",
        "| full | 25.00 ± 5.00 | 60.00 ± 10.00 | 20.00 ± 0.00 | 55.00 ± 2.00 | 0.042 ± 0.001 |",
        "",
        "full: not clearly ...",
    ]
    # The decoder's verdict goes under Table 1.
    fixed = {**decoder, "decoder_verdict": "a fixed layout ..."}
    assert format_report({"full": fixed}).splitlines() == [
        *format_table({"full": decoder}).splitlines(),
        "",
        "full: a fixed layout ...",
    ]


# ------------------------------------------------------------------ shipped configs


@pytest.mark.parametrize("name, dataset", [("clevr", "clevr"), ("clevrtex", "clevrtex")])
def test_paper_configs_need_a_root(name, dataset):
    path = CONFIGS / f"{name}.yaml"
    with pytest.raises(ConfigError, match=rf"{name}.yaml: data.root: required for dataset"):
        load_config(path)
    config = load_config(path, ["data.root=/data/somewhere"])
    assert config.data.dataset == dataset and config.data.image_size == 128
    # The released schedule (alpz/graph-ocl slot_cut/params.py + method.py): Adam 4e-4,
    # batch 64, lr * 0.8 ** (step / (0.2 * total steps)), no warmup, 500 epochs of the
    # 40,000 ClevrTex training images at batch 64 = 312,500 steps.
    train = config.train
    assert (train.optimizer.lr, train.batch_size, train.decay_rate, train.warmup_steps) == (4e-4, 64, 0.8, 0)
    assert train.steps == 500 * 40_000 // 64 and train.decay_steps == train.steps // 5


def test_clevrtex_config_is_the_released_model():
    model = load_config(CONFIGS / "clevrtex.yaml", ["data.root=/x"]).model
    assert (model.encoder.kind, model.num_slots, model.slot_dim, model.encoder.channels) == ("resnet", 12, 64, 100)
    assert load_config(CONFIGS / "clevrtex.yaml", ["data.root=/x"]).data.eval_variants == ("outd", "camo")


def test_demo_is_demo_yaml():
    """``cutslots demo`` trains configs/demo.yaml (synthetic_textured.yaml is the benchmark's
    textured run: tests/test_bench_discovery.py)."""
    demo = load_config(CONFIGS / "demo.yaml", ["train.out_dir=runs/elsewhere", "train.steps=7"])
    assert cli.demo_config("runs/elsewhere", 7) == demo
    assert (cli.demo_config().train.steps, cli.demo_config().train.batch_size) == (4000, 8)
    assert demo.model.grouping.init_scale == 10.0
