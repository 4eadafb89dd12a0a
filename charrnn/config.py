"""Typed configuration: the schema the YAML in conf/ must fit, and the checks on its values.

Values live in conf/; these dataclasses only say what type each key has. run_config (train.py) and
to_sample_config (sample.py) turn a composed Hydra config into a typed one, or raise UserError
naming the key and the fix; compose() composes conf/ outside a Hydra command (tools, tests, the API).
"""

import difflib
import math
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from charrnn.backends import BACKENDS
from charrnn.devices import DEVICES, PRECISIONS, check_precision, needs_torch, resolve_device, valid_device
from charrnn.data.vocab import ENCODINGS
from charrnn.errors import UserError, UserValueError
from charrnn.cells import CELLS
from charrnn.model import ACTIVATIONS, NORMS, options_problem
from charrnn.optim import OPTIMIZERS
from charrnn.ranges import DECAY, FRACTION, NON_NEGATIVE, POSITIVE, PROBABILITY_MASS, Range


@dataclass
class BackendConfig:
    name: str
    device: str
    # Defaults only for checkpoints written before the keys existed (values live in conf/backend/).
    precision: str = "fp32"
    recurrence: str = "auto"


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
    activation: str = "none"   # the parallel cells' options (charrnn.model): off in a checkpoint made without them
    residual: bool = False
    norm: str = "none"


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
    max_loss_ratio: Optional[float] = None
    init_from: Optional[str] = None
    new_chars: str = "refuse"
    max_epochs: Optional[float] = None


@dataclass
class Config:
    seed: int
    backend: BackendConfig
    model: ModelConfig
    optim: Any  # the config of one of charrnn.optim.OPTIMIZERS, chosen by optim.name
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
    raw: bool = False
    novelty: bool = False
    info: bool = False


BACKEND_CHOICES = {
    "backend.name": tuple(BACKENDS),
    "backend.precision": PRECISIONS,
    "backend.recurrence": ("auto", "fused", "loop"),
}

CHOICES = {
    **BACKEND_CHOICES,
    "model.cell": CELLS,   # the records themselves: a cell registered later is a choice too
    "optim.name": tuple(OPTIMIZERS),
    "model.init": ("normal", "uniform"),
    "model.dtype": ("float32", "float64"),
    "model.activation": ACTIVATIONS,
    "model.norm": NORMS,
    "train.loss_reduction": ("mean", "sum"),
    "train.clip_mode": ("norm", "value", "none"),
    "train.lr_schedule": ("constant", "cosine"),
    "train.nonfinite": ("stop", "skip"),
    "train.new_chars": ("refuse", "add"),
    "data.encoding": ENCODINGS,
}


# One line per key, one place per fact (an optimizer's keys are in its row, charrnn.optim.OPTIMIZERS).
# Seeds are NumPy's (np.random.default_rng takes any integer from 0 up).
RANGES = {
    "seed": NON_NEGATIVE,
    "model.hidden_size": POSITIVE,
    "model.num_layers": POSITIVE,
    "model.init_std": POSITIVE,
    "model.dropout": DECAY,
    "model.forget_bias": Range(),
    "data.val_fraction": FRACTION,
    "train.batch_size": POSITIVE,
    "train.seq_length": POSITIVE,
    "train.grad_clip": POSITIVE,
    "train.warmup_iters": NON_NEGATIVE,
    "train.lr_decay_iters": POSITIVE,
    "train.min_lr": NON_NEGATIVE,
    "train.max_iters": POSITIVE,
    "train.max_seconds": POSITIVE,
    "train.max_epochs": POSITIVE,
    "train.eval_interval": POSITIVE,
    "train.eval_batch_size": POSITIVE,
    "train.log_interval": POSITIVE,
    "train.sample_length": NON_NEGATIVE,
    "train.max_loss_ratio": Range(low=1),
    "train.eval_chars": POSITIVE,
}

SAMPLE_RANGES = {
    "seed": NON_NEGATIVE,
    "length": NON_NEGATIVE,
    "temperature": POSITIVE,
    "top_k": POSITIVE,
    "top_p": PROBABILITY_MASS,
    "num_samples": POSITIVE,
}


def lookup(cfg, dotted: str):
    """The value at a dotted key of a typed config: lookup(cfg, "train.batch_size")."""
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def typed(schema, raw: DictConfig):
    """raw (a DictConfig or a dict) as an instance of the dataclass schema, or a UserError naming the key."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw))
    except ConfigKeyError as e:
        raise UserValueError(unknown_key_message(e.full_key, schema)) from None
    except MissingMandatoryValue as e:
        raise UserValueError(f"{e.full_key} needs a value: pass {e.full_key}=...") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        where = f" at {key}" if key else ""
        first_line = str(e).splitlines()[0]
        raise UserValueError(f"invalid config{where}: {first_line}") from None


def unknown_key_message(key: str, schema=None) -> str:
    """The line for a key the schema (Config, SampleConfig, ExploreConfig; None: any of them) lacks, with the
    nearest key it has when one is near: a misspelling."""
    near = difflib.get_close_matches(key, schema_keys(schema), n=1, cutoff=0.75)
    hint = f"did you mean {near[0]}? " if near else ""
    return f"{key} is not a config key; {hint}--cfg job lists the keys"


def schema_keys(schema=None) -> list[str]:
    """Every dotted key of a config schema (every optimizer's under optim), or of all three with None."""
    if schema is None:
        return [key for each in (Config, SampleConfig, ExploreConfig) for key in schema_keys(each)]
    keys = []
    for field in fields(schema):
        if field.name == "optim" and schema is Config:
            keys += sorted({f"optim.{key}" for optimizer in OPTIMIZERS.values() for key in schema_keys(optimizer.config)})
        elif is_dataclass(field.type):
            keys += [f"{field.name}.{key}" for key in schema_keys(field.type)]
        else:
            keys.append(field.name)
    return keys


def _check_values(cfg, choices: dict, ranges: dict) -> None:
    for key, allowed in choices.items():
        if lookup(cfg, key) not in allowed:
            raise UserValueError(f"{key}={lookup(cfg, key)!r} is not one of {', '.join(allowed)}")
    for key, allowed in ranges.items():
        value = lookup(cfg, key)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UserValueError(f"{key} must be finite, got {value}")
        if not allowed.holds(value):
            raise UserValueError(f"{key} {allowed.describe()}, got {value}")


def check_backend(backend: BackendConfig, dtype: str | None) -> None:
    """backend.device names a device this machine has, which can train model.dtype (unless None: a
    sampling command does not know it yet) in backend.precision."""
    if not valid_device(backend.device):
        raise UserError(f"backend.device={backend.device!r} is not one of {DEVICES}")
    if backend.name == "numpy" and backend.precision != "fp32":
        raise UserError(f"backend=numpy computes in model.dtype; backend.precision={backend.precision} needs "
                        f"backend=torch")
    if backend.name == "numpy" and backend.recurrence != "auto":
        raise UserError(f"backend=numpy runs its own loop; backend.recurrence={backend.recurrence} chooses the "
                        f"torch backend's: leave it out, or use backend=torch")
    if needs_torch(backend.device, backend.precision):
        check_precision(backend.precision, resolve_device(backend.device).type, dtype)
    else:
        check_precision(backend.precision, "cpu", dtype)


def to_config(raw: DictConfig) -> Config:
    """Check a composed config against the schema and the allowed values; return it typed."""
    optim_name = OmegaConf.select(raw, "optim.name")
    if optim_name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {optim_name!r}; choose optim= one of {', '.join(OPTIMIZERS)}")
    cfg: Config = typed(Config, raw)
    cfg.optim = typed(OPTIMIZERS[optim_name].config, raw.optim)
    kind = OPTIMIZERS[optim_name]
    _check_values(cfg, CHOICES, {**RANGES, **{f"optim.{key}": allowed for key, allowed in kind.ranges.items()}})
    check_backend(cfg.backend, cfg.model.dtype)
    model = cfg.model
    problem = options_problem(model.cell, model.activation, model.residual, model.norm) or kind.check(cfg.optim)
    if problem:
        raise UserError(problem)
    return cfg


def to_sample_config(raw: DictConfig) -> SampleConfig:
    """The same for sample.py's config (conf/sample.yaml)."""
    if OmegaConf.is_missing(raw, "checkpoint"):
        raise UserError("name the checkpoint to sample from: checkpoint=PATH (a ckpt_*.npz file or a run directory)")
    cfg: SampleConfig = typed(SampleConfig, raw)
    _check_values(cfg, BACKEND_CHOICES, SAMPLE_RANGES)
    check_backend(cfg.backend, None)
    return cfg


def config_to_dict(cfg: Config) -> dict:
    """Plain dict of a typed config, for checkpoints and the run directory."""
    return asdict(cfg)


@dataclass
class ExploreConfig:
    checkpoint: str
    text: Optional[str]
    length: int
    out: Optional[str]
    lookback_positions: int
    lookback_lags: Optional[int]
    select: Optional[int]
    show: Optional[str]
    skip_unknown: bool


EXPLORE_RANGES = {
    "length": POSITIVE,
    "lookback_positions": NON_NEGATIVE,
    "lookback_lags": POSITIVE,
    "select": NON_NEGATIVE,
}


def to_explore_config(raw: DictConfig) -> ExploreConfig:
    """The same for python -m charrnn.explore's config (conf/explore.yaml)."""
    if OmegaConf.is_missing(raw, "checkpoint"):
        raise UserError("name the model to explore: checkpoint=PATH (a ckpt_*.npz file or a run directory)")
    cfg: ExploreConfig = typed(ExploreConfig, raw)
    _check_values(cfg, {}, EXPLORE_RANGES)
    return cfg


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose(config_name: str = "train", overrides=(), return_hydra_config: bool = False) -> DictConfig:
    """conf/<config_name>.yaml with overrides, composed as the command line would (untyped: to_config or
    run_config types it)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    # job_name as the command line's: Hydra names a job after its script (train.py, sample.py)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=config_name):
        return hydra_compose(config_name, list(overrides), return_hydra_config=return_hydra_config)
