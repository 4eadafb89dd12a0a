"""Write the explorer's page for a checkpoint: python -m charrnn.explore checkpoint=PATH [text=FILE] [length=N]."""

from charrnn.signals import quiet_keyboard_interrupt

quiet_keyboard_interrupt()  # first: a Ctrl-C during the imports below ends in one line too

import codecs  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from charrnn.api import Model, load  # noqa: E402
from charrnn.cli import Command  # noqa: E402
from charrnn.config import ExploreConfig, to_explore_config  # noqa: E402
from charrnn.errors import UserError  # noqa: E402
from charrnn.sampling import known_text  # noqa: E402

command = Command(out_of_memory="out of memory: lower length= or lookback_positions=",
                  cannot_write="free some space, or name another page with out=PATH")


def explore(cfg: ExploreConfig) -> Path:
    model = load(cfg.checkpoint)
    if cfg.text is None:
        ids = model.validation_ids(cfg.length)
        about = f"text: the first {len(ids):,} characters of the validation split"
        name = "explore.html"
    else:
        ids = model.encode(read_text(Path(cfg.text), cfg.length, model, cfg.skip_unknown))
        about = f"text: the first {len(ids):,} characters of {cfg.text}"
        name = f"explore_{Path(cfg.text).stem}.html"
    path = Path(cfg.out) if cfg.out else model.path.parent / name
    return model.explore_ids(ids, path, about, cfg.lookback_positions, cfg.lookback_lags, cfg.select,
                             cfg.show)


def read_text(path: Path, length: int, model: Model, skip_unknown: bool) -> str:
    """The file's first `length` characters (reading at most the 4 bytes a UTF-8 character can take for each)."""
    path = path.expanduser()
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


@hydra.main(version_base="1.3", config_path="../../conf", config_name="explore")
def main(raw: DictConfig) -> None:
    with command.task():
        started = time.perf_counter()
        path = explore(to_explore_config(raw))
        print(path)
        print(f"{path.stat().st_size / 1e6:.1f} MB, built in {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    command.run(main)
