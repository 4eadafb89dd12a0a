"""Text in, ids out: find or fetch the corpus, build the vocabulary, encode, split.

A corpus is read as symbols, and data.encoding says what a symbol is:

    utf-8          a Unicode character; a file that is not valid UTF-8 is refused, naming the byte offset
    utf-8-replace  the same, but each invalid byte sequence is read as U+FFFD, the replacement character
    bytes          a byte value, whatever the file holds; text given later (a prime) goes in as its UTF-8
                   bytes, and what the model writes comes out decoded from UTF-8 (a character of several
                   bytes takes several steps; bytes that are not UTF-8 print as \\xNN)
"""

import codecs
import hashlib
import os
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.errors import UserError

ENCODINGS = ("utf-8", "utf-8-replace", "bytes")


@dataclass(frozen=True)
class Vocab:
    """The sorted set of the corpus's symbols; a symbol's id is its index."""

    symbols: np.ndarray  # (V,) int32, ascending: code points, or byte values when is_bytes
    is_bytes: bool = False

    @classmethod
    def from_corpus(cls, corpus: np.ndarray, encoding: str) -> "Vocab":
        return cls(np.unique(corpus).astype(np.int32), encoding == "bytes")

    def __len__(self) -> int:
        return len(self.symbols)

    def ids(self, symbols: np.ndarray) -> np.ndarray:
        """The id of each symbol, or a UserError naming those the vocabulary lacks."""
        ids = np.searchsorted(self.symbols, symbols)
        unknown = (ids >= len(self)) | (self.symbols[np.minimum(ids, len(self) - 1)] != symbols)
        if unknown.any():
            raise UserError(f"not in the vocabulary: {self.show(np.unique(symbols[unknown]))}")
        return ids.astype(np.int32)

    def encode(self, text: str) -> np.ndarray:
        return self.ids(self.symbols_of(text))

    def symbols_of(self, text: str) -> np.ndarray:
        """text's code points or, in a byte vocabulary, its UTF-8 bytes."""
        if self.is_bytes:
            return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int64)
        return _code_points(text)

    def unknown(self, text: str) -> list[str]:
        """The characters of text that the vocabulary cannot encode, sorted."""
        return sorted(c for c in set(text) if not np.isin(self.symbols_of(c), self.symbols).all())

    def decode_stream(self, ids: Iterable[int]) -> Iterator[str]:
        """Text for ids as they come, each character as soon as it is whole."""
        if not self.is_bytes:
            for i in ids:
                yield chr(self.symbols[i])
            return
        utf8 = codecs.getincrementaldecoder("utf-8")("backslashreplace")
        for i in ids:
            yield utf8.decode(bytes([self.symbols[i]]))
        yield utf8.decode(b"", final=True)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.decode_stream(ids))

    def show(self, symbols: Iterable[int]) -> str:
        """Some symbols, for a message: a quoted string, or a bytes literal in a byte vocabulary."""
        return repr(bytes(map(int, symbols))) if self.is_bytes else repr("".join(map(chr, symbols)))


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


def load_corpus(cfg) -> np.ndarray:
    """The symbols (see Vocab) of the corpus named by a DataConfig: data.path as given, else
    download_path, fetched from url if absent; (n,) int64."""
    if cfg.path is not None:
        return read_corpus(Path(cfg.path).expanduser(), cfg.encoding)
    path = Path(cfg.download_path)
    if not path.exists():
        fetch(path, cfg.url, cfg.sha256)
    return read_corpus(path, cfg.encoding)


def load_ids(cfg) -> tuple[Vocab, np.ndarray]:
    """The corpus named by a DataConfig as ids (n,), and its vocabulary."""
    corpus = load_corpus(cfg)
    vocab = Vocab.from_corpus(corpus, cfg.encoding)
    return vocab, vocab.ids(corpus)


def read_corpus(path: Path, encoding: str) -> np.ndarray:
    if not path.exists():
        raise UserError(f"corpus file {path} does not exist; pass data.path=/path/to/file.txt")
    if path.is_dir():
        raise UserError(f"corpus path {path} is a directory; pass data.path=/path/to/file.txt")
    if not path.is_file():
        # /dev/zero, a terminal, a pipe: possibly endless, and never of a size known before reading
        raise UserError(f"corpus path {path} is not a regular file (a device, pipe or socket); save the text "
                        f"to a file and pass data.path=/path/to/file.txt")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read corpus file {path}: {e.strerror}; pass a readable file as data.path") from None
    except MemoryError:
        raise UserError(f"corpus file {path} ({path.stat().st_size:,} bytes) does not fit in memory; "
                        f"train on a shorter file") from None
    if not raw:
        raise UserError(f"corpus file {path} is empty; pass data.path=/path/to/a/text/file.txt")
    if encoding == "bytes":
        return np.frombuffer(raw, np.uint8).astype(np.int64)
    try:
        text = raw.decode("utf-8", "replace" if encoding == "utf-8-replace" else "strict")
    except UnicodeDecodeError as e:
        raise UserError(f"corpus file {path} is not valid UTF-8 (byte offset {e.start}); convert it, or pass "
                        f"data.encoding=utf-8-replace (invalid bytes read as U+FFFD) or data.encoding=bytes "
                        f"(a vocabulary of byte values)") from None
    return _code_points(text)


def split(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous split, validation last (nanoGPT's: 1,003,854 / 111,540 chars of Tiny Shakespeare)."""
    n_train = int(len(ids) * (1 - val_fraction))
    return ids[:n_train], ids[n_train:]
