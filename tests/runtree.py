"""What the safety tests look at: a directory tree as it is on disk (links not followed), the scripts run
as a user runs them, and the runs they start from."""

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from charrnn.monitor.dashboard import VAL_DIR
from tests.conftest import HANG, REPO, TINY

# A run whose checkpoints are written at steps 0, 10 and 20 (eval_interval 10 in TINY).
FINISHED = [*TINY, "train.max_iters=20"]
# What a run directory holds once its run has ended (README.md, docs/training.md): nothing else.
RUN_FILES = {".hydra", "config.yaml", "ckpt_best.npz", "ckpt_last.npz", "result.json"}
# TensorBoard's part of it, as run_files names it: the run's event files, and the val curves' directory.
TENSORBOARD = {"events", VAL_DIR}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root by its path relative to root: ("dir",), ("link", target) or ("file", sha256).
    Links are recorded, never followed, so a write through one shows as a change of its target's entry."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir",)
            else:
                found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def run_files(run_dir: Path) -> set[str]:
    """The names in a run directory, TensorBoard's event files under one name."""
    return {"events" if p.name.startswith("events.out.tfevents.") else p.name for p in run_dir.iterdir()}


# What a terminal leaves each of these doing: ending the process. A suite run under nohup, or as a
# background job, ignores SIGHUP or SIGINT, and a script would inherit that.
TERMINATING = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2,
               signal.SIGXCPU)


def script(*args: str, cwd: Path = REPO, env: dict | None = None, **popen) -> subprocess.Popen:
    """python SCRIPT ARGS..., started as a user starts it from a terminal (train.py and sample.py by their
    path in the repository, so that any working directory can be given; every terminating signal at its
    default, then the caller's preexec_fn); stdout and stderr piped unless given."""
    command = [sys.executable, *(str(REPO / a) if a in ("train.py", "sample.py") else a for a in args)]
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    then = popen.pop("preexec_fn", None)

    def as_from_a_terminal():
        for sig in TERMINATING:
            signal.signal(sig, signal.SIG_DFL)
        if then is not None:
            then()

    return subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, text=True,
                            preexec_fn=as_from_a_terminal, **popen)


def finish(*procs: subprocess.Popen, timeout: float = HANG) -> list[subprocess.CompletedProcess]:
    """Wait for each process; its exit code and output, as subprocess.run gives them."""
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def assert_clean(proc: subprocess.CompletedProcess) -> None:
    """Exit code 0 and no traceback."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def train_in_process(corpus: Path, run_dir: Path, *overrides: str) -> Path:
    """A finished run made in this process (a fixture's, not the behaviour under test): what train.py
    writes but Hydra's .hydra record."""
    from charrnn.training.loop import train
    from tests.conftest import make_config

    return train(make_config([f"data.path={corpus}", *FINISHED, *overrides]), run_dir).run_dir


def write_corpus(directory: Path) -> Path:
    """The small repetitive corpus of tests/conftest.py's fixture, for module-scoped fixtures."""
    path = directory / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog.\n" * 120, encoding="utf-8")
    return path
