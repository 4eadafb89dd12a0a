"""A run directory has one owner at a time: a lock held for the whole run, fresh or resumed, so two
trainings never interleave their checkpoints, config and event files in one directory."""

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from charrnn.errors import UserError

LOCK_NAME = ".lock"  # holds the owner's process id, for the message a second run gets


def unwritable(run_dir: Path, e: OSError) -> UserError:
    return UserError(f"cannot write to the run directory {run_dir}: {e.strerror}; nothing in it was changed; "
                     f"name a writable one with hydra.run.dir=PATH")


@contextmanager
def claim(run_dir: Path) -> Iterator[None]:
    """Hold run_dir (created if absent) for the duration, or raise UserError if another process holds
    it or it cannot be written. The lock is the kernel's (flock), so a run killed by any means releases
    it; the file stays, empty of meaning until the next owner locks it, unless the run wrote nothing
    else: then the directory is removed with it (a run refused at its start leaves no trace)."""
    lock = run_dir / LOCK_NAME
    while True:
        fd = _open_lock(run_dir)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise unwritable(run_dir, e) from None
            raise UserError(f"{run_dir} is in use by another training (process {owner}); wait for it to end, "
                            f"or name another directory with hydra.run.dir=PATH") from None
        if _is_current(fd, lock):
            break
        os.close(fd)  # its owner left the directory empty and removed it, lock and all: make it anew
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise unwritable(run_dir, e) from None
        yield
    finally:
        with contextlib.suppress(OSError):
            if os.listdir(run_dir) == [LOCK_NAME] and not _is_cwd(run_dir):
                lock.unlink()  # still locked: whoever opened it meanwhile finds it gone (_is_current)
                discard_if_empty(run_dir)
        os.close(fd)  # releases the lock


def _open_lock(run_dir: Path) -> int:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # Existing files of a read-only directory can still be rewritten; new ones, as checkpoints are
        # written, cannot: find that out now, with a file of our own, before anything is changed.
        probe = run_dir / f".probe-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        probe.unlink()
        return os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise unwritable(run_dir, e) from None


def _is_current(fd: int, lock: Path) -> bool:
    """Whether the file locked through fd is still the one at `lock`'s path."""
    try:
        return os.stat(lock).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def check_fresh(run_dir: Path) -> None:
    """A new run must not write over an earlier run's checkpoints (hydra.run.dir naming an old run)."""
    found = sorted(p.name for p in run_dir.glob("ckpt_*.npz"))
    if found:
        raise UserError(f"{run_dir} already holds a run ({', '.join(found)}); continue it with "
                        f"train.resume={run_dir}, or start afresh in another hydra.run.dir")


def discard_if_empty(run_dir: Path) -> None:
    """Remove run_dir if nothing was written into it; a directory with anything in it stays, and so does
    the current directory (hydra.run.dir= or . names it), which was there before the run."""
    with contextlib.suppress(OSError):
        if not _is_cwd(run_dir):
            run_dir.rmdir()


def _is_cwd(path: Path) -> bool:
    return path.resolve() == Path.cwd().resolve()
