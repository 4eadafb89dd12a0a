"""Text in, ids out: find or fetch the corpus, build the vocabulary, encode, split."""

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.errors import UserError


@dataclass(frozen=True)
class Vocab:
    """The sorted set of code points of the whole corpus; a character's id is its index."""

    code_points: np.ndarray  # (V,) int32, ascending

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls(np.unique(_code_points(text)).astype(np.int32))

    def __len__(self) -> int:
        return len(self.code_points)

    @property
    def chars(self) -> list[str]:
        return [chr(c) for c in self.code_points]

    def encode(self, text: str) -> np.ndarray:
        cps = _code_points(text)
        ids = np.searchsorted(self.code_points, cps)
        unknown = (ids >= len(self)) | (self.code_points[np.minimum(ids, len(self) - 1)] != cps)
        if unknown.any():
            missing = sorted({chr(c) for c in cps[unknown]})
            raise UserError(f"characters not in the vocabulary: {''.join(missing)!r}")
        return ids.astype(np.int32)

    def decode(self, ids) -> str:
        return "".join(chr(c) for c in self.code_points[np.asarray(ids, dtype=np.intp)])


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)


def fetch(path: Path, url: str, sha256: str | None) -> None:
    """Download url to path, verifying its sha256; write atomically so a failed fetch leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            payload = response.read()
    except OSError as e:
        raise UserError(f"could not download {url} ({e}); place the file at {path} yourself, "
                        f"or train on another file with data.path=/path/to/file.txt") from None
    digest = hashlib.sha256(payload).hexdigest()
    if sha256 and digest != sha256:
        raise UserError(f"downloaded {url} but its sha256 is {digest}, expected {sha256}; "
                        f"place a verified copy at {path}, or pass data.path=/path/to/file.txt")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def load_text(cfg) -> str:
    """The corpus named by a DataConfig: data.path as given, else download_path, fetched from url if absent."""
    if cfg.path is not None:
        return read_text(Path(cfg.path).expanduser())
    path = Path(cfg.download_path)
    if not path.exists():
        fetch(path, cfg.url, cfg.sha256)
    return read_text(path)


def read_text(path: Path) -> str:
    if not path.exists():
        raise UserError(f"corpus file {path} does not exist; pass data.path=/path/to/file.txt")
    if path.is_dir():
        raise UserError(f"corpus path {path} is a directory; pass data.path=/path/to/file.txt")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read corpus file {path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"corpus file {path} is not valid UTF-8 (byte offset {e.start}); "
                        f"convert it to UTF-8 or pass another file") from None
    if not text:
        raise UserError(f"corpus file {path} is empty; pass data.path=/path/to/a/text/file.txt")
    return text


def split(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous split, validation last (nanoGPT's: 1,003,854 / 111,540 chars of Tiny Shakespeare)."""
    n_train = int(len(ids) * (1 - val_fraction))
    return ids[:n_train], ids[n_train:]
