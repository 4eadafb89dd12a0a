"""Runs a learner's code in a process of its own (worker.py), each call under a time limit.

Why a process and not a thread or an alarm: the learner's code may loop forever inside one NumPy
call (a thread cannot be stopped, and an alarm waits for the call to return), call sys.exit or
os._exit, crash the interpreter, or change global state the check relies on (np.random.seed, torch's
default dtype, module globals). A process is killed when its time is up and takes all of that with
it. One process serves every call of a check (and, in the tests, every check), so NumPy, and torch
where the learner's file imports it, load once; a killed one is replaced at the next request.
"""

import contextlib
import queue
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

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


# Loading a file, and torch for a learner who computes with tensors, may take far longer than a call:
# torch alone takes seconds to import on a busy laptop. The learner's time limit starts after.
LOAD_LIMIT = 120.0


class Sandbox:
    def __init__(self, time_limit: float = 30.0):
        self.time_limit = time_limit
        self.proc: subprocess.Popen | None = None
        self.replies: queue.Queue = queue.Queue()
        self.log = None
        self.torch_ready = False

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log)
        self.replies = queue.Queue()
        self.torch_ready = False
        threading.Thread(target=self._read, args=(self.proc.stdout, self.replies), daemon=True).start()

    @staticmethod
    def _read(stream, replies: queue.Queue) -> None:
        while True:
            try:
                reply = worker.receive(stream)
            except (OSError, EOFError, ValueError):
                reply = None
            replies.put(reply)
            if reply is None:
                return

    def _output(self) -> str:
        """The last lines the worker printed (the learner's prints, a crash's last words)."""
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-4000:]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            with contextlib.suppress(BrokenPipeError):   # the unsent end of a request the worker never read
                self.proc.stdin.close()
            self.proc.stdout.close()
            self.log.close()
            self.proc = None

    def _clear_ended(self) -> tuple[int, str]:
        """Clear away a worker that has ended (the next request starts a new one); its exit code and last output."""
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
            reply = self.replies.get(timeout=limit)
        except BrokenPipeError:
            reply = None
        except queue.Empty:
            self.close()
            raise LearnerError(f"{what} did not finish within {limit:g} s (a loop that never ends?); "
                               f"--time-limit SECONDS gives it longer") from None
        if reply is None:
            code, output = self._clear_ended()
            raise LearnerError(f"{what} ended the Python process running it (exit code {code}); its last output "
                               f"is above", output=output)
        if reply[0] == "raised":
            raise LearnerError(f"{what} raised {reply[2]}; the traceback above is from your code", reply[1],
                               raised=reply[2])
        return reply[1:]

    def load(self, path: Path, definitions_only: bool = False) -> Loaded:
        what = f"loading {path.name}" + (" (its definitions only)" if definitions_only else "")
        key, source, functions = self.request(("load", str(path), definitions_only), what,
                                              max(LOAD_LIMIT, self.time_limit))
        return Loaded(key, source, functions)

    def _prepare(self, arrays: str) -> None:
        if arrays == "torch" and not self.torch_ready:
            self.request(("prepare",), "importing torch", max(LOAD_LIMIT, self.time_limit))
            self.torch_ready = True

    def call(self, loaded: Loaded, name: str, args: tuple, set_globals: dict, arrays: str, what: str):
        self._prepare(arrays)
        return self.request(("call", loaded.key, name, args, set_globals, arrays), what)[0]

    def pair(self, loaded: Loaded, forward: str, args: tuple, backward: str, upstream: tuple, arrays: str,
             what: str) -> tuple:
        self._prepare(arrays)
        return self.request(("pair", loaded.key, forward, args, backward, upstream, arrays), what)
