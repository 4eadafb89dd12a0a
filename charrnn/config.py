"""Typed configuration: the schema the YAML in conf/ must fit, and the checks on its values.

Values live in conf/; these dataclasses only say what type each key has. to_config turns a
composed Hydra config into a Config, or raises UserError naming the key and the fix.
"""

from dataclasses import asdict, dataclass
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from charrnn.errors import UserError


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
    min_lr: float
    max_iters: int
    max_seconds: Optional[float]
    eval_interval: int
    eval_batch_size: int
    log_interval: int
    sample_length: int
    resume: Optional[str]


@dataclass
class Config:
    seed: int
    backend: BackendConfig
    model: ModelConfig
    optim: Any  # one of OPTIMIZERS, chosen by optim.name
    data: DataConfig
    train: TrainConfig


CHOICES = {
    "backend.name": ("numpy", "torch"),
    "backend.device": ("auto", "cpu", "cuda"),
    "model.init": ("normal", "uniform"),
    "model.dtype": ("float32", "float64"),
    "train.loss_reduction": ("mean", "sum"),
    "train.clip_mode": ("norm", "value", "none"),
    "train.lr_schedule": ("constant", "cosine"),
}

POSITIVE = ("model.hidden_size", "optim.lr", "train.batch_size", "train.seq_length", "train.grad_clip",
            "train.max_iters", "train.eval_interval", "train.eval_batch_size", "train.log_interval")
NON_NEGATIVE = ("train.warmup_iters", "train.min_lr", "train.sample_length")


def _get(cfg: Config, dotted: str):
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def to_config(raw: DictConfig) -> Config:
    """Check a composed config against the schema and the allowed values; return it typed."""
    optim_name = OmegaConf.select(raw, "optim.name")
    if optim_name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {optim_name!r}; choose optim= one of {', '.join(OPTIMIZERS)}")
    try:
        cfg: Config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), raw))
        cfg.optim = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(OPTIMIZERS[optim_name]), raw.optim))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        where = f" at {key}" if key else ""
        first_line = str(e).splitlines()[0]
        raise UserError(f"invalid config{where}: {first_line}") from None
    for key, allowed in CHOICES.items():
        if _get(cfg, key) not in allowed:
            raise UserError(f"{key}={_get(cfg, key)!r} is not one of {', '.join(allowed)}")
    for key in POSITIVE:
        if not _get(cfg, key) > 0:
            raise UserError(f"{key} must be positive, got {_get(cfg, key)}")
    for key in NON_NEGATIVE:
        if _get(cfg, key) < 0:
            raise UserError(f"{key} must not be negative, got {_get(cfg, key)}")
    if not 0 < cfg.data.val_fraction < 1:
        raise UserError(f"data.val_fraction must be between 0 and 1 (exclusive), got {cfg.data.val_fraction}")
    if cfg.train.max_seconds is not None and cfg.train.max_seconds <= 0:
        raise UserError(f"train.max_seconds must be positive or null, got {cfg.train.max_seconds}")
    return cfg


def config_to_dict(cfg: Config) -> dict:
    """Plain dict of a typed config, for checkpoints and the run directory."""
    return asdict(cfg)
