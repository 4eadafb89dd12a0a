"""Checkpoints: one .npz file that either backend loads, and that loads without unpickling.

Layout (every entry a plain array; text entries are 0-d unicode arrays):
    format                  "charrnn-checkpoint-v1"
    param/<name>            the weights, under charrnn.model's names (the config's model section says
                            which cell, how many layers and what dropout they were trained with)
    optim/<key>             the optimizer state, flat (charrnn.optim names the keys)
    vocab                   (V,) int32 symbols in id order: code points, or byte values (config data.encoding=bytes)
    config                  the resolved config, as JSON
    progress                the run's progress (charrnn.training.resume.Progress), as JSON; a checkpoint
                            written before the entry had this name calls it "state"
    h, c                    (L, B, H) the recurrent state carried into the next chunk, one entry per
                            name in the cell's state (c: the LSTM's only); a checkpoint written before
                            layers (the same format) holds h as (B, H), read as one layer
"""

import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.checkpoint.fields import nonfinite_entries
from charrnn.errors import UserError
from charrnn.files import atomic_write
from charrnn.model import STATE_NAMES

FORMAT = "charrnn-checkpoint-v1"
ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive; anything else is refused before numpy parses it


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray]
    vocab: np.ndarray
    config: dict
    progress: dict                  # the run's progress between two steps (charrnn.training.resume.Progress)
    state: dict[str, np.ndarray]    # the recurrent state by name ("h", "c"), each (L, B, H)


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write atomically (charrnn.files.atomic_write): a crash at any moment leaves either the old
    checkpoint or the new one, never a torn file. Non-finite weights, optimizer state or
    carried state are refused before anything is written, whatever asked for the save."""
    blown_up = nonfinite_entries({**ckpt.params, **ckpt.optimizer_state, **ckpt.state})
    if blown_up:
        raise UserError(f"refusing to write {path}: {', '.join(blown_up)} not finite (the model has blown up); "
                        f"what was there before is as it was")
    arrays = {"format": np.array(FORMAT), "vocab": ckpt.vocab, **ckpt.state,
              "config": np.array(json.dumps(ckpt.config)), "progress": np.array(json.dumps(ckpt.progress))}
    arrays.update({f"param/{k}": v for k, v in ckpt.params.items()})
    arrays.update({f"optim/{k}": v for k, v in ckpt.optimizer_state.items()})
    try:
        with atomic_write(path) as f:
            np.savez(f, **arrays)
    except OSError as e:
        raise UserError(f"cannot write checkpoint {path}: {e.strerror}; what was there before is as it was") from None


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read a checkpoint; anything that is not one (missing, corrupt, truncated, pickled, foreign)
    raises UserError. allow_pickle=False means no code in the file can run."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            raise UserError(f"{path} is not a charrnn checkpoint (not an .npz archive); "
                            f"pass a ckpt_*.npz written by train.py")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    # What a damaged zip or .npy header raises (measured by flipping every byte of a checkpoint), and
    # MemoryError for a header that claims a huge array.
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError, RuntimeError,
            MemoryError) as e:
        reason = "it holds pickled objects, which are never loaded" if "pickle" in str(e) else str(e)
        raise UserError(f"{path} is not a readable charrnn checkpoint ({reason}); "
                        f"pass a ckpt_*.npz written by train.py") from None
    if "format" not in arrays or str(arrays["format"]) != FORMAT:
        raise UserError(f"{path} is not a charrnn checkpoint (no '{FORMAT}' marker); "
                        f"pass a ckpt_*.npz written by train.py")
    if "progress" not in arrays and "state" in arrays:
        arrays["progress"] = arrays.pop("state")
    required = ["vocab", "config", "progress", "h"]
    missing = [k for k in required if not isinstance(arrays.get(k), np.ndarray)]
    if missing:
        raise UserError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    state = {k: arrays[k] for k in STATE_NAMES if k in arrays}
    if state["h"].ndim == 2:   # written before layers: one layer's (B, H)
        state["h"] = state["h"][None]
    ckpt = Checkpoint(
        params={k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")},
        optimizer_state={k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")},
        vocab=arrays["vocab"],
        config=_json_object(arrays["config"]),
        progress=_json_object(arrays["progress"]),
        state=state,
    )
    problem = _problem(ckpt)
    if problem:
        raise UserError(f"checkpoint {path} is damaged: {problem}")
    return ckpt


def _json_object(entry: np.ndarray) -> dict | None:
    try:
        value = json.loads(str(entry))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _problem(ckpt: Checkpoint) -> str | None:
    """What makes a checkpoint that unzipped cleanly unusable, if anything. Shapes are checked where the
    model is built (restore_backend), against the config."""
    if ckpt.config is None or ckpt.progress is None:
        return "its config or progress is not a JSON object"
    v = ckpt.vocab
    if v.ndim != 1 or v.dtype.kind not in "iu" or len(v) == 0 or (np.diff(v) <= 0).any() \
            or v[0] < 0 or v[-1] > sys.maxunicode:
        return "its vocabulary is not an ascending list of code points"
    not_float = [k for k, a in {**ckpt.params, **ckpt.state}.items() if a.dtype.kind != "f"]
    if not_float:
        return f"not floating point: {', '.join(not_float)}"
    blown_up = nonfinite_entries({**ckpt.params, **ckpt.optimizer_state, **ckpt.state})
    if blown_up:
        return f"{', '.join(blown_up)} not finite (the model had blown up); use an earlier checkpoint"
    return None
