"""Runs a learner's code in a process of its own (worker.py), in a room of its own, each call under a time limit.

Why a process and not a thread or an alarm: the learner's code may loop forever inside one NumPy
call (a thread cannot be stopped, and an alarm waits for the call to return), call sys.exit or
os._exit, crash the interpreter, or change global state the check relies on (np.random.seed, torch's
default dtype, module globals). A process is killed when its time is up and takes all of that with
it. One process serves every call of a check (and, in the tests, every check), so NumPy, and torch
where the learner's file imports it, load once; a killed one is replaced at the next request.

The room, so that their code does not reach the user's files by accident (it is no security sandbox:
code that means harm can still reach anything the user can; docs/model.md says what is and is not kept in):
- its working directory and $HOME are a temporary directory, removed with everything in it when the
  check ends; their own folder is on the import path, so their imports work;
- it is a process group of its own, killed whole when the check ends, however it ends: with the
  subprocesses and forks their code started. A guardian in the group kills it when this process
  dies (even by kill -9, see worker.stay_in_the_room);
- what it sends back is data only (JSON and arrays, worker.receive), never pickle, which would run code;
- its data is capped at MEMORY_LIMIT, its stdin is empty, and its output is kept aside.
"""

import ast
import contextlib
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from charrnn.errors import UserError
from charrnn.gradcheck.tutor import worker

WORKER = Path(worker.__file__)


class LearnerError(Exception):
    """The learner's code could not be checked. message: one line saying what to do; traceback: the
    learner's own (shown above the message), or None; output: what their code printed, if it matters;
    raised: the exception's own line when their code raised one."""

    def __init__(self, message: str, traceback: str | None = None, output: str = "", raised: str | None = None):
        super().__init__(message)
        self.message, self.traceback, self.output, self.raised = message, traceback, output, raised


@dataclass
class Loaded:
    key: str                # the module's name in the worker
    source: str             # the file's text
    functions: list[dict]   # {"name", "params", "required", "line"} of each function the file defines


# Starting the worker (Python and NumPy) and importing torch may take far longer than a call: seconds on a busy
# laptop. They are the tool's cost, not the learner's, so they have their own limit, and torch is imported before
# their file loads (under their time limit).
IMPORT_LIMIT = 120.0
# The largest --time-limit: a day. Beyond it a limit protects nothing, and the clocks' waits overflow.
MAX_TIME_LIMIT = 86400
# The check's problems are a few kilobytes and the worker with torch loaded maps about 250 MB of data;
# an array of gigabytes is a shape computed wrong. 4 GiB, or half the machine's memory where that is less.
MEMORY_LIMIT = min(4 << 30, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2)
# How often a wait for an answer looks whether the worker is still alive: a fork of it that lives on holds
# the answers' pipe open, so the pipe's end never comes.
ALIVE_CHECK = 0.2

_open: set = set()   # the Sandboxes with a worker, for kill_all


def checked_time_limit(seconds) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_TIME_LIMIT:
        raise UserError(f"time_limit must be a number of seconds above 0 and at most {MAX_TIME_LIMIT} (a day); "
                        f"got {seconds!r}")
    return float(seconds)


def kill_all() -> None:
    """End every worker's process group and remove every room, for a signal handler about to end the process.
    Only system calls: the handler may have interrupted anything, a Popen.wait holding its lock included."""
    for box in list(_open):
        if box.proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(box.proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(box.proc.pid, 0)
        if box.room is not None:
            remove(box.room)


class TimedOut(Exception):
    pass


class Sandbox:
    def __init__(self, time_limit: float = 30.0):
        self.time_limit = checked_time_limit(time_limit)
        self.changed: list[str] = []       # what the last call changed in place of what it was handed
        self.proc: subprocess.Popen | None = None
        self.room: Path | None = None
        self.lifeline: int | None = None
        self.log = None
        self.torch_ready = False

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        _open.add(self)   # first: a signal from here on finds what there is to clear away
        self.room = Path(tempfile.mkdtemp(prefix="charrnn-tutor-"))
        for name in ("work", "home", "tmp"):
            (self.room / name).mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}   # the XDG folders follow HOME
        # PYTHONUSERBASE keeps the user's own site-packages (NumPy may be installed there) where a new HOME
        # would move it; their folder gets no __pycache__ from the modules their file imports.
        env.update(HOME=str(self.room / "home"), TMPDIR=str(self.room / "tmp"), PYTHONUSERBASE=site.getuserbase(),
                   PYTHONDONTWRITEBYTECODE="1")
        self.log = tempfile.TemporaryFile()
        reading_end, self.lifeline = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), str(os.getpid()), str(reading_end), str(MEMORY_LIMIT)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, cwd=self.room / "work", env=env,
                start_new_session=True, pass_fds=(reading_end,))
        except BaseException:
            self.close()
            raise
        finally:
            os.close(reading_end)
        self.torch_ready = False
        # Python and NumPy starting is the tool's cost, not the learner's: on a busy machine it takes seconds.
        try:
            ready = worker.receive(self._reader(time.monotonic() + IMPORT_LIMIT))
        except TimedOut:
            self.close()
            raise LearnerError(f"the Python process for your code did not start within {IMPORT_LIMIT:g} s (is the "
                               f"machine very busy?)") from None
        except (ValueError, TypeError, RecursionError):
            ready = None
        if ready != ("ready",):
            code, output = self._clear_ended()
            raise LearnerError(f"the Python process for your code did not start (exit code {code}); its last output "
                               f"is above", output=output)

    def _reader(self, deadline: float):
        """read(n) for worker.receive: n bytes of the answer, or None where the worker ended first;
        TimedOut past the deadline. Read in this thread, so that a Ctrl-C waits for nothing."""
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)

        def read(n: int) -> bytearray | None:
            data = bytearray(n)
            view, got = memoryview(data), 0
            while got < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimedOut
                if not poller.poll(1000 * min(left, ALIVE_CHECK)):
                    if self.proc.poll() is not None:
                        return None
                    continue
                count = os.readv(fd, [view[got:]])
                if count == 0:
                    return None
                got += count
            return data

        return read

    def _output(self) -> str:
        """The last lines the worker printed (the learner's prints, a crash's last words)."""
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-4000:]

    def close(self) -> None:
        """End the worker and everything it started (its process group), and remove its room."""
        _open.discard(self)
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()
            with contextlib.suppress(BrokenPipeError):   # the unsent end of a request the worker never read
                self.proc.stdin.close()
            self.proc.stdout.close()
        if self.lifeline is not None:
            os.close(self.lifeline)
        if self.log is not None:
            self.log.close()
        if self.room is not None:
            remove(self.room)
        self.proc = self.lifeline = self.log = self.room = None

    def _clear_ended(self) -> tuple[int, str]:
        """Clear away a worker that has ended (the next request starts a new one); its exit code and last output."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)   # what it started, and itself if only its answers' pipe ended
        code = self.proc.wait()
        output = self._output()
        self.close()
        return code, output

    def request(self, message: tuple, what: str, limit: float | None = None) -> tuple:
        """Send one request and wait for its answer; `what` names the learner's code in messages."""
        if self.proc is None:
            self._start()
        elif self.proc.poll() is not None:
            code, output = self._clear_ended()
            raise LearnerError(f"the Python process running your code ended (exit code {code}) before {what}: "
                               f"something your code left running (a thread, a timer) ended it, or it was killed "
                               f"(out of memory?); its last output is above", output=output)
        limit = limit or self.time_limit
        try:
            worker.send(self.proc.stdin, message)
            reply = worker.receive(self._reader(time.monotonic() + limit))
        except BrokenPipeError:
            reply = None
        except TimedOut:
            self.close()
            raise LearnerError(f"{what} did not finish within {limit:g} s (a loop that never ends?); "
                               f"--time-limit SECONDS gives it longer") from None
        except (ValueError, TypeError, RecursionError) as error:
            self.close()
            raise LearnerError(f"{what}: the process running your code sent something that is not an answer "
                               f"({error}); it was ended") from None
        if reply is None:
            code, output = self._clear_ended()
            raise LearnerError(f"{what} ended the Python process running it (exit code {code}); its last output "
                               f"is above", output=output)
        if not isinstance(reply, tuple) or not reply or reply[0] not in ("ok", "loaded", "raised", "failed"):
            self.close()
            raise LearnerError(f"{what}: the process running your code sent something that is not an answer; "
                               f"it was ended")
        if reply[0] == "raised":
            raise raised(what, *reply[1:3])
        if reply[0] == "failed":
            raise LearnerError(f"{what} gave the check something it cannot take ({reply[1]})")
        return reply[1:]

    def load(self, path: Path, definitions_only: bool = False) -> Loaded:
        what = f"loading {Path(path).name}" + (" (its definitions only)" if definitions_only else "")
        if imports_torch(path):
            self._prepare("torch")
        key, source, functions = self.request(("load", os.path.abspath(path), definitions_only), what)
        return Loaded(key, source, functions)

    def _prepare(self, arrays: str) -> None:
        if arrays == "torch" and not self.torch_ready:
            self.request(("prepare",), "importing torch", max(IMPORT_LIMIT, self.time_limit))
            self.torch_ready = True

    def call(self, loaded: Loaded, name: str, args: tuple, set_globals: dict, arrays: str, what: str):
        """What the function returned; self.changed: the paths of what it was handed that it changed in place."""
        self._prepare(arrays)
        result, self.changed = self.request(("call", loaded.key, name, args, set_globals, arrays), what)
        return result

    def pair(self, loaded: Loaded, forward: str, args: tuple, backward: str, upstream: tuple, arrays: str,
             what: str) -> tuple:
        """The forward's outputs and the backward's gradients; self.changed as for call."""
        self._prepare(arrays)
        outputs, grads, self.changed = self.request(("pair", loaded.key, forward, args, backward, upstream, arrays),
                                                    what)
        return outputs, grads


def raised(what: str, traceback: str, line: str) -> LearnerError:
    """The LearnerError for an exception the learner's code raised, said for what it usually means."""
    kind, _, detail = line.partition(": ")
    if kind.endswith("MemoryError") or "can't allocate memory" in line:
        return LearnerError(f"{what} ran out of memory ({detail[:200]}): the check's problems are a few kilobytes "
                            f"and your code may use {MEMORY_LIMIT / 2**30:g} GiB, so a shape is likely computed "
                            f"wrong; the traceback above shows where", traceback)
    if line == "EOFError: EOF when reading a line":
        return LearnerError(f"{what} called input(), which has nothing to read: the check runs your code with no "
                            f"keyboard; give the value as an argument or a constant", traceback)
    if line == "SyntaxError: invalid or missing encoding declaration":
        return LearnerError(f"{what}: the file is not UTF-8 and names no other encoding; save it as UTF-8, or name "
                            f"its encoding on its first or second line as PEP 263 says (# -*- coding: latin-1 -*-)")
    return LearnerError(f"{what} raised {line}; the traceback above is from your code", traceback, raised=line)


def imports_torch(path, seen: set | None = None) -> bool:
    """Whether the file imports torch, itself or through a module of its own folder (a course's helper file):
    then torch is imported first, outside their time limit."""
    path = Path(path)
    seen = set() if seen is None else seen
    seen.add(path)
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return False
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and not node.level}
    if "torch" in names:
        return True
    beside = [path.parent / f"{name}.py" for name in names if name]
    return any(imports_torch(other, seen) for other in beside if other not in seen and other.is_file())


def remove(room: Path) -> None:
    """Remove a room with all the learner's code left in it, folders they made unreadable included (a
    link is never followed)."""
    with contextlib.suppress(OSError):
        os.chmod(room, 0o700)
    for top, folders, _ in os.walk(room):
        for folder in folders:
            path = os.path.join(top, folder)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o700)
    shutil.rmtree(room, ignore_errors=True)
