"""What the commands share (train.py, sample.py, python -m charrnn.explore, the board, the bench, and
charrnn.start for train.py and charrnn.train): a mistake the user can fix ends in one line on stderr and
exit code 2; anything else, a bug, keeps its traceback."""

import difflib
import errno
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from charrnn.config import unknown_key_message
from charrnn.commandline import override
from charrnn.errors import UserError
from charrnn.files import write_text_atomic
from charrnn.signals import Stopped, was_interrupted

# What a machine, not a bug, makes a write fail with: a full disk or quota, a read-only or failing one.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def fail(message: str) -> NoReturn:
    """One line and exit code 2; in a -m sweep, the job's line, naming it, and on to the next job."""
    job = _sweep_job()
    if job is None:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    print(f"error: job {job}: {message}", file=sys.stderr)
    raise JobFailed(message)


class JobFailed(Exception):
    """A sweep's job that failed and said so: Hydra records it and runs the other jobs (a SystemExit would
    end the sweep, and under the joblib launcher kill the running jobs with it); the sweep then ends with
    exit code 2."""


def _sweep_job() -> str | None:
    """'N (its overrides)' inside a -m sweep's job, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra_cfg = HydraConfig.get()
    return f"{hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)})"


class Command:
    """Runs a @hydra.main function. Hydra finds some mistakes before it calls the task function (an
    unknown key or option, an override it cannot parse, a run directory it cannot create) and reports
    them in several lines with exit code 1; run() makes them one line and exit code 2. They are told
    from the task's own errors by whether the task had started, which task() records. Inside the task,
    running out of memory or disk is one line too; `out_of_memory` and `cannot_write` say what to do."""

    def __init__(self, out_of_memory: str = "out of memory",
                 cannot_write: str = "free some space, or write elsewhere", schema=None):
        self.started = False
        self.schema = schema  # the command's config schema, whose keys a misspelt key is matched against
        self.out_of_memory = out_of_memory
        self.cannot_write = cannot_write

    @contextmanager
    def task(self) -> Iterator[None]:
        self.started = True
        try:
            yield
        except UserError as e:
            fail(str(e))
        except MemoryError:  # NumPy's _ArrayMemoryError is one
            fail(self.out_of_memory)
        except ValueError as e:  # NumPy's, for an array larger than any address space
            if "array is too big" not in str(e):
                raise
            fail(self.out_of_memory)
        except RuntimeError as e:  # torch's allocators, CPU and CUDA (torch.OutOfMemoryError is one)
            if not is_out_of_memory(e):
                raise
            fail(self.out_of_memory)
        except OSError as e:
            if e.errno not in DISK_ERRNOS:
                raise
            fail(f"cannot write {e.filename or 'the output'}: {e.strerror}; {self.cannot_write}")

    def run(self, main: Callable[[], object]) -> None:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for Hydra's own full report
            main()
            return
        # Hydra then raises what it finds instead of printing it and exiting.
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            main()
        except JobFailed:  # a sweep's first failed job, raised once all jobs ran; each said its line
            sys.exit(2)
        except Exception as e:
            signalled = signal_within(e)
            if signalled is not None:  # a signal's exception that a library's cleanup replaced with its own
                raise signalled from None
            if was_interrupted():  # whatever the Ctrl-C became on its way up
                print("interrupted", file=sys.stderr)
                sys.exit(128 + signal.SIGINT)
            message = None if self.started else startup_error(e, self.schema, sys.argv[1:])
            if message is None:
                raise
            fail(message)
        finally:
            del os.environ["HYDRA_FULL_ERROR"]


def signal_within(e: BaseException) -> BaseException | None:
    """The Stopped or KeyboardInterrupt that e was raised while handling, if any: a signal that lands inside
    Hydra's composition can be replaced by the error of a cleanup it cut short ("defaults is not a config
    key"), which is no mistake of the user's."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, (Stopped, KeyboardInterrupt)):
            return e
        seen.add(id(e))
        e = e.__context__
    return None


def startup_error(e: Exception, schema=None, given: Sequence[str] = ()) -> str | None:
    """One line for what Hydra raises before the task starts, or None for what is not the user's doing.
    schema: the config schema whose keys a misspelt key is matched against; given: the command line's words,
    for the hint that a value with a space was split by the shell."""
    if isinstance(e, MissingConfigException) and e.options:
        group, _, option = e.missing_cfg_file.rpartition("/")
        near = difflib.get_close_matches(option, e.options, n=1, cutoff=0.6)
        hint = f"did you mean {group}={near[0]}? " if near else ""
        return f"{group}={option} is not an option; {hint}choose {group}= one of {', '.join(e.options)}"
    if isinstance(e.__cause__, (ConfigKeyError, ConfigAttributeError)) and e.__cause__.full_key:
        return unknown_key_message(e.__cause__.full_key, schema)
    if isinstance(e, OverrideParseException):
        key, _, value = e.override.partition("=")
        if "=" in value:
            # charrnn's own run directories are named by their overrides, so a path to one holds '='
            return (f"cannot parse the override {e.override!r}: a value holding '=' must be quoted, as in "
                    f"{override(key, value)}")
        split = _split_value(e.override, list(given))
        if split:
            return (f"{e.override!r} is not key=value: the shell split a value at its space; quote the value "
                    f"as one word, as in {shlex.quote(split)}")
        example = override(key, value) if key and value else override("prime", "To be, or")
        return (f"cannot parse the override {e.override!r} ({e.message.splitlines()[0]}); write key=value, "
                f"quoting a value that holds spaces or any of ()[]{{}}',\" as in {example}")
    keyless = next((word for word in given if word.startswith("=")), None)
    if isinstance(e, ValueError) and keyless is not None:  # Hydra reads '=3' as a config group named ''
        return f"{keyless!r} names no key; write key=value, as in {override('seed', keyless[1:] or '1')}"
    if isinstance(e, HydraException):
        return " ".join(str(e).split("Config search path:")[0].split())
    if isinstance(e, OSError):
        return (f"cannot create {e.filename or 'the run directory'}: {e.strerror}; name a writable run directory with "
                f"hydra.run.dir=PATH (hydra.sweep.dir=PATH with -m)")
    return None


def _split_value(word: str, given: list[str]) -> str | None:
    """`key=first word` when `word` (no '=' in it) follows key=... among the command line's words: the
    shell's splitting of an unquoted value such as prime=To be. None otherwise."""
    if "=" in word or word not in given:
        return None
    start = given.index(word)
    while start > 0 and "=" not in given[start - 1]:
        start -= 1
    if start == 0 or given[start - 1].startswith("-"):
        return None
    end = start
    while end < len(given) and "=" not in given[end] and not given[end].startswith("-"):
        end += 1
    return " ".join(given[start - 1:end])


def is_out_of_memory(e: RuntimeError) -> bool:
    message = str(e)
    return "can't allocate memory" in message or "out of memory" in message.lower()


def write_hydra_record(output_dir: Path, task_cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """The .hydra/ record Hydra itself writes (config.yaml, hydra.yaml, overrides.yaml), written by
    train.py only once the run has been accepted (conf/train.yaml sets hydra.output_subdir=null)."""
    record = output_dir / ".hydra"
    record.mkdir()  # in the new run's empty directory: never into one that is there already
    write_text_atomic(record / "config.yaml", OmegaConf.to_yaml(task_cfg))
    write_text_atomic(record / "hydra.yaml", OmegaConf.to_yaml({"hydra": hydra_cfg}))
    write_text_atomic(record / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))


def run_started(run_dir: Path, task_cfg: DictConfig, hydra_cfg: DictConfig, output_dir: Path) -> None:
    """Once a run is accepted (train.py, charrnn.train): Hydra's record of a new run (a run continued in its
    own directory keeps the record of its start), and runs/latest."""
    from charrnn.training.rundir import link_latest

    if run_dir == output_dir:
        write_hydra_record(output_dir, task_cfg, hydra_cfg)
    link_latest(run_dir)
