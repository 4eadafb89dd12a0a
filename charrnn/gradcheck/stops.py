"""Every stop of `python -m charrnn.gradcheck` is one line: Ctrl-C, SIGTERM or SIGHUP at any moment (its
imports, loading the learner's file, a check under way) ends the command at once, with the learner's code
and everything it started (sandbox.kill_all), and the process ends killed by that signal, as a shell
expects (exit status 128 + n). There is nothing to save: a check writes no file.

The handler ends the process itself rather than raise an exception: raised in the middle of an import, an
exception is printed as ignored by the import machinery and the command goes on."""

import os
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def end_on_signals() -> None:
    """A signal ignored when the command started (nohup's SIGHUP) stays ignored."""
    for signum in SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _end)


def _end(signum, frame) -> None:
    for other in SIGNALS:
        signal.signal(other, signal.SIG_IGN)   # a second Ctrl-C must not cut the clearing away short
    sandbox = sys.modules.get("charrnn.gradcheck.tutor.sandbox")
    if sandbox is not None:
        sandbox.kill_all()
    name = "interrupted" if signum == signal.SIGINT else signal.Signals(signum).name
    try:
        os.write(2, f"{name}: the check stopped; nothing it started is left running\n".encode())
    except OSError:
        pass   # stderr closed or gone with the terminal: the exit status still says it
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
