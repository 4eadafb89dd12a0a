"""What train.py and sample.py share: a mistake the user can fix ends in one line on stderr and exit
code 2; anything else, a bug, keeps its traceback."""

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from charrnn.config import unknown_key_message
from charrnn.errors import UserError


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class Entry:
    """Runs a @hydra.main function. Hydra finds some mistakes before it calls the task function (an
    unknown key or option, an override it cannot parse, a run directory it cannot create) and reports
    them in several lines with exit code 1; run() makes them one line and exit code 2. They are told
    from the task's own errors by whether the task had started, which task() records."""

    def __init__(self):
        self.started = False

    @contextmanager
    def task(self) -> Iterator[None]:
        self.started = True
        try:
            yield
        except UserError as e:
            fail(str(e))

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
        return (f"cannot parse the override {e.override!r} ({e.message.splitlines()[0]}); "
                f"see https://hydra.cc/docs/advanced/override_grammar/basic/")
    if isinstance(e, HydraException):
        return " ".join(str(e).split("Config search path:")[0].split())
    if isinstance(e, OSError):
        return (f"cannot create {e.filename}: {e.strerror}; name a writable run directory with "
                f"hydra.run.dir=PATH (hydra.sweep.dir=PATH with -m)")
    return None
