"""What train.py and sample.py share: a mistake the user can fix ends in one line on stderr and exit
code 2; anything else, a bug, keeps its traceback."""

import errno
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from charrnn.config import unknown_key_message
from charrnn.errors import UserError

# What a machine, not a bug, makes a write fail with: a full disk or quota, a read-only or failing one.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class Command:
    """Runs a @hydra.main function. Hydra finds some mistakes before it calls the task function (an
    unknown key or option, an override it cannot parse, a run directory it cannot create) and reports
    them in several lines with exit code 1; run() makes them one line and exit code 2. They are told
    from the task's own errors by whether the task had started, which task() records. Inside the task,
    running out of memory or disk is one line too; `out_of_memory` and `cannot_write` say what to do."""

    def __init__(self, out_of_memory: str = "out of memory",
                 cannot_write: str = "free some space, or write elsewhere"):
        self.started = False
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
        except Exception as e:
            message = None if self.started else startup_error(e)
            if message is None:
                raise
            fail(message)
        finally:
            del os.environ["HYDRA_FULL_ERROR"]


def startup_error(e: Exception) -> str | None:
    """One line for what Hydra raises before the task starts, or None for what is not the user's doing."""
    if isinstance(e, MissingConfigException) and e.options:
        group, _, option = e.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not an option; choose {group}= one of {', '.join(e.options)}"
    if isinstance(e.__cause__, (ConfigKeyError, ConfigAttributeError)) and e.__cause__.full_key:
        return unknown_key_message(e.__cause__.full_key)
    if isinstance(e, OverrideParseException):
        key, _, value = e.override.partition("=")
        if "=" in value:
            # charrnn's own run directories are named by their overrides, so a path to one holds '='
            return (f"cannot parse the override {e.override!r}: a value holding '=' must be quoted, as in "
                    f"{override(key, value)}")
        return (f"cannot parse the override {e.override!r} ({e.message.splitlines()[0]}); "
                f"see https://hydra.cc/docs/advanced/override_grammar/basic/")
    if isinstance(e, HydraException):
        return " ".join(str(e).split("Config search path:")[0].split())
    if isinstance(e, OSError):
        return (f"cannot create {e.filename or 'the run directory'}: {e.strerror}; name a writable run directory with "
                f"hydra.run.dir=PATH (hydra.sweep.dir=PATH with -m)")
    return None


def is_out_of_memory(e: RuntimeError) -> bool:
    message = str(e)
    return "can't allocate memory" in message or "out of memory" in message.lower()


def write_hydra_record(output_dir: Path, task_cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """The .hydra/ record Hydra itself writes (config.yaml, hydra.yaml, overrides.yaml), written by
    train.py only once the run has been accepted (conf/train.yaml sets hydra.output_subdir=null)."""
    record = output_dir / ".hydra"
    record.mkdir(parents=True, exist_ok=True)
    (record / "config.yaml").write_text(OmegaConf.to_yaml(task_cfg))
    (record / "hydra.yaml").write_text(OmegaConf.to_yaml({"hydra": hydra_cfg}))
    (record / "overrides.yaml").write_text(OmegaConf.to_yaml(hydra_cfg.overrides.task))


def override(key: str, value) -> str:
    """key=value as one command-line word that a shell and then Hydra's override grammar both read back
    as value, whatever characters it holds (spaces, quotes, $, brackets, =)."""
    text = str(value)
    if not re.fullmatch(r"[\w/.~+@%:-]+", text):
        # Hydra's quoted string: a backslash needs escaping only before a quote or at the end; ${ interpolates
        text = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', text)
        text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text).replace("${", "\\${")
        text = f'"{text}"'
    return shlex.quote(f"{key}={text}")
