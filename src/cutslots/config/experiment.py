"""The experiment config of ``cutslots train`` / ``eval`` / ``demo``: model, data, train.

The model section is nested: ``model.encoder``, ``model.grouping`` (tagged by ``kind``: the
cut k-partition or Slot Attention, each with only its own fields), ``model.decoder`` and
``model.matching`` (the video models' SlotMatcher). :func:`upgrade_legacy` reads the flat
model section of cutslots 0.1 (``model.kind``, ``model.gamma``, ...), so old configs and
checkpoints still load.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from cutslots.config.core import ConfigError, Section, Tuple

__all__ = [
    "CutGroupingConfig",
    "DataConfig",
    "DecoderConfig",
    "EncoderConfig",
    "ExperimentConfig",
    "GroupingConfig",
    "LoggerName",
    "MatchingConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RandomWalkerGroupingConfig",
    "SlotAttentionGroupingConfig",
    "TrainConfig",
    "upgrade_legacy",
]

log = logging.getLogger(__name__)

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
# The backends of cutslots.train.logging.
LoggerName = Literal["csv", "tensorboard", "wandb"]


class EncoderConfig(Section):
    """The CNN encoder; its first convolution halves the image side (paper App. D)."""

    kind: Literal["cnn", "resnet"] = "cnn"
    channels: PositiveInt | None = None  # None: 64 for "cnn", 100 for "resnet"
    resnet_blocks: PositiveInt = 4


class DecoderConfig(Section):
    """The spatial broadcast decoder."""

    channels: PositiveInt = 64
    # Side of the grid each slot is broadcast onto (8: Slot Attention's CLEVR decoder, doubled
    # up to the image size); the image size (no upsampling) is the Watters et al. form.
    broadcast: PositiveInt = 8
    layers: PositiveInt = 1  # stride-1 5x5 layers at the image size (Watters et al.: 4)
    # 1x1 layers after them: they compose the 5x5 layer's fixed-direction hinges into shapes.
    pointwise_layers: Annotated[int, Field(ge=0)] = 0
    pointwise_channels: PositiveInt = 64


class CutGroupingConfig(Section):
    """The paper's cut grouping (Alg. 1-2): k relaxed s-t cuts, masked means, a slot MLP."""

    kind: Literal["cut"] = "cut"
    # QP regulariser in cutslots' convention 1/2 gamma |z|^2: the paper's gamma = 0.5 (its
    # objective has gamma * sum z^2) is gamma = 1.0 here.
    gamma: PositiveFloat = 1.0
    temperature: PositiveFloat = 0.5  # softmax temperature of the object partition
    bg_temperature: PositiveFloat = 0.1  # temperature of the fg/bg partition (background slot)
    background_slot: bool = True
    hidden: PositiveInt = 64  # width of the CNN that outputs the cut weights
    mlp_hidden: PositiveInt = 128  # hidden width of the slot MLP
    weight_activation: Literal["softplus", "relu", "none"] = "softplus"
    form: Literal["paper", "released"] = "paper"
    # Ablations: "identity" (softmax over the CNN's per-part outputs) or "green_filter" (those
    # outputs smoothed by the relaxation's fixed filter (L_grid + 2I)^-1).
    relaxation: Literal["cut", "identity", "green_filter"] = "cut"
    init_scale: PositiveFloat = 1.0  # multiplies the initial weights of the CNN's last layer
    # The learned position embedding: added to what is cut and pooled (Alg. 2), to the pooled
    # features only (the cut sees appearance alone), or not at all.
    position_embedding: Literal["cut_and_pool", "pool_only", "none"] = "cut_and_pool"
    # Slot pooling: "mean" over the grid (Alg. 2) or over each part's mask.
    pooling: Literal["mean", "masked_mean"] = "mean"


class SlotAttentionGroupingConfig(Section):
    """The Slot Attention baseline's grouping (Locatello et al., 2020), optionally with its
    attention diffused by the random walker over learned edges every iteration."""

    kind: Literal["slot_attention"] = "slot_attention"
    iters: PositiveInt = 3
    mlp_hidden: PositiveInt = 128
    diffusion: Literal["none", "random_walker"] = "none"
    edge_hidden: PositiveInt = 32  # width of the CNN that outputs the diffusion's edge weights
    # The diffusion's edge weights at initialisation (attention unaries sum to 1 per pixel): near
    # 0 the walker starts as the identity, so the slots can differ before it smooths them.
    edge_init: PositiveFloat = 0.05


class RandomWalkerGroupingConfig(Section):
    """A k-partition by the random walker: CNN edge weights and unaries, masks = its solution."""

    kind: Literal["random_walker"] = "random_walker"
    hidden: PositiveInt = 64  # width of the CNN that outputs edges and unaries
    mlp_hidden: PositiveInt = 128
    init_scale: PositiveFloat = 1.0
    position_embedding: Literal["cut_and_pool", "pool_only", "none"] = "cut_and_pool"
    pooling: Literal["mean", "masked_mean"] = "mean"
    mode: Literal["plain", "irls"] = "plain"
    iterations: Annotated[int, Field(ge=0)] = 0  # IRLS steps (mode irls)
    # "softplus": one independent unary per part (plus unary_floor); "softmax": the parts
    # compete per pixel, u = softmax(scores / temperature) as Alg. 1's masks, then diffused;
    # "balanced": softplus, each part's unaries divided by their image mean (equal mass per part).
    unaries: Literal["softplus", "softmax", "balanced"] = "softplus"
    temperature: PositiveFloat = 0.5  # of the softmax unaries
    unary_floor: PositiveFloat = 1e-3  # added to the softplus unaries: every pixel has some


def _grouping_kind(value: Any) -> str:
    """The tag of a grouping section; a section without ``kind`` is the default, the cut."""
    # Anything else (not a mapping) goes to the cut, whose validation names the wrong type.
    return str(value.get("kind", "cut")) if isinstance(value, dict) else str(getattr(value, "kind", "cut"))


GroupingConfig = Annotated[
    Annotated[CutGroupingConfig, Tag("cut")]
    | Annotated[SlotAttentionGroupingConfig, Tag("slot_attention")]
    | Annotated[RandomWalkerGroupingConfig, Tag("random_walker")],
    Discriminator(_grouping_kind),
]


class MatchingConfig(Section):
    """The matching QP of the video models' SlotMatcher (Alg. 3)."""

    form: Literal["perfect", "assignment"] = "perfect"
    gamma: PositiveFloat = 1.0  # cutslots' convention, like the cut's gamma
    temperature: PositiveFloat = 0.1


class ModelConfig(Section):
    """Architecture of the object-centric autoencoder."""

    num_slots: PositiveInt = 12  # K
    slot_dim: PositiveInt = 64  # D
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    grouping: GroupingConfig = Field(default_factory=CutGroupingConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)

    @model_validator(mode="after")
    def _background_needs_two_slots(self) -> ModelConfig:
        if isinstance(self.grouping, CutGroupingConfig) and self.grouping.background_slot and self.num_slots < 2:
            raise ConfigError("num_slots", f"expected an int >= 2 with a background slot, got {self.num_slots}")
        return self


DATASETS_ON_DISK = ("clevr", "clevrtex", "movi_a")


class DataConfig(Section):
    """Which dataset to read or generate, and how much of it."""

    dataset: Literal["synthetic", "clevr", "clevrtex", "movi_a", "moving"] = "synthetic"
    variant: str | None = None  # dataset-specific subset, e.g. a CLEVR/ClevrTex split name
    root: str | None = None  # directory of a published dataset (nothing is downloaded)
    image_size: PositiveInt = 128
    num_train: PositiveInt | None = None  # None: the whole training split
    num_eval: PositiveInt | None = None  # None: the whole evaluation split
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    # Extra evaluation sets of the same dataset (e.g. synthetic camo/ood, ClevrTex outd/camo).
    eval_variants: Tuple[str] = ()
    min_objects: PositiveInt = 2  # synthetic and moving scenes only
    max_objects: PositiveInt = 6
    num_frames: Annotated[int, Field(ge=2)] = 24  # moving clips only
    # Synthetic and moving scenes: (low, high) object radius, as fractions of the image size.
    object_radius: Tuple[float] = (0.09, 0.18)
    cache_dir: str | None = None  # where generated synthetic data is cached (None: no cache)

    @model_validator(mode="after")
    def _ranges(self) -> DataConfig:
        if self.min_objects > self.max_objects:
            raise ConfigError(
                "min_objects", f"expected an int in [1, max_objects={self.max_objects}], got {self.min_objects}"
            )
        low_high = self.object_radius
        if not (len(low_high) == 2 and 0 < low_high[0] <= low_high[1] <= 0.5):
            raise ConfigError(
                "object_radius", f"expected [low, high] with 0 < low <= high <= 0.5, got {list(low_high)}"
            )
        if self.dataset in DATASETS_ON_DISK and not self.root:
            raise ConfigError("root", f"required for dataset {self.dataset!r} (its directory)")
        return self


class OptimizerConfig(Section):
    """The optimiser; its lr is the base of the schedule in :class:`TrainConfig`."""

    kind: Literal["adam", "adamw"] = "adam"
    lr: PositiveFloat = 4e-4
    betas: Tuple[float] = (0.9, 0.999)
    weight_decay: Annotated[float, Field(ge=0)] = 0.0

    @field_validator("betas")
    @classmethod
    def _betas(cls, betas: tuple[float, ...]) -> tuple[float, ...]:
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"expected [beta1, beta2] in [0, 1), got {list(betas)}")
        return betas


class TrainConfig(Section):
    """Optimisation schedule and run bookkeeping (defaults follow Slot Attention)."""

    steps: PositiveInt = 500_000
    batch_size: PositiveInt = 64  # global batch: split evenly over DDP ranks
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    # exponential: lr *= decay_rate ** (step / decay_steps); cosine: to 0 at the last step.
    schedule: Literal["exponential", "cosine"] = "exponential"
    decay_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    decay_steps: PositiveInt = 100_000
    warmup_steps: Annotated[int, Field(ge=0)] = 10_000  # linear warmup; 0 disables it
    grad_clip: PositiveFloat | None = None  # max global grad norm; None disables clipping
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    log_every: PositiveInt = 100
    # Seconds between progress lines when stderr is not a terminal (a terminal gets tqdm's bar).
    progress_every_s: PositiveFloat = 30.0
    # Where scalars and evaluation images go: scalars.csv, TensorBoard (tb/), Weights & Biases.
    loggers: Tuple[LoggerName] = ("csv", "tensorboard")
    eval_every: PositiveInt | None = 5_000  # None disables periodic evaluation
    checkpoint_every: PositiveInt | None = 5_000  # None: checkpoint only at the end / on a signal
    out_dir: Annotated[str, Field(min_length=1)] = "runs/default"
    num_workers: Annotated[int, Field(ge=0)] = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    # Forward pass under torch.autocast in this dtype (the QP layers still solve in float32);
    # fp16 adds a GradScaler. See cutslots.train.precision.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    accumulate: PositiveInt = 1  # micro-batches of batch_size per optimiser step (gradients summed)

    @field_validator("loggers")
    @classmethod
    def _loggers(cls, loggers: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(loggers)) != len(loggers):
            raise ValueError(f"expected each logger at most once, got {list(loggers)}")
        return loggers

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if re.fullmatch(r"auto|cpu|cuda(:\d+)?", device) is None:
            raise ValueError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        return device


class ExperimentConfig(Section):
    """A whole experiment: a name plus the model, data and training sections."""

    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not name.strip():
            raise ValueError(f"expected a non-empty string, got {name!r}")
        return name

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _decoder_reaches_image(self) -> ExperimentConfig:
        ratio, remainder = divmod(self.data.image_size, self.model.decoder.broadcast)
        if remainder or ratio & (ratio - 1):
            raise ConfigError(
                "model.decoder.broadcast",
                f"expected data.image_size ({self.data.image_size}) / 2**n "
                f"for some n >= 0, got {self.model.decoder.broadcast}",
            )
        return self


# --------------------------------------------------------------------------------------------
# The flat layout of cutslots 0.1
# --------------------------------------------------------------------------------------------

# Flat model key -> (section, key) of the nested layout; None: a key of the cut grouping only.
_LEGACY_MODEL: dict[str, tuple[str, str]] = {
    "encoder": ("encoder", "kind"),
    "encoder_channels": ("encoder", "channels"),
    "resnet_blocks": ("encoder", "resnet_blocks"),
    "decoder_channels": ("decoder", "channels"),
    "decoder_broadcast": ("decoder", "broadcast"),
    "decoder_layers": ("decoder", "layers"),
    "matching_form": ("matching", "form"),
    "matching_gamma": ("matching", "gamma"),
    "matching_temperature": ("matching", "temperature"),
}
_LEGACY_CUT = {
    "gamma": "gamma",
    "temperature": "temperature",
    "bg_temperature": "bg_temperature",
    "background_slot": "background_slot",
    "partition_hidden": "hidden",
    "weight_activation": "weight_activation",
    "cut_form": "form",
    "cut_relaxation": "relaxation",
    "cut_init_scale": "init_scale",
    "position_embedding": "position_embedding",
    "slot_pooling": "pooling",
}
_LEGACY_SLOT_ATTENTION = {"slot_attention_iters": "iters"}


def _is_legacy(model: Any) -> bool:
    return isinstance(model, dict) and (
        "kind" in model
        or any(k in model for k in (*_LEGACY_CUT, *_LEGACY_SLOT_ATTENTION))
        or isinstance(model.get("encoder"), str)
        or any(k in model for k in _LEGACY_MODEL if k != "encoder")
    )


def upgrade_legacy(raw: dict[str, Any], source: str = "<dict>") -> dict[str, Any]:
    """``raw`` with a flat (cutslots 0.1) model section and ``train.lr`` in the nested layout.

    The old layout kept every grouping's keys in one section; the keys of the grouping not in
    use (``gamma`` of a Slot Attention model, ``slot_attention_iters`` of a cut model) had no
    effect and are dropped. Logs a warning that says how to rewrite the file.
    """
    raw = dict(raw)
    model, train = raw.get("model"), raw.get("train")
    legacy_train = isinstance(train, dict) and "lr" in train
    if not (_is_legacy(model) or legacy_train):
        return raw
    if _is_legacy(model):
        assert isinstance(model, dict)
        kind = model.get("kind", "cut")
        nested: dict[str, Any] = {"grouping": {"kind": kind}}
        own = _LEGACY_CUT if kind == "cut" else _LEGACY_SLOT_ATTENTION
        for key, value in model.items():
            if key in _LEGACY_MODEL:
                section, name = _LEGACY_MODEL[key]
                nested.setdefault(section, {})[name] = value
            elif key in own:
                nested["grouping"][own[key]] = value
            elif key not in (*_LEGACY_CUT, *_LEGACY_SLOT_ATTENTION, "kind"):
                nested[key] = value  # num_slots, slot_dim, or an unknown key for the schema to reject
        raw["model"] = nested
    if legacy_train:
        assert isinstance(train, dict)
        train = dict(train)
        train["optimizer"] = {**train.get("optimizer", {}), "lr": train.pop("lr")}
        raw["train"] = train
    log.warning(
        "%s: read a cutslots 0.1 config (flat model section, train.lr) as the nested layout; "
        "`cutslots config FILE > new.yaml` writes a file in the new layout",
        source,
    )
    return raw
