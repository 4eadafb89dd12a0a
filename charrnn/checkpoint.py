"""Checkpoints: one .npz file that either backend loads, and that loads without unpickling.

Layout (every entry a plain array; text entries are 0-d unicode arrays):
    format                  "charrnn-checkpoint-v1"
    param/<name>            the five weights, under charrnn.model's names
    optim/<key>             the optimizer state, flat (charrnn.optim names the keys)
    vocab                   (V,) int32 code points, in id order
    config                  the resolved config, as JSON
    state                   trainer progress (step, data pointer, best val, RNG...), as JSON
    h                       (B, H) the hidden state carried into the next chunk
"""

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.errors import UserError
from charrnn.model import PARAM_NAMES

FORMAT = "charrnn-checkpoint-v1"


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray]
    vocab: np.ndarray
    config: dict
    state: dict
    h: np.ndarray


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write atomically: a temporary file in the same directory, fsynced, then renamed over path,
    so a crash at any moment leaves either the old checkpoint or the new one, never a torn file."""
    arrays = {"format": np.array(FORMAT), "vocab": ckpt.vocab, "h": ckpt.h,
              "config": np.array(json.dumps(ckpt.config)), "state": np.array(json.dumps(ckpt.state))}
    arrays.update({f"param/{k}": v for k, v in ckpt.params.items()})
    arrays.update({f"optim/{k}": v for k, v in ckpt.optimizer_state.items()})
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint; anything that is not one (missing, corrupt, truncated, pickled, foreign)
    raises UserError. allow_pickle=False means no code in the file can run."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise UserError(f"{path} is not a readable charrnn checkpoint ({e}); "
                        f"pass a ckpt_*.npz written by train.py") from None
    if "format" not in arrays or str(arrays["format"]) != FORMAT:
        raise UserError(f"{path} is not a charrnn checkpoint (no '{FORMAT}' marker); "
                        f"pass a ckpt_*.npz written by train.py")
    missing = [f"param/{k}" for k in PARAM_NAMES if f"param/{k}" not in arrays]
    if missing:
        raise UserError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    return Checkpoint(
        params={k: arrays[f"param/{k}"] for k in PARAM_NAMES},
        optimizer_state={k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")},
        vocab=arrays["vocab"],
        config=json.loads(str(arrays["config"])),
        state=json.loads(str(arrays["state"])),
        h=arrays["h"],
    )


def resolve_checkpoint(path_str: str) -> Path:
    """A checkpoint file, or a run directory (its best checkpoint, else its last)."""
    path = Path(path_str).expanduser()
    if path.is_dir():
        for name in ("ckpt_best.npz", "ckpt_last.npz"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"no checkpoint (ckpt_best.npz or ckpt_last.npz) in directory {path}")
    return path
