"""Write the explorer's page for a checkpoint: python -m charrnn.explore checkpoint=PATH [text=FILE] [length=N]."""

import os
import signal
import sys

from charrnn.signals import Stopped, StopRequest, quiet_keyboard_interrupt

# First: a Ctrl-C, SIGTERM or SIGHUP from here on, the imports below included, ends in one line and the
# exit code 128 + n; a page being written is removed on the way out (files.atomic_write).
quiet_keyboard_interrupt()
STOPS = StopRequest(immediate=True).__enter__()


def stopped(signum: int) -> None:
    print("interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}", file=sys.stderr)
    sys.stderr.flush()
    os._exit(128 + signum)


def _stopped_during_imports(report):
    def hook(kind, value, traceback):
        if issubclass(kind, Stopped):
            stopped(value.signum)
        report(kind, value, traceback)
    return hook


def _dropped_quietly(report):
    """A Stopped or KeyboardInterrupt that Python drops (raised inside an import's weakref callback or a
    __del__) is not printed as ignored: STOPS recorded the signal, and the script acts on it."""
    def hook(unraisable):
        if not isinstance(unraisable.exc_value, (Stopped, KeyboardInterrupt)):
            report(unraisable)
    return hook


sys.excepthook = _stopped_during_imports(sys.excepthook)
sys.unraisablehook = _dropped_quietly(sys.unraisablehook)

import codecs  # noqa: E402
import re  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from charrnn.api import MAX_DEFAULT_LAGS, Model, load  # noqa: E402
from charrnn.cli import Command  # noqa: E402
from charrnn.config import CONF_DIR, ExploreConfig, to_explore_config  # noqa: E402
from charrnn.errors import UserError  # noqa: E402
from charrnn.explore.output import check_size, default_path, named_path, writable  # noqa: E402
from charrnn.sampling import known_text  # noqa: E402

if STOPS.signal is not None:  # one whose Stopped Python dropped (raised inside an import's weakref callback)
    stopped(STOPS.signal)

command = Command(out_of_memory="out of memory: lower length= or lookback_positions=",
                  cannot_write="free some space, or name another page with out=PATH", schema=ExploreConfig)


def explore(cfg: ExploreConfig) -> Path:
    model = load(cfg.checkpoint)
    if cfg.text is None:
        ids = model.validation_ids(cfg.length)
        about = f"text: the first {len(ids):,} characters of the validation split"
        name = "explore.html"
    else:
        text_path = Path(cfg.text).expanduser()
        check_text_size(model, text_path, cfg)
        ids = model.encode(read_text(text_path, cfg.length, model, cfg.skip_unknown))
        about = f"text: the first {len(ids):,} characters of {cfg.text}"
        name = f"explore_{text_path.stem}.html"
    asked = model.path.parent / name
    path = writable(named_path(Path(cfg.out), "out=") if cfg.out else default_path(asked))
    if STOPS.signal is not None:  # one whose Stopped Python dropped on the way here
        raise Stopped(STOPS.signal)
    model.explore_ids(ids, path, about, cfg.lookback_positions, cfg.lookback_lags, cfg.select, cfg.show)
    if path != asked and not cfg.out:
        print(f"{asked} is not an explorer page; left it alone and wrote the page beside it", file=sys.stderr)
    return path


def check_text_size(model: Model, path: Path, cfg: ExploreConfig) -> None:
    """The memory bound, before the text is read: it has at most one character per byte."""
    if path.is_file():
        length = max(2, min(cfg.length, path.stat().st_size))
        lags = cfg.lookback_lags or min(2 * model.config.train.seq_length, MAX_DEFAULT_LAGS, length - 1)
        check_size(model.loaded.spec, np.dtype(model.config.model.dtype).itemsize, length,
                   min(cfg.lookback_positions, length - 1), min(lags, length - 1))


def read_text(path: Path, length: int, model: Model, skip_unknown: bool) -> str:
    """The file's first `length` characters (reading at most the 4 bytes a UTF-8 character can take for each)."""
    if not path.is_file():
        raise UserError(f"text file {path} does not exist or is not a regular file; pass text=/path/to/file.txt")
    try:
        with path.open("rb") as file:
            text = codecs.getincrementaldecoder("utf-8")().decode(file.read(4 * length))[:length]
    except UnicodeDecodeError as e:
        raise UserError(f"text file {path} is not UTF-8 (byte {e.start}); pass a UTF-8 text file") from None
    except OSError as e:
        raise UserError(f"cannot read text file {path}: {e.strerror}; pass a readable file") from None
    return known_text(text, model.loaded.vocab, skip_unknown, what="text")


def usage() -> str:
    """explore's own options, read from conf/explore.yaml's keys and their comments."""
    lines = ["usage: python -m charrnn.explore checkpoint=PATH [key=value ...]", "",
             "Writes one self-contained HTML page that shows what each unit of a trained model does over a text",
             "(docs/explore.md). Its keys (conf/explore.yaml):", ""]
    keys: list[list[str]] = []
    for line in (CONF_DIR / "explore.yaml").read_text(encoding="utf-8").splitlines():
        if line.startswith(("hydra:", "# The page is")):
            break
        key = re.fullmatch(r"(\w+): (\S+)\s+# (.*)", line)
        if key:
            keys.append([f"{key[1]}={'PATH' if key[2] == '???' else key[2]}", key[3]])
        elif keys and re.fullmatch(r"\s+# .*", line):
            keys[-1][1] += " " + line.strip()[2:]
    width = max(len(k) for k, _ in keys) + 2
    lines += [textwrap.fill(about, 110, initial_indent=f"  {k:<{width}}", subsequent_indent=" " * (width + 2))
              for k, about in keys]
    lines += ["", "Hydra's own flags: python -m charrnn.explore --hydra-help"]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="explore")
def main(raw: DictConfig) -> None:
    with command.task():
        started = time.perf_counter()
        path = explore(to_explore_config(raw))
        print(path)
        print(f"{path.stat().st_size / 1e6:.1f} MB, built in {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:2] in (["--help"], ["-h"]):
        print(usage())
        sys.exit(0)
    try:
        command.run(main)
    except Stopped as e:
        stopped(e.signum)
