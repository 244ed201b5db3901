"""Typed configs: YAML loading, dotted overrides, strict validation, round trip."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from cutslots.config import (
    ConfigError,
    CutGroupingConfig,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    SlotAttentionGroupingConfig,
    TrainConfig,
    load_experiment,
    save_config,
    to_dict,
)

load_config = load_experiment

FULL = """\
name: clevr6-cut
model:
  num_slots: 7
  slot_dim: 32
  encoder:
    kind: resnet
    channels: 32
  grouping:
    kind: slot_attention
    iters: 5
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
  optimizer:
    lr: 4e-4         # YAML 1.2 float (PyYAML alone would read a string)
  decay_rate: 0.25
  grad_clip: 1     # an int is a valid float
  eval_every: null
  out_dir: runs/x
  device: cuda:1
"""

CUT = "model:\n  grouping:\n    kind: cut\n"


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_load_reads_every_value_and_fills_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL), [])
    raw = yaml.safe_load(FULL)  # independent reader for the values written in the file
    assert cfg.name == raw["name"]
    assert cfg.model.grouping == SlotAttentionGroupingConfig(iters=5)
    assert (cfg.model.encoder.kind, cfg.model.encoder.channels) == ("resnet", 32)
    assert cfg.model.num_slots == 7 and cfg.model.slot_dim == 32
    assert cfg.data == DataConfig(
        dataset="clevr", variant="clevr6", root="/data/clevr", image_size=64, num_train=1000, num_eval=None
    )
    assert cfg.train.optimizer.lr == pytest.approx(4e-4) and isinstance(cfg.train.optimizer.lr, float)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.grad_clip) == (200, 16, 1.0)
    assert isinstance(cfg.train.grad_clip, float)
    assert cfg.train.eval_every is None and cfg.train.device == "cuda:1"
    # Keys absent from the file keep the documented defaults (Slot Attention's schedule).
    assert cfg.model.decoder.channels == 64 and cfg.model.encoder.resnet_blocks == 4
    assert (cfg.train.decay_steps, cfg.train.warmup_steps, cfg.train.checkpoint_every) == (100_000, 10_000, 5_000)
    assert (cfg.train.optimizer.kind, cfg.train.optimizer.betas) == ("adam", (0.9, 0.999))


def test_minimal_file_gives_documented_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "name: tiny\n"))
    assert cfg.model == ModelConfig(
        num_slots=12,
        slot_dim=64,
        grouping=CutGroupingConfig(gamma=1.0, temperature=0.5, bg_temperature=0.1, background_slot=True),
    )
    assert (cfg.model.encoder.kind, cfg.model.decoder.broadcast) == ("cnn", 8)
    assert (cfg.data.dataset, cfg.data.image_size) == ("synthetic", 128)
    assert (cfg.train.optimizer.lr, cfg.train.decay_rate, cfg.train.decay_steps) == (4e-4, 0.5, 100_000)
    assert (cfg.train.precision, cfg.train.accumulate) == ("fp32", 1)


def test_groupings_carry_only_their_own_keys(tmp_path: Path) -> None:
    cut = load_config(write(tmp_path, "name: x\n" + CUT + "    gamma: 2\n"))
    assert isinstance(cut.model.grouping, CutGroupingConfig) and cut.model.grouping.gamma == 2.0
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "name: x\nmodel:\n  grouping:\n    kind: slot_attention\n    gamma: 2\n"))
    assert info.value.key == "model.grouping.gamma" and "unknown key (valid keys: kind, iters" in str(info.value)
    # A whole section is replaced by a mapping: the way to switch the grouping from the command line.
    switched = load_config(
        write(tmp_path, "name: x\n" + CUT + "    gamma: 2\n"), ["model.grouping={kind: slot_attention, iters: 2}"]
    )
    assert switched.model.grouping == SlotAttentionGroupingConfig(iters=2)


def test_overrides_use_yaml_scalar_semantics(tmp_path: Path) -> None:
    path = write(tmp_path, "name: tiny\nmodel:\n  num_slots: 4\n")
    cfg = load_config(
        path,
        [
            "train.steps=100",
            "train.grad_clip=null",
            "train.optimizer.lr=1e-3",
            "model.grouping.background_slot=false",
            "data.variant=clevr6",
            "model.encoder.channels=8",
            "model.num_slots=9",
            "name=renamed",
        ],
    )
    assert cfg.train.steps == 100 and cfg.train.grad_clip is None
    assert cfg.train.optimizer.lr == pytest.approx(1e-3)
    assert isinstance(cfg.model.grouping, CutGroupingConfig) and cfg.model.grouping.background_slot is False
    assert cfg.model.num_slots == 9
    assert cfg.data.variant == "clevr6" and cfg.model.encoder.channels == 8
    assert cfg.name == "renamed"


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ("train:\n  steps: '10'\n", "train.steps", "valid integer, got str '10'"),
        ("train:\n  steps: 1.5\n", "train.steps", "valid integer, got float 1.5"),
        ("train:\n  steps: true\n", "train.steps", "valid integer, got bool True"),
        (
            "model:\n  grouping:\n    kind: attention\n",
            "model.grouping.kind",
            "expected one of 'cut', 'slot_attention', 'random_walker', got 'attention'",
        ),
        ("model:\n  grouping:\n    iters: 1\n", "model.grouping.iters", "unknown key (valid keys: kind, gamma"),
        (CUT + "    background_slot: 1\n", "model.grouping.background_slot", "valid boolean, got int 1"),
        ("data:\n  variant: 3\n", "data.variant", "valid string, got int 3"),
        ("model:\n  encoder:\n    channels: [8, 8]\n", "model.encoder.channels", "valid integer, got list"),
        (CUT + "    form: exact\n", "model.grouping.form", "'paper' or 'released', got str 'exact'"),
        ("train:\n  grad_clip: fast\n", "train.grad_clip", "valid number, got str 'fast'"),
        ("train: 5\n", "train", "expected a mapping"),
        ("model:\n  num_slotz: 3\n", "model.num_slotz", "unknown key (valid keys: num_slots, slot_dim"),
        ("extra: 1\n", "extra", "unknown key"),
        ("train:\n  batch_size: 0\n", "train.batch_size", "greater than or equal to 1, got int 0"),
        ("train:\n  decay_rate: 1.5\n", "train.decay_rate", "less than or equal to 1"),
        ("train:\n  device: gpu\n", "train.device", "'cuda:N'"),
        ("train:\n  precision: fp8\n", "train.precision", "'fp32', 'bf16' or 'fp16', got str 'fp8'"),
        ("train:\n  precision: 16\n", "train.precision", "got int 16"),
        ("train:\n  accumulate: 0\n", "train.accumulate", "greater than or equal to 1, got int 0"),
        ("train:\n  accumulate: 1.5\n", "train.accumulate", "valid integer, got float 1.5"),
        ("train:\n  optimizer:\n    betas: [0.9]\n", "train.optimizer.betas", "[beta1, beta2]"),
        ("train:\n  lr: .nan\n", "train.optimizer.lr", "finite number"),
        ("data:\n  dataset: clevrtex\n", "data.root", "required"),
        ("data:\n  eval_variants: [a, 3]\n", "data.eval_variants[1]", "valid string, got int 3"),
        ("model:\n  decoder:\n    broadcast: 12\n", "model.decoder.broadcast", "data.image_size (128) / 2**n"),
        (CUT + "    relaxation: exact\n", "model.grouping.relaxation", "'identity' or 'green_filter'"),
        (CUT + "    pooling: max\n", "model.grouping.pooling", "'mean' or 'masked_mean'"),
        (CUT + "    init_scale: 0\n", "model.grouping.init_scale", "greater than 0"),
        ("model:\n  num_slots: 1\n", "model.num_slots", ">= 2 with a background slot"),
        ("model:\n  decoder:\n    layers: 0\n", "model.decoder.layers", "greater than or equal to 1"),
        (
            "model:\n  decoder:\n    pointwise_layers: -1\n",
            "model.decoder.pointwise_layers",
            "greater than or equal to 0",
        ),
        ("train:\n  loggers: [csv, mlflow]\n", "train.loggers[1]", "'tensorboard' or 'wandb', got str 'mlflow'"),
        ("train:\n  loggers: [csv, csv]\n", "train.loggers", "each logger at most once, got ['csv', 'csv']"),
        ("train:\n  loggers: csv\n", "train.loggers", "valid tuple, got str 'csv'"),
        ("train:\n  progress_every_s: 0\n", "train.progress_every_s", "greater than 0"),
    ],
)
def test_bad_values_name_key_and_file(tmp_path: Path, body: str, key: str, expected: str) -> None:
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


@pytest.mark.parametrize(
    "override", ["train.steps", "=3", "train..steps=1", "1train.steps=3", "train.steps=", "train.steps=[1"]
)
def test_bad_override_syntax(tmp_path: Path, override: str) -> None:
    path = write(tmp_path, "name: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert f"{path} (override {override!r})" in str(info.value)


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("train.stepz=3", "train.stepz", "unknown key"),
        ("trian.steps=3", "trian", "unknown key"),
        ("train.steps.x=3", "train.steps", "not a section"),
        ("model=3", "model", "is a section"),
        ("model.grouping=cut", "model.grouping", "is a section"),
        ("train.steps=abc", "train.steps", "valid integer, got str 'abc'"),
        ("train.optimizer.lr=-1", "train.optimizer.lr", "greater than 0"),
        ("model.grouping.gamma=-1", "model.grouping.gamma", "greater than 0"),
        ("model.grouping.iters=2", "model.grouping.iters", "unknown key (valid keys: kind, gamma"),
    ],
)
def test_bad_override_names_override_key_and_file(tmp_path: Path, override: str, key: str, expected: str) -> None:
    path = write(tmp_path, "name: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert str(info.value).startswith(f"{path} (override {override!r}): {key}: ")
    assert expected in str(info.value)


def test_overrides_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="overrides"):
        load_config(write(tmp_path, "name: x\n"), "train.steps=3")  # type: ignore[arg-type]


def test_python_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="steps: Input should be a valid integer, got str '5'"):
        TrainConfig(steps="5")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_slots: Input should be greater than or equal to 1, got int 0"):
        ModelConfig(num_slots=0)
    with pytest.raises(ConfigError, match="model.num_slots: Input should be greater than or equal to 1"):
        ExperimentConfig(name="x", model={"num_slots": 0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model: expected a mapping, got int 3"):
        ExperimentConfig(name="x", model=3)  # type: ignore[arg-type]
    assert ExperimentConfig(name="x", model={"num_slots": 3}).model == ModelConfig(num_slots=3)  # type: ignore
    variants = ["camo", "ood"]
    assert DataConfig(eval_variants=variants).eval_variants == ("camo", "ood")  # type: ignore
    with pytest.raises(ValidationError):  # frozen: a config never changes after validation
        TrainConfig().steps = 3  # type: ignore[misc]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL), ["train.seed=7", "data.eval_variants=[a, b]"])
    assert cfg.data.eval_variants == ("a", "b")
    saved = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(saved) == cfg
    # to_dict is plain YAML data: exactly what an independent YAML reader sees in the file.
    assert yaml.safe_load(saved.read_text()) == to_dict(cfg)
    assert to_dict(cfg)["model"]["encoder"]["channels"] == 32
    assert set(to_dict(cfg)["train"]) == set(TrainConfig.model_fields)
    other = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 8})})
    assert load_config(save_config(other, tmp_path / "b.yaml")) != cfg


# The flat layout of cutslots 0.1, as its `save_config` wrote it (every key, defaults included).
LEGACY = """\
name: old
model:
  kind: {kind}
  encoder: resnet
  num_slots: 6
  slot_dim: 32
  gamma: 2.0
  temperature: 0.25
  bg_temperature: 0.1
  background_slot: false
  encoder_channels: 16
  resnet_blocks: 2
  decoder_channels: 24
  decoder_broadcast: 16
  decoder_layers: 2
  partition_hidden: 12
  weight_activation: relu
  cut_form: released
  cut_relaxation: identity
  cut_init_scale: 3.0
  position_embedding: pool_only
  slot_pooling: masked_mean
  slot_attention_iters: 4
  matching_form: assignment
  matching_gamma: 0.5
  matching_temperature: 0.2
data:
  image_size: 32
train:
  lr: 0.002
  steps: 10
"""


def test_flat_layout_of_version_0_1_is_read_as_the_nested_one(tmp_path: Path) -> None:
    cut = load_config(write(tmp_path, LEGACY.format(kind="cut")), ["train.steps=5"])
    assert cut.model == ModelConfig(
        num_slots=6,
        slot_dim=32,
        encoder={"kind": "resnet", "channels": 16, "resnet_blocks": 2},
        decoder={"channels": 24, "broadcast": 16, "layers": 2},
        matching={"form": "assignment", "gamma": 0.5, "temperature": 0.2},
        grouping=CutGroupingConfig(
            gamma=2.0,
            temperature=0.25,
            background_slot=False,
            hidden=12,
            weight_activation="relu",
            form="released",
            relaxation="identity",
            init_scale=3.0,
            position_embedding="pool_only",
            pooling="masked_mean",
        ),
    )
    assert (cut.train.optimizer.lr, cut.train.steps) == (0.002, 5)
    # The other grouping's keys had no effect in the old layout; they are dropped.
    attention = load_config(write(tmp_path, LEGACY.format(kind="slot_attention"), "sa.yaml"))
    assert attention.model.grouping == SlotAttentionGroupingConfig(iters=4)
    assert attention.model.encoder == cut.model.encoder
    # Unknown keys are still rejected, under their nested name when they have one.
    with pytest.raises(ConfigError, match="model.num_slotz: unknown key"):
        load_config(write(tmp_path, LEGACY.format(kind="cut").replace("num_slots", "num_slotz"), "bad.yaml"))


def test_cli_config_prints_the_upgraded_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cutslots.cli import main

    path = write(tmp_path, LEGACY.format(kind="cut"))
    assert main(["config", str(path), "train.steps=3"]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    assert load_config(printed) == load_config(path, ["train.steps=3"])
    assert "kind: cut" in printed.read_text() and "lr:" not in printed.read_text().split("optimizer:")[0]
