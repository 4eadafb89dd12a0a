"""Typed configuration: the schema the YAML in conf/ must fit, and the checks on its values.

Values live in conf/; these dataclasses only say what type each key has. to_config (train.py) and
to_sample_config (sample.py) turn a composed Hydra config into a typed one, or raise UserError
naming the key and the fix.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from charrnn.data import ENCODINGS
from charrnn.errors import UserError
from charrnn.model import CELLS


@dataclass
class BackendConfig:
    name: str
    device: str


@dataclass
class ModelConfig:
    hidden_size: int
    init: str
    init_std: float
    dtype: str
    # Defaults only for checkpoints written before the keys existed (values live in conf/model/).
    cell: str = "rnn"
    num_layers: int = 1
    dropout: float = 0.0
    forget_bias: float = 0.0


@dataclass
class AdagradConfig:
    name: str
    lr: float
    eps: float


@dataclass
class SGDConfig:
    name: str
    lr: float
    momentum: float
    nesterov: bool


@dataclass
class AdamConfig:
    name: str
    lr: float
    beta1: float
    beta2: float
    eps: float


OPTIMIZERS = {"adagrad": AdagradConfig, "sgd": SGDConfig, "adam": AdamConfig}


@dataclass
class DataConfig:
    name: str
    path: Optional[str]
    download_path: Optional[str]
    url: Optional[str]
    sha256: Optional[str]
    val_fraction: float
    # Defaults only for checkpoints written before the key existed (values live in conf/).
    encoding: str = "utf-8"
    cache_dir: Optional[str] = None


@dataclass
class TrainConfig:
    batch_size: int
    seq_length: int
    reset_state: bool
    loss_reduction: str
    clip_mode: str
    grad_clip: float
    lr_schedule: str
    warmup_iters: int
    lr_decay_iters: int
    min_lr: float
    max_iters: int
    max_seconds: Optional[float]
    eval_interval: int
    eval_batch_size: int
    log_interval: int
    sample_length: int
    resume: Optional[str]
    nonfinite: str = "stop"
    eval_chars: Optional[int] = None
    eval_at_start: bool = True
    final_full_eval: bool = False


@dataclass
class Config:
    seed: int
    backend: BackendConfig
    model: ModelConfig
    optim: Any  # one of OPTIMIZERS, chosen by optim.name
    data: DataConfig
    train: TrainConfig
    name: Optional[str] = None  # only names the run directory (conf/train.yaml); default for older checkpoints


@dataclass
class SampleConfig:
    checkpoint: str
    backend: BackendConfig
    length: int
    temperature: float
    top_k: Optional[int]
    top_p: Optional[float]
    greedy: bool
    prime: str
    skip_unknown: bool
    seed: int
    num_samples: int


BACKEND_CHOICES = {
    "backend.name": ("numpy", "torch"),
    "backend.device": ("auto", "cpu", "cuda"),
}

CHOICES = {
    **BACKEND_CHOICES,
    "model.cell": tuple(CELLS),
    "model.init": ("normal", "uniform"),
    "model.dtype": ("float32", "float64"),
    "train.loss_reduction": ("mean", "sum"),
    "train.clip_mode": ("norm", "value", "none"),
    "train.lr_schedule": ("constant", "cosine"),
    "train.nonfinite": ("stop", "skip"),
    "data.encoding": ENCODINGS,
}

POSITIVE = ("model.hidden_size", "model.num_layers", "optim.lr", "train.batch_size", "train.seq_length",
            "train.grad_clip", "train.max_iters", "train.lr_decay_iters", "train.eval_interval", "train.eval_batch_size",
            "train.log_interval", "train.eval_chars")
NON_NEGATIVE = ("train.warmup_iters", "train.min_lr", "train.sample_length")

# top_k and top_p may be null (no cut); the checks below skip a null value.
SAMPLE_POSITIVE = ("temperature", "top_k", "num_samples")
SAMPLE_NON_NEGATIVE = ("length",)


def lookup(cfg, dotted: str):
    """The value at a dotted key of a typed config: lookup(cfg, "train.batch_size")."""
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _typed(schema, raw: DictConfig):
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw))
    except ConfigKeyError as e:
        raise UserError(unknown_key_message(e.full_key)) from None
    except MissingMandatoryValue as e:
        raise UserError(f"{e.full_key} needs a value: pass {e.full_key}=...") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        where = f" at {key}" if key else ""
        first_line = str(e).splitlines()[0]
        raise UserError(f"invalid config{where}: {first_line}") from None


def unknown_key_message(key: str) -> str:
    return f"{key} is not a config key; --cfg job lists the keys"


def _check_values(cfg, choices: dict, positive: tuple, non_negative: tuple) -> None:
    for key, allowed in choices.items():
        if lookup(cfg, key) not in allowed:
            raise UserError(f"{key}={lookup(cfg, key)!r} is not one of {', '.join(allowed)}")
    for key in positive:
        if lookup(cfg, key) is not None and not lookup(cfg, key) > 0:
            raise UserError(f"{key} must be positive, got {lookup(cfg, key)}")
        if lookup(cfg, key) == math.inf:
            raise UserError(f"{key} must be finite, got {lookup(cfg, key)}")
    for key in non_negative:
        if lookup(cfg, key) < 0:
            raise UserError(f"{key} must not be negative, got {lookup(cfg, key)}")


def to_config(raw: DictConfig) -> Config:
    """Check a composed config against the schema and the allowed values; return it typed."""
    optim_name = OmegaConf.select(raw, "optim.name")
    if optim_name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {optim_name!r}; choose optim= one of {', '.join(OPTIMIZERS)}")
    cfg: Config = _typed(Config, raw)
    cfg.optim = _typed(OPTIMIZERS[optim_name], raw.optim)
    _check_values(cfg, CHOICES, POSITIVE, NON_NEGATIVE)
    if not 0 <= cfg.model.dropout < 1:
        raise UserError(f"model.dropout must be in [0, 1) (the probability of dropping a unit), "
                        f"got {cfg.model.dropout}")
    if not 0 < cfg.data.val_fraction < 1:
        raise UserError(f"data.val_fraction must be between 0 and 1 (exclusive), got {cfg.data.val_fraction}")
    if cfg.train.max_seconds is not None and cfg.train.max_seconds <= 0:
        raise UserError(f"train.max_seconds must be positive or null, got {cfg.train.max_seconds}")
    return cfg


def to_sample_config(raw: DictConfig) -> SampleConfig:
    """The same for sample.py's config (conf/sample.yaml)."""
    if OmegaConf.is_missing(raw, "checkpoint"):
        raise UserError("name the checkpoint to sample from: checkpoint=PATH (a ckpt_*.npz file or a run directory)")
    cfg: SampleConfig = _typed(SampleConfig, raw)
    _check_values(cfg, BACKEND_CHOICES, SAMPLE_POSITIVE, SAMPLE_NON_NEGATIVE)
    if cfg.top_p is not None and not 0 < cfg.top_p <= 1:
        raise UserError(f"top_p must be in (0, 1], got {cfg.top_p}")
    return cfg


def config_to_dict(cfg: Config) -> dict:
    """Plain dict of a typed config, for checkpoints and the run directory."""
    return asdict(cfg)
