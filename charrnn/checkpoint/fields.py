"""What each entry of a checkpoint must hold, checked when it is loaded, so that a hand-edited or foreign
file is refused in one line naming the field instead of failing deep inside a resume.

One table row per field: a checkpoint layout that gains entries (cells, layers) adds rows here.
Each check returns None when the value is fine, else what the field must be.
"""

import math

import numpy as np

# The largest count a field may hold: exact in JSON and in float64, and beyond any run's steps by far
# (TensorBoard's step is an int64, which a larger count would overflow).
MAX_COUNT = 2**53


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def count(v) -> str | None:
    return None if _is_int(v) and 0 <= v <= MAX_COUNT else "a whole number from 0 to 2**53"


def count_or_null(v) -> str | None:
    return None if v is None or count(v) is None else "a whole number from 0 to 2**53, or null"


def step_or_none(v) -> str | None:
    return None if _is_int(v) and -1 <= v <= MAX_COUNT else "a whole number from -1 to 2**53 (-1: no evaluation yet)"


def run_id(v) -> str | None:
    ok = isinstance(v, str) and len(v) == 32 and all(c in "0123456789abcdef" for c in v)
    return None if ok else "32 hexadecimal digits"


def number(v) -> str | None:
    # NaN and infinity are legitimate: no validation loss yet, no best yet.
    return None if _is_number(v) else "a number"


def seconds(v) -> str | None:
    return None if _is_number(v) and 0 <= v < math.inf else "a finite number from 0"


def seconds_or_null(v) -> str | None:
    return None if v is None or seconds(v) is None else "a finite number from 0, or null"


def number_or_null(v) -> str | None:
    return None if v is None or _is_number(v) else "a number or null"


def text(v) -> str | None:
    return None if isinstance(v, str) else "a string"


def numbers_by_name(v) -> str | None:
    ok = isinstance(v, dict) and all(isinstance(k, str) and _is_number(x) for k, x in v.items())
    return None if ok else "an object of numbers"


# Monitor.Interval's sums, as the monitor saves them.
INTERVAL_FIELDS = {"n": count, "loss": number, "chars": count, "seconds": seconds, "clipped": count,
                   "global_norm": number, "global_clipped": number, "norms": numbers_by_name,
                   "clipped_norms": numbers_by_name, "steps": count}


def interval(v) -> str | None:
    return _object_problem(v, INTERVAL_FIELDS, "the monitor's interval sums")


# Monitor.state_dict's fields.
MONITOR_FIELDS = {"smooth_loss": number_or_null, "interval": interval, "skipped_steps": count,
                  "clipped_steps": count, "chars_per_step": count_or_null}
# Fields that checkpoints written before they existed lack (their readers default them).
OPTIONAL = {"skipped_steps", "clipped_steps", "chars_per_step", "steps", "init_from", "run_id", "schedule",
            "segments"}


def monitor(v) -> str | None:
    return _object_problem(v, MONITOR_FIELDS, "the monitor's state")


# A fine-tuned run's record of the checkpoint its weights came from (charrnn.training.finetune).
ORIGIN_FIELDS = {"path": text, "step": count_or_null, "val_loss": number_or_null}


def origin_or_null(v) -> str | None:
    return None if v is None else _object_problem(v, ORIGIN_FIELDS, "the checkpoint the weights came from")


# charrnn.training.schedule.Schedule.state_dict's fields, and those of its budget and re-plan.
BUDGET_FIELDS = {"lr_decay_iters": count, "max_seconds": seconds_or_null}
REPLAN_FIELDS = {"step": count, "seconds": seconds, "lr": number}


def budget(v) -> str | None:
    return _object_problem(v, BUDGET_FIELDS, "the budget the schedule was planned over")


def replan_or_null(v) -> str | None:
    return None if v is None else _object_problem(v, REPLAN_FIELDS, "the schedule's re-plan")


SCHEDULE_FIELDS = {"warmed": number, "replan": replan_or_null, "eval_seconds": seconds, "budget": budget}


def schedule(v) -> str | None:
    return _object_problem(v, SCHEDULE_FIELDS, "the learning-rate schedule's state")


# One start of a run, fresh or resumed (charrnn.training.resume.Progress.segments): its first step and budgets.
SEGMENT_FIELDS = {"from_step": count, "max_iters": count, "max_seconds": number_or_null}


def segments(v) -> str | None:
    if not isinstance(v, list):
        return "a list of the run's starts"
    for segment in v:
        problem = _object_problem(segment, SEGMENT_FIELDS, "one start of the run")
        if problem:
            return f"a list of the run's starts, each {problem}"
    return None


# charrnn.training.resume.Progress's fields (all but the recurrent state, arrays of their own).
PROGRESS_FIELDS = {"step": count, "epoch": count, "chunk": count, "eval_step": step_or_none, "val_loss": number,
                   "best_val": number, "train_seconds": seconds, "monitor": monitor, "run_id": run_id,
                   "init_from": origin_or_null, "schedule": schedule, "segments": segments}


def _object_problem(v, fields: dict, what: str) -> str | None:
    if not isinstance(v, dict):
        return f"an object ({what})"
    missing = [k for k in fields if k not in v and k not in OPTIONAL]
    if missing:
        return f"an object with {', '.join(fields)} ({what}; it lacks {', '.join(missing)})"
    for k, check in fields.items():
        if k not in v:
            continue
        problem = check(v[k])
        if problem:
            return f"an object whose {k} is {problem} (got {v[k]!r:.40})"
    return None


def progress_problem(progress: dict, names: list[str]) -> str | None:
    """The first of the progress fields `names` whose value is wrong, as 'progress.FIELD must be ...'."""
    for name in names:
        if name not in progress:  # optional, and absent (see OPTIONAL)
            continue
        problem = PROGRESS_FIELDS[name](progress[name])
        if problem:
            return f"progress.{name} must be {problem}, got {progress[name]!r:.60}"
    return None


def optimizer_problem(flat: dict[str, np.ndarray], state_names: tuple[str, ...],
                      params: dict[str, np.ndarray]) -> str | None:
    """Whether a flat optimizer state (charrnn.optim's layout: "step", "<state>/<param>") fits the
    optimizer's state_names and the params' shapes."""
    step = flat.get("step")
    if step is None or step.shape != () or step.dtype.kind not in "iu" or step < 0:
        return "optim/step must be a whole number from 0"
    expected = {f"{s}/{k}": p.shape for s in state_names for k, p in params.items()}
    missing = [k for k in expected if k not in flat]
    if missing:
        return f"the optimizer state lacks {', '.join(f'optim/{k}' for k in missing)}"
    for k, shape in expected.items():
        if flat[k].shape != shape or flat[k].dtype.kind != "f":
            return f"optim/{k} must be a float array of shape {shape}, got {flat[k].dtype} {flat[k].shape}"
    return None


def nonfinite_entries(arrays: dict[str, np.ndarray]) -> list[str]:
    """The float arrays that hold a NaN or an infinity, by name."""
    return [k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
