"""Ctrl-C and SIGTERM as a request to stop between two training steps, where the state is whole and
can be checkpointed; stopping inside an optimizer update would leave half-updated weights."""

import signal
import sys
import threading


def quiet_keyboard_interrupt() -> None:
    """A Ctrl-C that nothing else handles (during imports, while sampling) ends in one line, not a
    traceback. Python still ends the process as killed by SIGINT, as a shell expects."""
    report = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        else:
            report(kind, value, traceback)

    sys.excepthook = hook


class StopRequest:
    """While entered, SIGINT and SIGTERM only set `signal`, for the training loop to see after its step.
    A second signal raises KeyboardInterrupt at once, for a user who will not wait, unless repeat_raises
    is False: under torchrun, Ctrl-C reaches each worker twice (from the terminal, then forwarded by
    torchrun), and torchrun itself kills workers that have not finished within its grace period."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, repeat_raises: bool = True):
        self.signal: int | None = None
        self.repeat_raises = repeat_raises
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        # Python lets only the main thread set handlers; elsewhere signals keep their usual effect.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            if self.repeat_raises:
                raise KeyboardInterrupt
            return
        self.signal = signum
