"""Typed experiment configuration, loaded from YAML with strict validation.

Every field is checked against its dataclass annotation (``int``, ``float``, ``bool``, ``str``,
``Literal[...]``, ``Optional[...]``, ``tuple[X, ...]``, nested sections) and against its allowed
range, both when a config is read from YAML and when it is built directly in Python. Any problem
raises one :class:`ConfigError` naming the dotted key and the file (or override) it came from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

__all__ = [
    "ConfigError",
    "config_from_dict",
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "TrainConfig",
    "load_config",
    "parse_override",
    "save_config",
    "to_dict",
]


class ConfigError(ValueError):
    """An invalid configuration value; ``key`` is the dotted key, ``source`` the file/override."""

    def __init__(self, key: str, reason: str, source: str | None = None) -> None:
        self.key, self.reason, self.source = key, reason, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {reason}" if key else f"{where}{reason}")

    def within(self, prefix: str = "", source: str | None = None) -> ConfigError:
        """The same error with ``prefix`` prepended to its key and/or a source attached."""
        key = f"{prefix}.{self.key}" if prefix and self.key else (prefix or self.key)
        return ConfigError(key, self.reason, source or self.source)


# --------------------------------------------------------------------------------------------
# Type checking against annotations
# --------------------------------------------------------------------------------------------


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        return f"list of {_describe(args[0])}"
    if dataclasses.is_dataclass(tp):
        return f"a {tp.__name__} section"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against annotation ``tp``; ints widen to float, lists become tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    wrong = ConfigError(key, f"expected {_describe(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        # Compare types too: YAML `true` must not match a Literal[1] (True == 1 in Python).
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise wrong
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise wrong
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        raise wrong
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise wrong
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise wrong
    if tp is str:
        if isinstance(value, str):
            return value
        raise wrong
    raise TypeError(f"{key}: unsupported annotation {tp!r} in a config dataclass")


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(key, f"expected {expected}, got {value!r}")


class _Section:
    """Mixin: validate every field against its annotation, then run ``_check_ranges``."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _coerce(getattr(self, f.name), hints[f.name], f.name)
            object.__setattr__(self, f.name, value)  # frozen: coerced value replaces the raw one
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Range checks beyond the type; raise ConfigError naming the field."""


# --------------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig(_Section):
    """Architecture of the object-centric autoencoder."""

    kind: Literal["cut", "slot_attention"] = "cut"  # slot head: min-cut QP or Slot Attention
    encoder: Literal["cnn", "resnet"] = "cnn"
    num_slots: int = 12  # K
    slot_dim: int = 64  # D
    # QP regulariser in cutslots' convention 1/2 gamma |z|^2: the paper's gamma = 0.5
    # (its objective has gamma * sum z^2) is gamma = 1.0 here.
    gamma: float = 1.0
    temperature: float = 0.5  # softmax temperature of the object partition
    bg_temperature: float = 0.1  # temperature of the fg/bg partition (background slot)
    background_slot: bool = True
    encoder_channels: Optional[int] = None  # None: 64 for "cnn", 100 for "resnet"
    resnet_blocks: int = 4
    decoder_channels: int = 64
    # Side of the grid the decoder broadcasts each slot onto (8: Slot Attention's CLEVR decoder,
    # doubled up to the image size); the image size (no upsampling) is the Watters et al. form.
    decoder_broadcast: int = 8
    decoder_layers: int = 1  # stride-1 5x5 layers at the image size (Watters et al.: 4)
    partition_hidden: int = 64  # width of the CNN that outputs the cut weights
    weight_activation: Literal["softplus", "relu", "none"] = "softplus"
    cut_form: Literal["paper", "released"] = "paper"
    # Ablations of the cut: "identity" (softmax over the CNN's per-part outputs) or
    # "green_filter" (those outputs smoothed by the relaxation's fixed filter (L_grid + 2I)^-1).
    cut_relaxation: Literal["cut", "identity", "green_filter"] = "cut"
    cut_init_scale: float = 1.0  # multiplies the initial weights of the cut CNN's last layer
    # The cut model's learned position embedding: added to what is cut and pooled (Alg. 2),
    # to the pooled features only (the cut sees appearance alone), or not at all.
    position_embedding: Literal["cut_and_pool", "pool_only", "none"] = "cut_and_pool"
    # Slot pooling of the cut model: "mean" over the grid (Alg. 2) or over each part's mask.
    slot_pooling: Literal["mean", "masked_mean"] = "mean"
    slot_attention_iters: int = 3  # only used when kind == "slot_attention"
    # Frame-pair (video) models: the matching QP of SlotMatcher (Alg. 3).
    matching_form: Literal["perfect", "assignment"] = "perfect"
    matching_gamma: float = 1.0  # cutslots' convention, like gamma
    matching_temperature: float = 0.1

    def _check_ranges(self) -> None:
        for name in ("num_slots", "slot_dim", "slot_attention_iters", "resnet_blocks",
                     "decoder_channels", "partition_hidden", "decoder_broadcast", "decoder_layers"):
            _require(getattr(self, name) >= 1, name, "an int >= 1", getattr(self, name))
        for name in ("gamma", "temperature", "bg_temperature", "matching_gamma",
                     "matching_temperature", "cut_init_scale"):
            v = getattr(self, name)
            _require(math.isfinite(v) and v > 0, name, "a finite float > 0", v)
        ch = self.encoder_channels
        _require(ch is None or ch >= 1, "encoder_channels", "null or an int >= 1", ch)
        if self.background_slot and self.kind == "cut":
            _require(self.num_slots >= 2, "num_slots", "an int >= 2 with a background slot",
                     self.num_slots)


_DATASETS_ON_DISK = ("clevr", "clevrtex", "movi_a")


@dataclass(frozen=True)
class DataConfig(_Section):
    """Which dataset to read or generate, and how much of it."""

    dataset: Literal["synthetic", "clevr", "clevrtex", "movi_a", "moving"] = "synthetic"
    variant: Optional[str] = None  # dataset-specific subset, e.g. a CLEVR/ClevrTex split name
    root: Optional[str] = None  # directory of a published dataset (nothing is downloaded)
    image_size: int = 128
    num_train: Optional[int] = None  # None: the whole training split
    num_eval: Optional[int] = None  # None: the whole evaluation split
    seed: int = 0
    # Extra evaluation sets of the same dataset (e.g. synthetic camo/ood, ClevrTex outd/camo).
    eval_variants: tuple[str, ...] = ()
    min_objects: int = 2  # synthetic and moving scenes only
    max_objects: int = 6
    num_frames: int = 24  # moving clips only
    # Synthetic and moving scenes: (low, high) object radius, as fractions of the image size.
    object_radius: tuple[float, ...] = (0.09, 0.18)
    cache_dir: Optional[str] = None  # where generated synthetic data is cached (None: no cache)

    def _check_ranges(self) -> None:
        _require(self.image_size >= 1, "image_size", "an int >= 1", self.image_size)
        for name in ("num_train", "num_eval"):
            v = getattr(self, name)
            _require(v is None or v >= 1, name, "null or an int >= 1", v)
        _require(0 <= self.seed < 2**32, "seed", "an int in [0, 2**32)", self.seed)
        _require(1 <= self.min_objects <= self.max_objects, "min_objects",
                 f"an int in [1, max_objects={self.max_objects}]", self.min_objects)
        _require(self.num_frames >= 2, "num_frames", "an int >= 2", self.num_frames)
        low_high = self.object_radius
        _require(len(low_high) == 2 and 0 < low_high[0] <= low_high[1] <= 0.5, "object_radius",
                 "[low, high] with 0 < low <= high <= 0.5", list(low_high))
        if self.dataset in _DATASETS_ON_DISK and not self.root:
            raise ConfigError("root", f"required for dataset {self.dataset!r} (its directory)")


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Optimisation schedule and run bookkeeping (defaults follow Slot Attention)."""

    steps: int = 500_000
    batch_size: int = 64  # global batch: split evenly over DDP ranks
    lr: float = 4e-4
    decay_rate: float = 0.5  # lr *= decay_rate ** (step / decay_steps)
    decay_steps: int = 100_000
    warmup_steps: int = 10_000  # linear warmup; 0 disables it
    grad_clip: Optional[float] = None  # max global grad norm; None disables clipping
    seed: int = 0
    log_every: int = 100
    eval_every: Optional[int] = 5_000  # None disables periodic evaluation
    checkpoint_every: Optional[int] = 5_000  # None: checkpoint only at the end / on a signal
    out_dir: str = "runs/default"
    num_workers: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"

    def _check_ranges(self) -> None:
        for name in ("steps", "batch_size", "decay_steps", "log_every"):
            _require(getattr(self, name) >= 1, name, "an int >= 1", getattr(self, name))
        for name in ("eval_every", "checkpoint_every"):
            v = getattr(self, name)
            _require(v is None or v >= 1, name, "null or an int >= 1", v)
        _require(self.warmup_steps >= 0, "warmup_steps", "an int >= 0", self.warmup_steps)
        _require(self.num_workers >= 0, "num_workers", "an int >= 0", self.num_workers)
        _require(math.isfinite(self.lr) and self.lr > 0, "lr", "a finite float > 0", self.lr)
        _require(0 < self.decay_rate <= 1, "decay_rate", "a float in (0, 1]", self.decay_rate)
        clip = self.grad_clip
        _require(clip is None or (math.isfinite(clip) and clip > 0), "grad_clip",
                 "null or a finite float > 0", clip)
        _require(0 <= self.seed < 2**32, "seed", "an int in [0, 2**32)", self.seed)
        _require(bool(self.out_dir), "out_dir", "a non-empty path", self.out_dir)
        _require(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None, "device",
                 "'auto', 'cpu', 'cuda' or 'cuda:N'", self.device)


@dataclass(frozen=True)
class ExperimentConfig(_Section):
    """A whole experiment: a name plus the model, data and training sections."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def _check_ranges(self) -> None:
        _require(bool(self.name.strip()), "name", "a non-empty string", self.name)
        ratio, remainder = divmod(self.data.image_size, self.model.decoder_broadcast)
        if remainder or ratio & (ratio - 1):
            raise ConfigError("model.decoder_broadcast", f"expected data.image_size "
                              f"({self.data.image_size}) / 2**n for some n >= 0, "
                              f"got {self.model.decoder_broadcast}")


# --------------------------------------------------------------------------------------------
# YAML reading / writing
# --------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads YAML 1.2 floats such as ``4e-4``."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# PyYAML follows YAML 1.1, where `4e-4` (no dot) is a *string*; accept the YAML 1.2 form.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a YAML mapping, recursing into section fields."""
    if not isinstance(raw, dict):
        raise ConfigError(prefix, f"expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(_join(prefix, str(key)),
                              f"unknown key (valid keys: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(_join(prefix, name), "required key is missing")
            continue
        tp = hints[name]
        value = raw[name]
        kwargs[name] = _build(tp, value, _join(prefix, name)) if dataclasses.is_dataclass(tp) \
            else value
    try:
        return cls(**kwargs)
    except ConfigError as err:  # raised by this level's __post_init__: key is a field name
        raise err.within(prefix) from None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except yaml.YAMLError as err:
        raise ConfigError("", f"invalid YAML: {err}", source) from err


_KEY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.steps=100"`` -> ``(["train", "steps"], 100)``; the value is read as YAML."""
    if not isinstance(text, str):
        raise TypeError(f"overrides: expected strings like 'train.steps=100', got {text!r}")
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        raise ConfigError("", f"bad override {text!r}: expected 'section.key=value'")
    if not value.strip():
        raise ConfigError(key, f"bad override {text!r}: empty value (write {key}=null for None)")
    parsed = _load_yaml(value, f"override {text!r}")
    return key.split("."), parsed


def _check_override_key(path: list[str], where: str) -> None:
    """Fail early, naming the override, when its key is not a leaf field of the schema."""
    cls: Any = ExperimentConfig
    for depth, name in enumerate(path):
        fields = [f.name for f in dataclasses.fields(cls)]
        key = ".".join(path[: depth + 1])
        if name not in fields:
            raise ConfigError(key, f"unknown key (valid keys: {', '.join(fields)})", where)
        cls = typing.get_type_hints(cls)[name]
        if depth < len(path) - 1 and not dataclasses.is_dataclass(cls):
            raise ConfigError(key, "is not a section, so it has no sub-keys", where)
    if dataclasses.is_dataclass(cls):
        raise ConfigError(".".join(path), "is a section; override one of its keys instead", where)


def load_config(path: str | os.PathLike[str], overrides: list[str] | None = None
                ) -> ExperimentConfig:
    """Read an :class:`ExperimentConfig` from YAML, then apply dotted ``key=value`` overrides.

    Raises FileNotFoundError for a missing file and ConfigError (a ValueError) naming the key and
    the file, or the offending override, for anything else.
    """
    if isinstance(overrides, str):
        raise TypeError(f"overrides: expected a list of 'key=value' strings, "
                        f"got str {overrides!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    source = str(path)
    raw = _load_yaml(path.read_text(encoding="utf-8"), source)
    if not isinstance(raw, dict):
        raise ConfigError("", f"expected a mapping at the top level, got {type(raw).__name__}",
                          source)
    origin: dict[str, str] = {}  # dotted key -> override text, to blame overrides for bad values
    for text in overrides or []:
        where = f"{source} (override {text!r})"
        try:
            keys, value = parse_override(text)
        except ConfigError as err:
            raise err.within(source=where) from None
        _check_override_key(keys, where)
        node = raw
        for depth, name in enumerate(keys[:-1]):
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(keys[: depth + 1]), "is not a mapping in the file",
                                  where)
            node = child
        node[keys[-1]] = value
        origin[".".join(keys)] = text
    try:
        return _build(ExperimentConfig, raw, "")
    except ConfigError as err:
        blamed = next((t for k, t in origin.items() if err.key == k or
                       err.key.startswith(f"{k}[")), None)
        where = f"{source} (override {blamed!r})" if blamed else source
        raise err.within(source=where) from None


def config_from_dict(raw: Any, source: str = "<dict>") -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from plain data (e.g. the copy in a checkpoint)."""
    try:
        return _build(ExperimentConfig, raw, "")
    except ConfigError as err:
        raise err.within(source=source) from None


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain YAML-safe Python (tuples become lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config: expected a config dataclass instance, got {type(config)!r}")

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def save_config(config: ExperimentConfig, path: str | os.PathLike[str]) -> Path:
    """Write ``config`` as YAML that :func:`load_config` reads back to an equal config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
    return path
