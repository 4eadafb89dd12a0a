"""The standard streams, which may be closed, full or gone: what charrnn writes to them never ends in a
traceback."""

import os


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
