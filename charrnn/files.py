"""The one way charrnn writes a file that must never be seen half-written: checkpoints, result.json,
the encoded corpus and its description, a downloaded corpus.

The content goes to a temporary file of a unique name in the same directory (created afresh, so it
never writes through an existing file or link of that name), is flushed to disk, then renamed over
the target: a crash at any moment leaves the old file or the new one, never a torn one, and a
failure leaves the old one and no temporary file. The rename replaces a link at the target's path
rather than writing through it. The writer holds a lock (flock) on its temporary file until the rename,
so a temporary file nobody holds was left by a process that was killed (kill -9, a power cut), and
remove_leftovers clears it.
"""

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO]:
    """A file object whose content appears at path, whole and on disk, only once the block finishes
    without error ("wb" or "w")."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _is_current(fd, Path(tmp)):
            break
        os.close(fd)  # taken for a leftover and removed before it was locked: another name
    try:
        with open(fd, mode) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
            os.replace(tmp, path)
    except BaseException:  # a full disk, a directory gone or made read-only; a second Ctrl-C
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    sync_directory(path.parent)


def remove_leftovers(path: Path) -> None:
    """Remove the temporary files of path's earlier writes that no writer holds: what killed writers left."""
    pattern = "".join(f"[{c}]" if c in "*?[" else c for c in f".{path.name}.") + "*.tmp"
    for leftover in path.parent.glob(pattern):
        with contextlib.suppress(OSError):  # BlockingIOError: a live writer holds it
            fd = os.open(leftover, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _is_current(fd, leftover):
                    os.unlink(leftover)
            finally:
                os.close(fd)


def _is_current(fd: int, path: Path) -> bool:
    """Whether the file open as fd is still the one at path."""
    try:
        return os.lstat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w") as out:
        out.write(text)


def sync_directory(directory: Path) -> None:
    """Make a rename in directory durable: without it a power cut can forget the new name."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
