"""What TensorBoard shows before anyone scrolls: the CUSTOM SCALARS page's layout, HPARAMS' columns, and
TEXT's cards (the run's config, each evaluation's sample).

The layout and the columns are the same for every run, so that runs side by side (a -m sweep, or a clipped and an
unclipped run) share one page and one table: TensorBoard merges the layouts of all runs, and takes
the HPARAMS columns from whichever run it reads first.
"""

import dataclasses
import math
import re
import typing
from pathlib import Path

from charrnn.config import CHOICES, Config
from charrnn.optim import OPTIMIZERS

# The val curves' directory, RUN/val, which TensorBoard lists as a run of its own (monitor.py writes it).
# TensorBoard colours a curve by its run, never by its tag: val's loss and bpc carry train's tags, so that each
# chart (CUSTOM SCALARS', TIME SERIES', SCALARS') draws both, train in the run's colour and val in another.
VAL_DIR = "val"

# Each chart lists the tags it draws as regular expressions, so a tag the run does not write (a clipped
# norm without clipping, a second layer) is simply absent from it. The evaluation curves have a point per
# evaluation, often only two or three: TensorBoard's default smoothing (0.6) drags the last point towards
# the first, and its "ignore outliers" drops the 5% at either end of a chart's values, all of a
# two-point curve; python -m charrnn.board turns both off (board.py).
LAYOUT = {
    "training": {
        "loss (nats/char): train, smoothed train, val": ["Multiline", [r"^loss(_smooth)?$"]],
        "bits/char: train, val": ["Multiline", [r"^bpc$"]],
        "gradient norm before and after clipping": ["Multiline", [r"^grad_norm/global(_clipped)?$"]],
        "share of steps clipped, skipped (per log interval)": ["Multiline",
                                                               [r"^steps/(clipped|skipped)_fraction$"]],
        "learning rate": ["Multiline", [r"^lr$"]],
        "epoch (passes over the train split)": ["Multiline", [r"^epoch$"]],
        "gradient flow: growth from lag 0 to the far end": ["Multiline", [r"^grad_flow/growth"]],
        "gradient flow: reach (lags)": ["Multiline", [r"^grad_flow/reach"]],
        "spectral norm of the recurrent matrices": ["Multiline", [r"^spectral_norm/"]],
        "throughput (chars/s)": ["Multiline", [r"^throughput/chars_per_sec$"]],
    },
    "per parameter, and counts": {
        "gradient norm of each parameter": ["Multiline", [r"^param_grad_norm/"]],
        "steps clipped and skipped (cumulative)": ["Multiline", [r"^steps/(clipped|skipped)$"]],
    },
}

# Keys that say where things are or how often to report, not what was trained.
BOOKKEEPING = ("name", "data.url", "data.sha256", "data.download_path", "train.resume", "train.log_interval",
               "train.sample_length")
# What Hydra writes into a -m sweep's directory, beside its jobs' directories.
SWEEP_RECORD = "multirun.yaml"
# The columns HPARAMS shows when it opens (it shows five, the ones marked `differs` first, then by name):
# what tells a row's model and optimizer apart.
SHOWN_FIRST = ("model.cell", "model.hidden_size", "model.num_layers", "optim.lr", "optim.name")
# Figures of the whole run, each the last value of a curve (HPARAMS reads them so): (group, tag) -> label,
# where the group is the curve's directory under the run's ("": the run's own).
METRICS = {
    (VAL_DIR, "loss"): "val loss (last)",
    (VAL_DIR, "bpc"): "val bpc (last)",
    (VAL_DIR, "run/best_loss"): "best val loss",
    (VAL_DIR, "run/best_bpc"): "best val bpc",
    ("", "run/steps"): "steps",
    ("", "run/train_seconds"): "train seconds",
    ("", "run/chars_per_sec"): "chars/s",
}


def _leaf_types(schema, prefix: str = "") -> dict[str, type]:
    """{"train.batch_size": int, ...} from a config dataclass; optim holds the keys of every optimizer."""
    types = {}
    for name, hint in typing.get_type_hints(schema).items():
        key = f"{prefix}{name}"
        if key == "optim":
            for optimizer in OPTIMIZERS.values():
                types.update({k: t for k, t in _leaf_types(optimizer.config, "optim.").items() if k not in types})
        elif dataclasses.is_dataclass(hint):
            types.update(_leaf_types(hint, f"{key}."))
        else:
            args = [a for a in typing.get_args(hint) if a is not type(None)]  # Optional[X] -> X
            types[key] = args[0] if args else hint
    return types


def hparam_columns() -> dict[str, type]:
    """The HPARAMS table's columns with their types: every key of the schema but bookkeeping."""
    return {k: t for k, t in _leaf_types(Config).items() if k not in BOOKKEEPING}


def hparams_summaries(flat_config: dict, trial: str) -> list:
    """The three summaries of one HPARAMS row: the table's columns and metrics, this run's values (a key
    this run does not have, such as another optimizer's, stays blank) under the row name `trial`, and the
    run's end. Whole numbers are written as text: TensorBoard shows every number with five significant
    digits, 384 as 384.00."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from google.protobuf import struct_pb2

    data_types = {bool: "DATA_TYPE_BOOL", str: "DATA_TYPE_STRING", int: "DATA_TYPE_STRING"}
    infos, values = [], {}
    for key, kind in hparam_columns().items():
        info = api_pb2.HParamInfo(name=key, type=data_types.get(kind, "DATA_TYPE_FLOAT64"),
                                  differs=key in SHOWN_FIRST)
        choices = CHOICES.get(key, ())
        if choices:
            info.domain_discrete.extend(choices)
        infos.append(info)
        value = flat_config.get(key)
        if isinstance(value, bool):
            values[key] = struct_pb2.Value(bool_value=value)
        elif isinstance(value, (str, int)):
            values[key] = struct_pb2.Value(string_value=str(value))
        elif value is not None and math.isfinite(value):
            values[key] = struct_pb2.Value(number_value=value)
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(group=group, tag=tag), display_name=label)
               for (group, tag), label in METRICS.items()]
    contents = {
        metadata.EXPERIMENT_TAG: plugin_data_pb2.HParamsPluginData(
            experiment=api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)),
        metadata.SESSION_START_INFO_TAG: plugin_data_pb2.HParamsPluginData(
            session_start_info=plugin_data_pb2.SessionStartInfo(hparams=values, group_name=trial)),
        metadata.SESSION_END_INFO_TAG: plugin_data_pb2.HParamsPluginData(
            session_end_info=plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)),
    }
    return [Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(content))])
            for tag, content in contents.items()]


def trial_name(run_dir: Path) -> str:
    """A run's row name in HPARAMS' Trial ID column, which shows its first 16 or so characters. TensorBoard's
    own, the run's path under --logdir, starts with what tells runs apart (baseline/2026-11-24_12-00-00),
    except for the jobs of a -m sweep, which all start multirun/2026-1...: a job's name is its own
    directory's first ("1_optim=sgd in multirun/2026-11-24_12-00-00"). "" keeps TensorBoard's. Each run
    has its own: TensorBoard merges rows of one name into one."""
    sweep = run_dir.parent
    if not (sweep / SWEEP_RECORD).is_file():
        return ""
    return f"{run_dir.name} in {sweep.parent.name}/{sweep.name}"


def config_card(config: dict, command: str | None) -> str:
    """TEXT's card of a run (or of a resume): the command line and the resolved config it ran with."""
    from omegaconf import OmegaConf

    shown = "" if command is None else f"{code_block(command, 'bash')}\n\n"
    return shown + code_block(OmegaConf.to_yaml(config).rstrip("\n"), "yaml")


def sample_card(sample: str, val_loss: float, settings: dict | None) -> str:
    """TEXT's card of one evaluation: the sample, under the options it was drawn with, as sample.py's
    arguments that paste into a shell: python sample.py checkpoint=CKPT OPTIONS draws it again from a
    checkpoint of that step."""
    from charrnn.commandline import override

    # in code, where markdown keeps quotes as typed
    drawn = "" if settings is None else " · drawn with sample.py `" + " ".join(
        override(key, value) for key, value in settings.items()) + "`"
    return f"val {val_loss:.4f} nats/char{drawn}\n\n{code_block(sample)}"


def code_block(text: str, language: str = "") -> str:
    """text as a markdown code block (TensorBoard's text plugin renders markdown; a code block keeps line
    breaks and spaces), fenced by more backticks than the text holds in a row."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return f"{fence}{language}\n{text}\n{fence}"


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}"""
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat
