"""Run directories: their names, and who owns one.

Names a person can read and two runs never share (conf/train.yaml's hydra.run.dir):

    runs/optim=sgd,optim.lr=1.0/2026-11-24_05-00-00     the overrides given on the command line
    runs/baseline/2026-11-24_05-00-00                    name=baseline
    runs/default/2026-11-24_05-00-00-2                   none: the second default run of that second
    runs/multirun/2026-11-24_05-00-00/1_optim=adam       -m: the job's number and the swept values

TensorBoard names each run by its path under --logdir, so its run list reads the same.

A run directory has one owner at a time: a lock held for the whole run, fresh or resumed, so two
trainings never interleave their checkpoints, config and event files in one directory.
"""

import contextlib
import errno
import fcntl
import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

from charrnn.distributed import is_main_process
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


MAX_LABEL = 100           # characters of the overrides kept in a name; a file name may have 255 bytes
UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")
_claimed: dict[str, str] = {}


def run_label(name: str | None, overrides) -> str:
    """`name` if given, else the command line's overrides (Hydra's list) with a path shortened to its
    last part (data.path=input.txt), else "default"; made safe as one directory name."""
    if name:
        return _safe(str(name))
    kept = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "name":
            continue
        kept.append(f"{key}={value.rstrip('/').rsplit('/', 1)[-1]}" if "/" in value else override)
    return _safe(",".join(kept)) or "default"


def sweep_label(name: str | None, overrides, sweep_dir: str) -> str:
    """A -m job's label: only the overrides that the sweep varies (the others are the same in every job,
    and multirun.yaml in the sweep directory records them)."""
    swept = _swept_keys(sweep_dir)
    return run_label(name, [o for o in overrides if o.partition("=")[0].lstrip("+~") in swept] or overrides)


@functools.cache
def _swept_keys(sweep_dir: str) -> frozenset[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        given = OmegaConf.load(Path(sweep_dir) / "multirun.yaml").hydra.overrides.task
    except OSError:
        return frozenset()
    return frozenset(o.key_or_group for o in OverridesParser.create().parse_overrides(list(given))
                     if o.is_sweep_override())


def _safe(text: str) -> str:
    """text as a directory name: unsafe characters replaced, at most MAX_LABEL characters, cut after the
    last override that fits whole (the run's .hydra/overrides.yaml keeps them all)."""
    text = UNSAFE.sub("_", text).strip("._")
    if len(text) > MAX_LABEL:
        cut = text.rfind(",", 0, MAX_LABEL + 1)
        text = text[:cut] if cut > 0 else text[:MAX_LABEL]
    return text.strip("._,") or "default"


def unique_dir(path: str) -> str:
    """`path`, or `path-2`, `path-3`, ... whichever this process creates first: two runs started in the
    same second with the same name get two directories. The same path asked twice in one process (Hydra
    reads a -m sweep's directory once per job) gets the same answer."""
    if path in _claimed:
        return _claimed[path]
    if not is_main_process():
        # Under torchrun only rank 0 writes: the other ranks claim nothing, so they add no "-2" directories.
        return path
    candidate, n = path, 1
    while True:
        try:
            Path(candidate).parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(candidate)
            break
        except FileExistsError:
            n += 1
            candidate = f"{path}-{n}"
        except OSError:
            break  # Hydra's own attempt to create it reports the problem
    _claimed[path] = candidate
    return candidate


def register_resolvers() -> None:
    """Make ${run_label:...}, ${sweep_label:...} and ${unique_dir:...} available to the config (before Hydra composes it)."""
    OmegaConf.register_new_resolver("run_label", run_label, replace=True)
    OmegaConf.register_new_resolver("sweep_label", sweep_label, replace=True)
    OmegaConf.register_new_resolver("unique_dir", unique_dir, replace=True)
