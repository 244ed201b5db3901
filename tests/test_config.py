"""Typed configs: YAML loading, dotted overrides, strict validation, round trip."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml

from cutslots.config import (ConfigError, DataConfig, ExperimentConfig, ModelConfig,
                             TrainConfig, load_config, save_config, to_dict)

FULL = """\
name: clevr6-cut
model:
  kind: slot_attention
  encoder: resnet
  num_slots: 7
  slot_dim: 32
  gamma: 1           # an int is a valid float
  temperature: 0.25
  background_slot: false
  encoder_channels: 32
  slot_attention_iters: 5
data:
  dataset: clevr
  variant: clevr6
  root: /data/clevr
  image_size: 64
  num_train: 1000
  num_eval: null
train:
  steps: 200
  batch_size: 16
  lr: 4e-4           # YAML 1.2 float (PyYAML alone would read a string)
  decay_rate: 0.25
  grad_clip: 1.5
  eval_every: null
  out_dir: runs/x
  device: cuda:1
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_load_reads_every_value_and_fills_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL), [])
    raw = yaml.safe_load(FULL)  # independent reader for the values written in the file
    assert cfg.name == raw["name"]
    assert cfg.model.kind == "slot_attention" and cfg.model.encoder == "resnet"
    assert cfg.model.num_slots == 7 and cfg.model.slot_dim == 32
    assert cfg.model.gamma == 1.0 and isinstance(cfg.model.gamma, float)
    assert cfg.model.background_slot is False
    assert cfg.model.encoder_channels == 32
    assert cfg.model.slot_attention_iters == 5
    assert cfg.data == DataConfig(dataset="clevr", variant="clevr6", root="/data/clevr",
                                  image_size=64, num_train=1000, num_eval=None)
    assert cfg.train.lr == pytest.approx(4e-4) and isinstance(cfg.train.lr, float)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.grad_clip) == (200, 16, 1.5)
    assert cfg.train.eval_every is None and cfg.train.device == "cuda:1"
    # Keys absent from the file keep the documented defaults (Slot Attention's schedule).
    assert cfg.model.bg_temperature == 0.1 and cfg.model.decoder_channels == 64
    assert (cfg.train.decay_steps, cfg.train.warmup_steps, cfg.train.checkpoint_every) == \
        (100_000, 10_000, 5_000)


def test_minimal_file_gives_documented_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "name: tiny\n"))
    assert cfg.model == ModelConfig(kind="cut", encoder="cnn", num_slots=12, slot_dim=64,
                                    gamma=1.0, temperature=0.5, bg_temperature=0.1,
                                    background_slot=True, slot_attention_iters=3)
    assert (cfg.data.dataset, cfg.data.image_size) == ("synthetic", 128)
    assert (cfg.train.lr, cfg.train.decay_rate, cfg.train.decay_steps) == (4e-4, 0.5, 100_000)


def test_overrides_use_yaml_scalar_semantics(tmp_path: Path) -> None:
    path = write(tmp_path, "name: tiny\nmodel:\n  num_slots: 4\n")
    cfg = load_config(path, ["train.steps=100", "train.grad_clip=null", "train.lr=1e-3",
                             "model.background_slot=false", "data.variant=clevr6",
                             "model.encoder_channels=8", "model.num_slots=9",
                             "name=renamed"])
    assert cfg.train.steps == 100 and cfg.train.grad_clip is None
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.model.background_slot is False and cfg.model.num_slots == 9
    assert cfg.data.variant == "clevr6" and cfg.model.encoder_channels == 8
    assert cfg.name == "renamed"


@pytest.mark.parametrize(("body", "key", "expected"), [
    ("train:\n  steps: '10'\n", "train.steps", "expected int, got str"),
    ("train:\n  steps: 1.5\n", "train.steps", "expected int, got float"),
    ("train:\n  steps: true\n", "train.steps", "expected int, got bool"),
    ("model:\n  kind: attention\n", "model.kind", "one of 'cut', 'slot_attention'"),
    ("model:\n  background_slot: 1\n", "model.background_slot", "expected bool"),
    ("data:\n  variant: 3\n", "data.variant", "str or null"),
    ("model:\n  encoder_channels: [8, 8]\n", "model.encoder_channels", "int or null"),
    ("model:\n  cut_form: exact\n", "model.cut_form", "one of 'paper', 'released'"),
    ("train:\n  grad_clip: fast\n", "train.grad_clip", "float or null"),
    ("train: 5\n", "train", "expected a mapping"),
    ("model:\n  num_slotz: 3\n", "model.num_slotz", "unknown key"),
    ("extra: 1\n", "extra", "unknown key"),
    ("train:\n  batch_size: 0\n", "train.batch_size", ">= 1"),
    ("train:\n  decay_rate: 1.5\n", "train.decay_rate", "(0, 1]"),
    ("train:\n  device: gpu\n", "train.device", "'cuda:N'"),
    ("data:\n  dataset: clevrtex\n", "data.root", "required"),
    ("model:\n  decoder_broadcast: 12\n", "model.decoder_broadcast", "data.image_size (128) / 2**n"),
    ("model:\n  cut_relaxation: exact\n", "model.cut_relaxation", "'identity', 'green_filter'"),
    ("model:\n  slot_pooling: max\n", "model.slot_pooling", "'mean', 'masked_mean'"),
    ("model:\n  cut_init_scale: 0\n", "model.cut_init_scale", "> 0"),
    ("model:\n  decoder_layers: 0\n", "model.decoder_layers", ">= 1"),
])
def test_bad_values_name_key_and_file(tmp_path: Path, body: str, key: str,
                                      expected: str) -> None:
    path = write(tmp_path, "name: x\n" + body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: ")
    assert expected in message
    assert info.value.key == key


def test_missing_name_duplicate_keys_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name: required key is missing"):
        load_config(write(tmp_path, "train:\n  steps: 3\n"))
    with pytest.raises(ConfigError, match="duplicate key 'steps'"):
        load_config(write(tmp_path, "name: a\ntrain:\n  steps: 3\n  steps: 4\n"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("override", ["train.steps", "=3", "train..steps=1", "1train.steps=3",
                                      "train.steps=", "train.steps=[1"])
def test_bad_override_syntax(tmp_path: Path, override: str) -> None:
    path = write(tmp_path, "name: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert f"{path} (override {override!r})" in str(info.value)


@pytest.mark.parametrize(("override", "key", "expected"), [
    ("train.stepz=3", "train.stepz", "unknown key"),
    ("trian.steps=3", "trian", "unknown key"),
    ("train.steps.x=3", "train.steps", "not a section"),
    ("model=3", "model", "is a section"),
    ("train.steps=abc", "train.steps", "expected int, got str 'abc'"),
    ("train.lr=-1", "train.lr", "> 0"),
])
def test_bad_override_names_override_key_and_file(tmp_path: Path, override: str, key: str,
                                                  expected: str) -> None:
    path = write(tmp_path, "name: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert str(info.value).startswith(f"{path} (override {override!r}): {key}: ")
    assert expected in str(info.value)


def test_overrides_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="overrides"):
        load_config(write(tmp_path, "name: x\n"), "train.steps=3")  # type: ignore[arg-type]


def test_python_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="steps: expected int, got str"):
        TrainConfig(steps="5")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_slots: expected an int >= 1, got 0"):
        ModelConfig(num_slots=0)
    with pytest.raises(ConfigError, match="model: expected a ModelConfig section"):
        ExperimentConfig(name="x", model={"num_slots": 3})  # type: ignore[arg-type]
    variants = ["camo", "ood"]
    assert DataConfig(eval_variants=variants).eval_variants == ("camo", "ood")  # type: ignore


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL), ["train.seed=7", "data.eval_variants=[a, b]"])
    assert cfg.data.eval_variants == ("a", "b")
    saved = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(saved) == cfg
    # to_dict is plain YAML data: exactly what an independent YAML reader sees in the file.
    assert yaml.safe_load(saved.read_text()) == to_dict(cfg)
    assert to_dict(cfg)["model"]["encoder_channels"] == 32
    assert set(to_dict(cfg)["train"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=8))
    assert load_config(save_config(other, tmp_path / "b.yaml")) != cfg
