"""A terminating signal (Ctrl-C, SIGTERM, a closed terminal, a scheduler's warning) as a request to stop
between two training steps, where the state is whole and can be checkpointed; stopping inside an
optimizer update would leave half-updated weights."""

import signal
import sys
import threading


_interrupted = False


def quiet_keyboard_interrupt() -> None:
    """A Ctrl-C that nothing else handles (during imports, while sampling) ends in one line, not a
    traceback. Python still ends the process as killed by SIGINT, as a shell expects. The Ctrl-C is also
    recorded (was_interrupted): a library that turns the KeyboardInterrupt into an error of its own (Hydra,
    composing the config) must not have that error reported as the user's mistake."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    report = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        else:
            report(kind, value, traceback)

    sys.excepthook = hook


def _interrupt(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    signal.default_int_handler(signum, frame)


def was_interrupted() -> bool:
    """Whether a Ctrl-C has reached this process (through quiet_keyboard_interrupt's handler)."""
    return _interrupted


def raise_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that Python dropped: one raised inside a weakref callback
    (each import runs one, on its module lock) or a __del__ is printed as ignored, and the work goes on."""
    if _interrupted:
        raise KeyboardInterrupt


class Stopped(BaseException):
    """A terminating signal before training began: there is nothing to save yet, so the work stops at once
    (a temporary file being written is removed on the way out)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """While entered, every terminating signal a user or a scheduler sends (SIGNALS) is a request to stop:
    while `immediate` (before training begins) it raises Stopped at once; otherwise it only sets
    `signal`, for the loop to see after its step (or inside an evaluation, which it abandons). A second
    signal raises KeyboardInterrupt at once, for a user who will not wait, unless repeat_raises is False:
    under torchrun, Ctrl-C reaches each worker twice (from the terminal, then forwarded by torchrun), and
    torchrun itself kills workers that have not finished within its grace period. A signal ignored when
    the process started (nohup's SIGHUP, a background job's SIGINT) stays ignored."""

    # A closed terminal (HUP), Ctrl-C and Ctrl-\ (INT, QUIT), kill and every scheduler's warning or limit:
    # SLURM's --signal and time limit, SGE's s_rt and s_cpu (USR1, USR2, XCPU), LSF, PBS and HTCondor (TERM).
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
               signal.SIGXCPU)

    def __init__(self, repeat_raises: bool = True, immediate: bool = False):
        self.signal: int | None = None
        self.repeat_raises = repeat_raises
        self.immediate = immediate
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        if _interrupted:  # a Ctrl-C before, whose KeyboardInterrupt Python dropped (see raise_if_interrupted)
            if self.immediate:
                raise Stopped(signal.SIGINT)
            self.signal = signal.SIGINT
        # Python lets only the main thread set handlers; elsewhere signals keep their usual effect.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS
                              if signal.getsignal(s) is not signal.SIG_IGN}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def stopping(self) -> bool:
        return self.signal is not None

    def begin_training(self) -> None:
        """From here on a signal asks the loop to stop after its step. A signal that came before and whose
        Stopped Python dropped (raised inside a weakref callback, which every import runs on its module lock,
        or a __del__) stops the run now."""
        self.immediate = False
        if self.signal is not None:
            raise Stopped(self.signal)

    def _handle(self, signum, frame) -> None:
        if self.immediate:
            self.signal = self.signal or signum
            raise Stopped(signum)
        if self.signal is not None:
            if self.repeat_raises:
                raise KeyboardInterrupt
            return
        self.signal = signum
