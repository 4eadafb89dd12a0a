"""Checkpoints: one .npz file that either backend loads, and that loads without unpickling.

Layout (every entry a plain array; text entries are 0-d unicode arrays):
    format                  "charrnn-checkpoint-v1"
    param/<name>            the weights, under charrnn.model's names (the config's model section says
                            which cell, how many layers and what dropout they were trained with)
    optim/<key>             the optimizer state, flat (charrnn.optim names the keys; an fp16 run adds its
                            gradient scaler's, optim/scaler/...)
    vocab                   (V,) int32 symbols in id order: code points, or byte values (config data.encoding=bytes)
    config                  the resolved config, as JSON
    progress                the run's progress (charrnn.training.resume.Progress), as JSON; a checkpoint
                            written before the entry had this name calls it "state"
    h, c                    (L, B, H) the recurrent state carried into the next chunk, one entry per
                            name in the cell's state (c: the LSTM's only); a checkpoint written before
                            layers (the same format) holds h as (B, H), read as one layer
"""

import json
import math
import os
import stat
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.checkpoint.fields import nonfinite_entries
from charrnn.errors import UserError
from charrnn.files import atomic_write, remove_leftovers
from charrnn.cells import CELLS, state_names
from charrnn.model import model_spec, param_shapes
from charrnn.optim import SCALER_KEYS

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
    remove_leftovers(path)  # what a save killed midway (kill -9, a power cut) left beside it
    try:
        with atomic_write(path) as f:
            np.savez(f, **arrays)
    except OSError as e:
        raise UserError(f"cannot write checkpoint {path}: {e.strerror}; what was there before is as it was") from None


# The checkpoints read so far in a reading_once block: (device, inode, size, mtime) -> Checkpoint.
_READ: ContextVar[dict | None] = ContextVar("checkpoints read once", default=None)


@contextmanager
def reading_once() -> Iterator[dict]:
    """Within it, load_checkpoint reads each file once: a later call for the same file, unchanged (same
    inode, size and modification time), gets the same Checkpoint. A run's start asks for the checkpoint it
    resumes or fine-tunes from in several places (its config, its run directory, its weights); one read
    serves them all. Yields the memo, which the caller may clear once the start is over, so that the run
    does not hold a second copy of the weights."""
    memo = {}
    token = _READ.set(memo)
    try:
        yield memo
    finally:
        _READ.reset(token)


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read a checkpoint; anything that is not one (missing, corrupt, truncated, pickled, foreign)
    raises UserError. What it may hold is known before any data is read: only the entries save_checkpoint
    writes, each once, each no larger than its model needs (sizes from the zip's headers and each
    array's .npy header), so a small file cannot make a load read gigabytes. Nothing is unpickled: no
    code in the file can run. In a reading_once block, a file already read is not read again."""
    path = Path(path)
    memo = _READ.get()
    if memo is None:
        return _load_checkpoint(path)
    try:
        info = path.stat()
    except OSError:
        return _load_checkpoint(path)     # (which names the problem)
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    if key not in memo:
        memo[key] = _load_checkpoint(path)
    return memo[key]


def _load_checkpoint(path: Path) -> Checkpoint:
    _check_regular_file(path)
    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            raise UserError(f"{path} is not a charrnn checkpoint (not an .npz archive); "
                            f"pass a ckpt_*.npz written by train.py")
    try:
        with zipfile.ZipFile(path) as archive:
            arrays, vocab, config, progress = _read_entries(archive, path)
    # What a damaged zip or .npy header raises (measured by flipping every byte of a checkpoint), and
    # MemoryError for an array its machine cannot hold.
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError, RuntimeError,
            MemoryError) as e:
        reason = "it holds pickled objects, which are never loaded" if "pickle" in str(e) else str(e)
        raise UserError(f"{path} is not a readable charrnn checkpoint ({reason}); "
                        f"pass a ckpt_*.npz written by train.py") from None
    state = {k: arrays[k] for k in state_names() if k in arrays}
    if state["h"].ndim == 2:   # written before layers: one layer's (B, H)
        state["h"] = state["h"][None]
    ckpt = Checkpoint(
        params={k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")},
        optimizer_state={k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")},
        vocab=vocab, config=config, progress=progress, state=state,
    )
    problem = _problem(ckpt)
    if problem:
        raise UserError(f"checkpoint {path} is damaged: {problem}")
    return ckpt


def _check_regular_file(path: Path) -> None:
    """A checkpoint is a regular file; anything else is named for what it is, and never opened (a FIFO would
    block, /dev/zero never ends)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist") from None
    except OSError as e:
        raise UserError(f"cannot read checkpoint {path}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"checkpoint {path} is not a regular file (a device, pipe or socket); "
                        f"pass a ckpt_*.npz written by train.py")


# The text entries, and the most bytes each declares in a checkpoint charrnn wrote (a config or progress
# of a few kB; a vocabulary of every code point as int64). A checkpoint written before the progress entry
# had its name calls it "state".
TEXT_ENTRIES = {"format": 1 << 10, "config": 1 << 20, "progress": 1 << 20}
OLD_PROGRESS = "state"
VOCAB_BYTES = (sys.maxunicode + 1) * 8 + (1 << 10)
NPY_HEADER_BYTES = 1 << 16
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_entries(archive: zipfile.ZipFile, path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict, dict]:
    """The checkpoint's arrays by key (weights, optimizer state, recurrent state), its vocabulary, config and
    progress, each checked from the headers before its data is read."""
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        if key in infos:
            raise UserError(f"checkpoint {path} is damaged: it holds {key} twice")
        infos[key] = info
    marker = _read_array(archive, infos["format"], path, limit=TEXT_ENTRIES["format"]) if "format" in infos else None
    if marker is None or str(marker) != FORMAT:
        raise UserError(f"{path} is not a charrnn checkpoint (no '{FORMAT}' marker); "
                        f"pass a ckpt_*.npz written by train.py")
    if "progress" not in infos and OLD_PROGRESS in infos:
        infos["progress"] = infos.pop(OLD_PROGRESS)
    unknown = [k for k in infos if not (k in (*TEXT_ENTRIES, "vocab", *state_names()) or
                                        k.startswith(("param/", "optim/")))]
    if unknown:
        raise UserError(f"{path} holds an entry charrnn does not write ({', '.join(unknown[:4])}); it is not a "
                        f"checkpoint of charrnn's, or it was altered: pass a ckpt_*.npz written by train.py")
    missing = [k for k in ("vocab", "config", "progress", "h") if k not in infos]
    if missing:
        raise UserError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    config, progress = (_json_object(_read_array(archive, infos[k], path, limit=TEXT_ENTRIES[k]))
                        for k in ("config", "progress"))
    if config is None or progress is None:
        raise UserError(f"checkpoint {path} is damaged: its config or progress is not a JSON object")
    vocab = _read_array(archive, infos["vocab"], path, limit=VOCAB_BYTES)
    if vocab.ndim != 1 or vocab.dtype.kind not in "iu" or len(vocab) == 0 or (np.diff(vocab) <= 0).any() \
            or vocab[0] < 0 or vocab[-1] > sys.maxunicode:
        raise UserError(f"checkpoint {path} is damaged: its vocabulary is not an ascending list of code points")
    expected = _expected_shapes(config, len(vocab), infos, path)
    arrays = {k: _read_array(archive, info, path, shapes=expected[k]) for k, info in infos.items() if k in expected}
    return arrays, vocab, config, progress


def _expected_shapes(config: dict, vocab_size: int, infos: dict, path: Path) -> dict[str, tuple]:
    """The shapes each array entry may have, from the checkpoint's own config and vocabulary: its model's
    weights, an optimizer entry per weight (and its step), the recurrent state of its streams (L, B, H),
    or (B, H) as written before layers. A model larger than the machine's memory is refused here."""
    model, train = (config.get(k) if isinstance(config.get(k), dict) else {} for k in ("model", "train"))
    cell, hidden_size, layers = model.get("cell", "rnn"), model.get("hidden_size"), model.get("num_layers", 1)
    batch = train.get("batch_size")
    whole = [v for v in (hidden_size, layers, batch) if isinstance(v, int) and not isinstance(v, bool) and v >= 1]
    # every layer has at least three entries, so the entries bound the layers before anything is counted
    if cell not in CELLS or len(whole) != 3 or layers > len(infos):
        raise UserError(f"checkpoint {path} is damaged: its config's model (cell, hidden_size, num_layers) or "
                        f"train.batch_size is not one charrnn writes")
    params = param_shapes(model_spec(cell, vocab_size, hidden_size, layers))
    # weights, three optimizer arrays at most per weight, and the state, in float64 at most
    state_size = len(CELLS[cell].state) * layers * batch * hidden_size
    needed = 8 * (4 * sum(math.prod(s) for s in params.values()) + state_size)
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > available:
        raise UserError(f"checkpoint {path} describes a model (hidden_size {hidden_size}, {layers} layers) whose "
                        f"weights and optimizer state need {needed / 1e9:.3g} GB, more than this machine's "
                        f"{available / 1e9:.3g} GB")
    expected = {f"param/{k}": (shape,) for k, shape in params.items()}
    expected["optim/step"] = ((),)
    expected.update({f"optim/{key}": ((),) for key in SCALER_KEYS})
    for key in infos:
        name = key.removeprefix("optim/").partition("/")[2]
        if key.startswith("optim/") and name in params:
            expected[key] = (params[name],)
    for key in CELLS[cell].state:
        expected[key] = ((layers, batch, hidden_size), (batch, hidden_size))
    strays = [k for k in infos if k not in expected and k not in (*TEXT_ENTRIES, "vocab")]
    if strays:
        raise UserError(f"{path} holds an entry charrnn does not write for its model ({', '.join(strays[:4])}); "
                        f"it was altered: pass a ckpt_*.npz written by train.py")
    return expected


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, limit: int | None = None,
                shapes: tuple = ()) -> np.ndarray:
    """One .npy entry, its size checked before its data is read: the zip header's declared size against
    `limit` bytes, or the .npy header's shape against `shapes` (and the declared size against that shape)."""
    key = info.filename.removesuffix(".npy")
    if limit is not None and info.file_size > limit:
        raise UserError(f"checkpoint {path} is damaged: its {key} entry declares {info.file_size:,} bytes, more "
                        f"than a checkpoint's {key} ever holds ({limit:,})")
    with archive.open(info) as f:
        read_header = NPY_HEADERS.get(np.lib.format.read_magic(f))
        if read_header is None:
            raise ValueError(f"{key} is not in a .npy format numpy's savez writes")
        shape, fortran_order, dtype = read_header(f, max_header_size=NPY_HEADER_BYTES)
        if dtype.hasobject:
            raise ValueError("it holds pickled objects, which are never loaded")
        if limit is None and shape not in shapes:
            need = " or ".join(str(s) for s in shapes) or "nothing (its model has no such entry)"
            raise UserError(f"checkpoint {path} is damaged: {key} is {dtype} {shape}, where its model needs {need}")
        array = np.empty(shape, dtype, order="F" if fortran_order else "C")
        if info.file_size != f.tell() + array.nbytes:
            raise UserError(f"checkpoint {path} is damaged: its {key} entry declares {info.file_size:,} bytes, "
                            f"not the {f.tell() + array.nbytes:,} its .npy header describes")
        data = memoryview(array.reshape(-1, order="A")).cast("B")
        filled = 0
        while filled < array.nbytes:
            n = f.readinto(data[filled:])
            if not n:
                raise EOFError(f"{key} ends early")
            filled += n
    return array


def _json_object(entry: np.ndarray) -> dict | None:
    try:
        value = json.loads(str(entry))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _problem(ckpt: Checkpoint) -> str | None:
    """What makes a checkpoint whose entries have their model's shapes unusable, if anything. Whether that
    model fits the run's config is checked where it is built (restore_backend)."""
    not_float = [k for k, a in {**ckpt.params, **ckpt.state}.items() if a.dtype.kind != "f"]
    if not_float:
        return f"not floating point: {', '.join(not_float)}"
    blown_up = nonfinite_entries({**ckpt.params, **ckpt.optimizer_state, **ckpt.state})
    if blown_up:
        return f"{', '.join(blown_up)} not finite (the model had blown up); use an earlier checkpoint"
    return None
