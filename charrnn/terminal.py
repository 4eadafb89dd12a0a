"""The standard streams, which may be closed, full or gone: what charrnn writes to them never ends in a
traceback."""

import io
import os
import sys


class OutputFailed(Exception):
    """A write to the stream given to Output failed (its OSError is the cause)."""


class Output:
    """A text stream whose write failures (EPIPE, ENOSPC, EIO, EBADF) raise OutputFailed, so that they
    are told apart from the failures of anything else."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        try:
            self.stream.write(text)
        except OSError as e:
            raise OutputFailed() from e

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as e:
            raise OutputFailed() from e


def silence(stream) -> None:
    """Point a failed stream's descriptor at /dev/null, so that nothing written later, Python's flush at
    exit included, fails again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


class KeepGoing:
    """A standard stream whose failure never stops training: the first write or flush that fails (a reader
    gone, a full device, a terminal closed) points its descriptor at /dev/null and is said once, in one
    line, on the other stream if that one still works; everything after goes nowhere, without error."""

    def __init__(self, stream, name: str):
        self.stream, self.name, self.failed = stream, name, False
        self.other: KeepGoing | None = None

    def write(self, text: str) -> int:
        if not self.failed:
            try:
                return self.stream.write(text)
            except OSError as e:
                self.fail(e.strerror)
        return len(text)

    def flush(self) -> None:
        if not self.failed:
            try:
                self.stream.flush()
            except OSError as e:
                self.fail(e.strerror)

    def fail(self, reason: str) -> None:
        self.failed = True
        silence(self.stream)
        if self.other is not None:
            self.other.write(f"note: {self.name} failed ({reason}); training goes on, and its run directory keeps "
                             f"its figures, samples and checkpoints\n")
            self.other.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def keep_going() -> None:
    """For training: descriptors 0, 1 and 2 open (a closed one on /dev/null, so that no file training opens
    takes its number and receives its output), and stdout and stderr wrapped in KeepGoing."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
    out = KeepGoing(sys.stdout or io.TextIOWrapper(open(1, "wb", closefd=False), write_through=True),
                    "standard output")
    err = KeepGoing(sys.stderr or io.TextIOWrapper(open(2, "wb", closefd=False), write_through=True),
                    "standard error")
    out.other, err.other = err, out
    sys.stdout, sys.stderr = out, err
    for fd, stream in ((1, out), (2, err)):
        if fd in closed:
            stream.fail("closed when training started")
