"""Where the explorer's page goes, and whether it may be built at all.

The page is the explorer's own file: it replaces an earlier page at its path, never anything else. A file
there that is not an explorer page (the user's notes named explore.html, a link) is left alone: at the
default path the page goes beside it under a free name, and the command says so; at a path the user
named (out=, Model.explore's path) it is refused. The write itself goes through files.atomic_write.

Before anything is traced, the memory the page will take is estimated from the model's shape, the text's
length and the look-back's size, and a page that cannot fit in the memory available is refused in one
line naming what to lower.
"""

import os
import tempfile
from pathlib import Path

from charrnn.cells import CELLS
from charrnn.errors import UserError
from charrnn.files import atomic_write, remove_leftovers
from charrnn.model import ModelSpec

GENERATOR = "charrnn explorer"            # page.html's <meta name="generator">: how a page is known as one
HEAD_BYTES = 2048                         # the marker is within the page's first lines


def is_page(path: Path) -> bool:
    """Whether path is a regular file (not a link) that an explorer wrote."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open("rb") as file:
            head = file.read(HEAD_BYTES)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}">'.encode() in head or b"<title>charrnn explorer:" in head


def named_path(path: Path, option: str) -> Path:
    """A path the user named for the page, or a UserError saying why it cannot be one."""
    path = path.expanduser()
    if path.is_dir():
        raise UserError(f"{option}{path} is a directory; name the page's file, e.g. {option}{path / 'explore.html'}")
    if (path.exists() or path.is_symlink()) and not is_page(path):
        what = "a link" if path.is_symlink() else "a file that is not an explorer page"
        raise UserError(f"{option}{path} is {what}, which the explorer never replaces; name another path, "
                        f"or move that file away first")
    return path


def default_path(path: Path) -> Path:
    """The default path, or the first name beside it (explore-1.html, ...) that is free or an explorer page
    when a file the explorer did not write is there."""
    if not (path.exists() or path.is_symlink()) or is_page(path):
        return path
    for n in range(1, 1000):
        beside = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not (beside.exists() or beside.is_symlink()) or is_page(beside):
            return beside
    raise UserError(f"{path} and 999 names beside it are taken by files that are not explorer pages; name the "
                    f"page with out=PATH")


def writable(path: Path) -> Path:
    """path, once a file can be made in its folder (made if missing): a page that cannot be written is
    refused before it is built."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise UserError(f"cannot write the page to {path}: {e.strerror}; name another path with out=PATH") from None
    return path


def write_page(path: Path, html: str) -> None:
    """The page at path, whole or not at all; one line if it cannot be written there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)   # what a build killed by SIGKILL left
        with atomic_write(path, "w") as out:
            out.write(html)
    except OSError as e:
        raise UserError(f"cannot write the page to {path}: {e.strerror}; name another path with out=PATH") from None


def page_bytes(spec: ModelSpec, dtype_bytes: int, length: int, positions: int, lags: int) -> int:
    """About how much memory building the page of `length` symbols takes at its peak.

    Per symbol: every quantity of every layer, traced twice (the model and its untrained baseline) and
    copied once when the chunks are joined; the ranking's float64 copies of one layer (the model's and
    the untrained network's values, their residuals beyond the current symbol, a sorted and a centred copy); the page's letters, held three times (the blocks, the HTML, its encoding); the
    logits and the JSON of ids, losses and guesses. The look-back: its (positions, lags) sizes as floats, a
    Python list and JSON, and one batch's one-hot input and caches.
    """
    Q, L, H, V = len(CELLS[spec.cell].quantities), spec.num_layers, spec.hidden_size, spec.vocab_size
    per_symbol = L * Q * H * (4 * dtype_bytes + 3) + 6 * 8 * Q * H + 2 * V * dtype_bytes + 400
    window = min(lags, length)
    lookback = positions * lags * 60 + window * 64 * (V + 6 * L * H) * 4 * 2
    return length * per_symbol + lookback


def available_bytes() -> int:
    """Memory available now (Linux's MemAvailable), else the machine's physical memory."""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_size(spec: ModelSpec, dtype_bytes: int, length: int, positions: int, lags: int) -> None:
    """A UserError if the page cannot fit in memory, before anything of it is built."""
    if lags > max(1, length - 1):
        raise UserError(f"lookback_lags={lags:,} reaches before the text's start ({length:,} characters); "
                        f"pass lookback_lags={max(1, length - 1):,} or less")
    need, have = page_bytes(spec, dtype_bytes, length, positions, lags), available_bytes()
    if need > have:
        raise UserError(f"the page of {length:,} characters (look-back {positions:,} x {lags:,}) needs about "
                        f"{need / 1e9:.1f} GB and {have / 1e9:.1f} GB is available; lower length= (or "
                        f"lookback_positions=, lookback_lags=)")
