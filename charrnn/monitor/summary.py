"""The three lines a finished run ends with: its validation figures, its directory, and the commands
that sample from it and train it further, each pasteable as printed.

    best val 1.6012 nats/char (2.3101 bits/char); last val 1.6040 nats/char (2.3141 bits/char) at step 10000
    run directory: runs/default/2026-11-24_12-00-00
    sample: python sample.py checkpoint=runs/...   continue: python train.py train.resume=runs/... train.max_iters=20000

A run whose learning-rate schedule had not finished (a cosine not yet down to train.min_lr, or a run
still inside its warm-up) says so at the end of the last line, whose continue command then finishes it.
A resumed run whose schedule was re-planned for its new budget (charrnn.training.schedule) says so in
a fourth line.
"""

import math
import os
from pathlib import Path

from charrnn.commandline import override
from charrnn.config import Config

LOG2E = 1.0 / math.log(2.0)


def summary(result, cfg: Config) -> str:
    """result: the run's charrnn.training.loop.TrainResult."""
    tc = cfg.train
    best, last = result.best_val_loss, result.val_loss
    run_dir = shown_path(result.run_dir)
    unfinished = ""
    if result.warmup is not None:
        unfinished = f"stopped inside its warm-up, at step {result.steps} of train.warmup_iters={tc.warmup_iters}"
        more = override("train.max_iters", max(2 * result.steps, tc.warmup_iters))
    elif result.schedule_progress < 1.0:
        unfinished = (f"the learning-rate schedule stopped {result.schedule_progress:.0%} of the way: "
                      f"lr {result.lr:.2e}, not yet train.min_lr={tc.min_lr:g}")
        more = override("train.max_iters", tc.lr_decay_iters)
    else:
        more = override("train.max_iters", 2 * result.steps)
    if tc.max_seconds is not None and result.train_seconds >= tc.max_seconds:
        # the clock ended it: only a larger budget trains further, whatever the schedule's state (twice the
        # budget, or twice the time spent where one slow step overshot it further)
        seconds = 2 * tc.max_seconds
        if seconds <= result.train_seconds:
            seconds = math.ceil(2 * result.train_seconds)
        more = override("train.max_seconds", f"{seconds:g}")
    if result.epochs_ended:
        # train.max_epochs ended it first: raising max_iters or the clock would stop it at the same step
        more = override("train.max_epochs", f"{2 * tc.max_epochs:g}")
    lines = [
        f"best val {best:.4f} nats/char ({best * LOG2E:.4f} bits/char); "
        f"last val {last:.4f} nats/char ({last * LOG2E:.4f} bits/char) at step {result.steps}",
        f"run directory: {run_dir}",
        f"sample: python sample.py {override('checkpoint', run_dir)}   "
        f"continue: python train.py {override('train.resume', run_dir)} {more}"
        + (f"   ({unfinished})" if unfinished else ""),
    ]
    if result.replanned:
        lines.append(result.replanned)
    return "\n".join(lines)


def shown_path(path: Path) -> Path:
    """path relative to the current directory when it lies inside it (Hydra's run directories are
    absolute): shorter, and as the user would type it."""
    relative = Path(os.path.relpath(path))
    return path if relative.parts[:1] == ("..",) else relative
