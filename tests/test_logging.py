"""Logging backends: the same scalars and images reach CSV, TensorBoard and W&B (offline).

Each backend is read back with its own reader: the CSV module, TensorBoard's event
accumulator, and the W&B run file (a LevelDB-format log of protobuf records) parsed here.
"""

from __future__ import annotations

import csv
import io
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from torch import nn

from cutslots.config import TrainConfig, to_dict
from cutslots.train.logging import RunLogger, takes_images
from cutslots.train.loop import train
from tiny_training import TinyAutoencoder, TinyScenes

CONFIG = {"name": "tiny", "train": {"steps": 8, "grad_clip": None, "betas": [0.9, 0.999], "resume": True}}


def image(seed: int, height: int = 6, width: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as png:
        return np.asarray(png.convert("RGB"))


def events(log_dir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})  # 0: keep all
    accumulator.Reload()
    return accumulator


def test_tensorboard_gets_scalars_images_and_the_config_as_hparams(tmp_path: Path) -> None:
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    logger = RunLogger(tmp_path, loggers=["tensorboard"], config=CONFIG, name="tiny")
    logger.log(1, {"train/loss": 0.5})
    logger.log_images(2, {"eval/shapes/decomposition": image(0)})
    logger.log_images(4, {"eval/shapes/decomposition": image(1)})
    logger.close()

    assert not (tmp_path / "scalars.csv").exists()
    assert all(p.is_file() for p in (tmp_path / "tb").iterdir())  # hparams in this run, not a sub-run
    tb = events(tmp_path / "tb")
    assert [(e.step, e.value) for e in tb.Scalars("train/loss")] == [(1, 0.5)]
    shown = tb.Images("eval/shapes/decomposition")
    assert [e.step for e in shown] == [2, 4]
    for event, seed in zip(shown, (0, 1)):
        np.testing.assert_array_equal(png_pixels(event.encoded_image_string), image(seed))

    records = {tag: HParamsPluginData.FromString(data) for tag, data in tb.PluginTagToContent("hparams").items()}
    assert [m.name.tag for m in records["_hparams_/experiment"].experiment.metric_infos] == ["train/loss"]
    hparams = records["_hparams_/session_start_info"].session_start_info.hparams
    assert hparams["name"].string_value == "tiny"
    assert hparams["train.steps"].number_value == 8
    assert {k: hparams[k].string_value for k in ("train.grad_clip", "train.betas", "train.resume")} == {
        "train.grad_clip": "None",
        "train.betas": "[0.9, 0.999]",
        "train.resume": "True",
    }


def test_csv_alone_and_no_logger_at_all(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path / "a", loggers=["csv"])
    logger.log(3, {"train/loss": 0.25})
    logger.log_images(3, {"eval/x": image(0)})  # nowhere to go: no error, no file
    logger.close()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["scalars.csv"]
    with open(tmp_path / "a" / "scalars.csv", newline="") as f:
        assert list(csv.reader(f)) == [["step", "name", "value"], ["3", "train/loss", "0.25"]]

    silent = RunLogger(tmp_path / "b", loggers=[])
    silent.log(1, {"train/loss": 1.0})
    silent.close()
    assert not (tmp_path / "b").exists()
    # The experiments draw evaluation figures only for a logger that keeps them.
    assert not takes_images(["csv"]) and not takes_images([])
    assert takes_images(["csv", "tensorboard"]) and takes_images(["wandb"])


def test_bad_images_and_logger_names_are_named(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, loggers=["csv"])
    with pytest.raises(TypeError, match=r"image 'eval/x': expected an \(H, W, 3\) uint8 RGB array, got float64"):
        logger.log_images(1, {"eval/x": image(0) / 255.0})
    with pytest.raises(TypeError, match=r"image 'eval/y': .* got uint8 \(6, 10, 4\)"):
        logger.log_images(1, {"eval/y": np.zeros((6, 10, 4), np.uint8)})
    logger.close()
    with pytest.raises(ValueError, match="loggers: expected a list of csv, tensorboard, wandb, got 'csv'"):
        RunLogger(tmp_path, loggers="csv")
    with pytest.raises(ValueError, match="loggers: .* got \\['mlflow'\\]"):
        RunLogger(tmp_path, loggers=["mlflow"])


def test_evaluation_images_reach_tensorboard_during_training(tmp_path: Path) -> None:
    def eval_fn(model: nn.Module, step: int) -> dict[str, Any]:
        return {"score": step / 10, "picture": image(step)}

    config = TrainConfig(
        steps=4, batch_size=4, log_every=2, eval_every=2, warmup_steps=0, out_dir=str(tmp_path), device="cpu"
    )
    train(TinyAutoencoder(), TinyScenes(), config, eval_fn)
    tb = events(tmp_path / "tb")
    assert [(e.step, e.value) for e in tb.Scalars("eval/score")] == [(2, pytest.approx(0.2)), (4, pytest.approx(0.4))]
    shown = tb.Images("eval/picture")
    assert [e.step for e in shown] == [2, 4]
    np.testing.assert_array_equal(png_pixels(shown[1].encoded_image_string), image(4))

    def bad_eval_fn(model: nn.Module, step: int) -> dict[str, Any]:
        return {"picture": "not an image"}

    with pytest.raises(TypeError, match="eval_fn: 'picture' is neither a number nor an"):
        train(
            TinyAutoencoder(),
            TinyScenes(),
            TrainConfig(**{**config.model_dump(), "out_dir": str(tmp_path / "b")}),
            bad_eval_fn,
        )


# ------------------------------------------------------------------------------- W&B offline


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a W&B run file: a 7-byte header (``:W&B``, a key, a version),
    then LevelDB-format blocks of 32 KiB, each record split into chunks with a CRC-32 of their
    type and data."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:  # zero padding
            continue
        assert checksum == zlib.crc32(bytes([kind]) + chunk), f"bad chunk checksum at byte {pos}"
        pending += chunk
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(Record.FromString(pending))
            pending = b""
    return records


def history(records: list[Any]) -> dict[int, dict[str, Any]]:
    """{step: {key: value}} of a run's logged rows (W&B's own ``_``-keys left out)."""
    rows: dict[int, dict[str, Any]] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row = rows.setdefault(record.history.step.num, {})
            for item in record.history.item:
                keys = list(item.nested_key) or [item.key]  # an image is a mapping of its fields
                if keys[0].startswith("_"):
                    continue
                node = row
                for parent in keys[:-1]:
                    node = node.setdefault(parent, {})
                node[keys[-1]] = json.loads(item.value_json)
    return rows


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "wandb_home"
    monkeypatch.setenv("WANDB_MODE", "offline")  # never reaches the network
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(root / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    return root / "wandb_dir" / "wandb"


def test_wandb_offline_gets_the_csv_scalars_images_and_config_and_resumes_its_run(
    tmp_path: Path, offline_wandb: Path
) -> None:
    wandb = pytest.importorskip("wandb", reason="the W&B logger needs the wandb package: pip install 'cutslots[wandb]'")
    out = tmp_path / "run"

    def eval_fn(model: nn.Module, step: int) -> dict[str, Any]:
        return {"score": step / 10, "picture": image(step)}

    def config(steps: int) -> TrainConfig:
        return TrainConfig(
            steps=steps,
            batch_size=4,
            log_every=2,
            eval_every=4,
            warmup_steps=0,
            out_dir=str(out),
            device="cpu",
            loggers=("csv", "wandb"),
        )

    train(TinyAutoencoder(), TinyScenes(), config(4), eval_fn)
    train(TinyAutoencoder(), TinyScenes(), config(6), eval_fn, resume=True)
    wandb.teardown()  # waits for W&B's service process to finish writing the run files

    run_id = (out / "wandb_id").read_text().strip()
    runs = sorted(offline_wandb.glob("offline-run-*"))
    # The resume continues the run: both directories carry its id. W&B names them by the start
    # second and adds "-1" when the two runs start within the same second.
    pattern = rf"offline-run-\d{{8}}_\d{{6}}-{re.escape(run_id)}(-\d+)?"
    assert [re.fullmatch(pattern, r.name) is not None for r in runs] == [True, True], [r.name for r in runs]
    first, second = (history(wandb_records(r / f"run-{run_id}.wandb")) for r in runs)
    with open(out / "scalars.csv", newline="") as f:
        logged = [(int(row["step"]), row["name"], float(row["value"])) for row in csv.DictReader(f)]
    from_wandb = [
        (step, name, value) for rows in (first, second) for step, row in rows.items() for name, value in row.items()
    ]
    scalars = [(step, name, value) for step, name, value in from_wandb if name != "eval/picture"]
    assert sorted(scalars) == sorted(logged)
    assert sorted(first) == [2, 4] and sorted(second) == [6]

    picture = first[4]["eval/picture"]
    assert (picture["_type"], picture["width"], picture["height"]) == ("image-file", 10, 6)
    np.testing.assert_array_equal(png_pixels((runs[0] / "files" / picture["path"]).read_bytes()), image(4))

    (run,) = [r.run for r in wandb_records(runs[0] / f"run-{run_id}.wandb") if r.WhichOneof("record_type") == "run"]
    assert run.project == "cutslots"
    stored = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert stored["train"] == to_dict(config(4))
