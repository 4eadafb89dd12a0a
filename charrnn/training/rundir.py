"""Run directories: their names, and who owns one.

Names a person can read and two runs never share (conf/train.yaml's hydra.run.dir):

    runs/optim-sgd+optim.lr-1.0/2026-11-24_05-00-00     the overrides given on the command line
    runs/baseline/2026-11-24_05-00-00                    name=baseline
    runs/default/2026-11-24_05-00-00-2                   none: the second default run of that second
    runs/multirun/2026-11-24_05-00-00/1_optim-adam       -m: the job's number and the swept values
    runs/latest                                          a link to the newest run
    runs/latest-run/2026-11-24_05-00-00                  name=latest: the link keeps its name

runs/latest is never a directory a run is made in or through: a label that would be the link's (any
case, for a filesystem that ignores it) gets "-run" added, and hydra.run.dir=runs/latest/... is refused
(it would make the run inside the newest run).

A name holds no '=' or ',' and nothing a shell reads specially, so a run's path pastes into
checkpoint= and train.resume= as it is. TensorBoard names each run by its path under --logdir.

A run directory has one owner at a time: a lock held for the whole run, fresh or resumed, so two
trainings never interleave their checkpoints, config and event files in one directory. A new run
starts only in an empty directory; what a run made and left empty is removed, and nothing else.
"""

import contextlib
import errno
import fcntl
import functools
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

from charrnn.distributed import is_main_process
from charrnn.errors import UserError

def unwritable(run_dir: Path, e: OSError) -> UserError:
    return UserError(f"cannot write to the run directory {run_dir}: {e.strerror}; nothing in it was changed; "
                     f"name a writable one with hydra.run.dir=PATH")


@contextmanager
def claim(run_dir: Path) -> Iterator[None]:
    """Hold run_dir (created if absent) for the duration, or raise UserError if another process holds
    it or it cannot be written. The lock is the kernel's (flock) on the directory itself, so no lock file
    is ever written, and a run killed by any means releases it."""
    refuse_inside_latest(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise unwritable(run_dir, e) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise unwritable(run_dir, e) from None
            raise UserError(f"{run_dir} is in use by another training (process {_lock_owner(fd)}); wait for it "
                            f"to end, or name another directory with hydra.run.dir=PATH") from None
        _probe(run_dir)
        yield
    finally:
        os.close(fd)  # releases the lock


def _probe(run_dir: Path) -> None:
    """Existing files of a read-only directory can still be rewritten; new ones, as checkpoints are written,
    cannot: find that out now, before anything is changed, with a file that has no name (O_TMPFILE) where
    the filesystem allows one, else with a name no one else uses."""
    try:
        try:
            os.close(os.open(run_dir, os.O_TMPFILE | os.O_WRONLY, 0o600))
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            fd, probe = tempfile.mkstemp(dir=run_dir, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise unwritable(run_dir, e) from None


def _lock_owner(fd: int) -> str:
    """The process that holds the flock on fd's file, from /proc/locks (Linux), else "unknown"."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode:
                return fields[4]
    return "unknown"


def check_empty(run_dir: Path) -> None:
    """A new run starts only in an empty directory (new, Hydra's, or one the user made): anything in it
    is an earlier run's or the user's, which a new run must not mix with or write over."""
    found = sorted(os.listdir(run_dir))
    if any(name.startswith("ckpt_") and name.endswith(".npz") for name in found):
        checkpoints = ", ".join(name for name in found if name.startswith("ckpt_"))
        raise UserError(f"{run_dir} already holds a run ({checkpoints}); continue it with "
                        f"train.resume={run_dir}, or start afresh in another hydra.run.dir")
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise UserError(f"{run_dir} is not empty ({shown}); a new run starts in a new or empty directory: "
                        f"name one with hydra.run.dir=PATH")


def made_by_this_process(directory: Path) -> bool:
    """Whether directory was created since this process started (by Hydra, for its run): its status last
    changed after the start. A directory the user made before is older."""
    try:
        return directory.stat().st_ctime_ns >= STARTED_NS
    except OSError:
        return False


def remove_if_made_and_empty(run_dir: Path) -> None:
    """Remove run_dir if this process made it and nothing was written into it, and then each parent that
    unique_dir made for it (runs/LABEL/) and that is empty too. Never a directory the user made, nor the
    current directory."""
    candidates = [run_dir] if made_by_this_process(run_dir) or run_dir in _created else []
    candidates += [d for d in _created if d != run_dir and run_dir.is_relative_to(d)]
    for directory in sorted(candidates, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            if not _is_cwd(directory):
                directory.rmdir()


RUNS = Path("runs")  # where conf/train.yaml puts runs, relative to where train.py is started
LATEST = "latest"    # RUNS/LATEST: the link to the newest run


def refuse_inside_latest(run_dir: Path) -> None:
    """A UserError if run_dir is runs/latest or lies under it, as written (before links are followed): the
    link's target is another run, which a new run must not be made in."""
    latest = Path(os.path.abspath(RUNS / LATEST))
    given = Path(os.path.abspath(run_dir))
    if latest.is_symlink() and (given == latest or given.is_relative_to(latest)):
        raise UserError(f"{run_dir} is inside {RUNS / LATEST}, the link to the newest run ({os.readlink(latest)}): "
                        f"a run made there would be made inside that run; name another directory with "
                        f"hydra.run.dir=PATH")


def link_latest(run_dir: Path) -> None:
    """runs/latest: a relative link to run_dir, when run_dir lies under runs/. Made under a unique
    temporary name and renamed over runs/latest, and only where runs/latest is absent or a link: a file or
    directory the user named latest stays as it is. A convenience: a failure to make it is not the run's."""
    root, run = RUNS.resolve(), run_dir.resolve()
    if not run.is_relative_to(root) or run == root:
        return
    latest = root / LATEST
    if latest.exists() and not latest.is_symlink():
        return
    temporary = root / f".latest.{os.getpid()}.{time.time_ns()}.tmp"
    with contextlib.suppress(OSError):
        os.symlink(run.relative_to(root), temporary)
        os.replace(temporary, latest)
    with contextlib.suppress(OSError):
        temporary.unlink()


def _is_cwd(path: Path) -> bool:
    return path.resolve() == Path.cwd().resolve()


MAX_LABEL = 100           # characters of the overrides kept in a name; a file name may have 255 bytes
# What a label keeps: characters that a shell and Hydra's override grammar read as they are, so a run's
# path pastes into checkpoint= and train.resume= unquoted. '=' and ',' are not among them.
UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
STARTED_NS = time.time_ns()  # this process's start, as near as the module's import
_claimed: dict[str, str] = {}
_created: list[Path] = []     # the directories unique_dir made, for remove_if_made_and_empty


def run_label(name: str | None, overrides) -> str:
    """`name` if given, else the command line's overrides (Hydra's list) as KEY-VALUE joined by '+', a path
    shortened to its last part (data.path-input.txt), else "default"; made safe as one directory name."""
    if name:
        return _not_latest(_safe(str(name)))
    kept = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "name":
            continue
        value = value.strip("'\"").rstrip("/").rsplit("/", 1)[-1]
        kept.append(f"{key.lstrip('+~')}-{value}")
    return _not_latest(_safe("+".join(kept)) or "default")


def _not_latest(label: str) -> str:
    """label, unless it names the link runs/latest (in any case): then label-run."""
    return f"{label}-run" if label.lower() == LATEST else label


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
    text = UNSAFE.sub("_", text).strip("._-+")
    if len(text) > MAX_LABEL:
        cut = text.rfind("+", 0, MAX_LABEL + 1)
        text = text[:cut] if cut > 0 else text[:MAX_LABEL]
    return text.strip("._-+") or "default"


def unique_dir(path: str) -> str:
    """`path`, or `path-2`, `path-3`, ... whichever this process creates first: two runs started in the
    same second with the same name get two directories. The same path asked twice in one process (Hydra
    reads a -m sweep's directory once per job) gets the same answer."""
    if path in _claimed:
        return _claimed[path]
    if not is_main_process():
        # Under torchrun only rank 0 writes. Hydra makes a rank's run directory before the run starts: a rank
        # above 0 gets a private one (removed at its end), so it never takes rank 0's name first.
        _claimed[path] = tempfile.mkdtemp(prefix="charrnn-rank-")
        _created.append(Path(_claimed[path]))
        return _claimed[path]
    candidate, n = path, 1
    while True:
        try:
            _make_parents(Path(candidate).parent)
            os.mkdir(candidate)
            _created.append(Path(candidate).absolute())
            break
        except FileExistsError:
            n += 1
            candidate = f"{path}-{n}"
        except OSError:
            break  # Hydra's own attempt to create it reports the problem
    _claimed[path] = candidate
    return candidate


def _make_parents(directory: Path) -> None:
    """directory and its missing parents, each recorded as made by this process."""
    missing = [d for d in [directory, *directory.parents] if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    _created.extend(d.absolute() for d in missing)


def register_resolvers() -> None:
    """Make ${run_label:...}, ${sweep_label:...} and ${unique_dir:...} available to the config (before Hydra composes it)."""
    OmegaConf.register_new_resolver("run_label", run_label, replace=True)
    OmegaConf.register_new_resolver("sweep_label", sweep_label, replace=True)
    # cached in the config: joblib's workers receive the sweep's config with its directory already chosen
    # (chosen again in each worker, one sweep would scatter over DATE, DATE-2, ...)
    OmegaConf.register_new_resolver("unique_dir", unique_dir, replace=True, use_cache=True)
