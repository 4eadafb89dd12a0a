"""Run directory names a person can read and two runs never share (conf/train.yaml's hydra.run.dir).

    runs/optim=sgd,optim.lr=1.0/2026-11-24_05-00-00     the overrides given on the command line
    runs/baseline/2026-11-24_05-00-00                    name=baseline
    runs/default/2026-11-24_05-00-00-2                   none: the second default run of that second
    runs/multirun/2026-11-24_05-00-00/1_optim=adam       -m: the job's number and the swept values

TensorBoard names each run by its path under --logdir, so its run list reads the same.
"""

import functools
import os
import re
from pathlib import Path

from omegaconf import OmegaConf

from charrnn.distributed import is_main_process

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
