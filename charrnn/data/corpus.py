"""Read a corpus file as symbols (see charrnn.data for data.encoding), a block at a time.

A file of any size is read in blocks of BLOCK_BYTES, so memory stays bounded: UTF-8's incremental
decoder carries a character cut by a block boundary over to the next block, so the symbols come out
exactly as decoding the whole file at once would give them (invalid bytes included, under
utf-8-replace). Two passes over the file make the ids: one finds the vocabulary (and hashes the
content), the other maps each symbol to its id.
"""

import codecs
import hashlib
import os
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.errors import UserError
from charrnn.files import atomic_write

BLOCK_BYTES = 1 << 22  # 4 MiB: the largest temporaries (int64 index copies) stay near 32 MB
UNICODE_SIZE = 0x110000  # code points 0 .. U+10FFFF
BYTE_SIZE = 256


@dataclass(frozen=True)
class Scan:
    """What one pass over a corpus found."""

    symbols: np.ndarray  # (V,) int32, ascending: the distinct symbols
    length: int  # symbols in the file
    sha256: str  # of the file's bytes


def open_corpus(path: Path):
    """The corpus file opened for reading, or a UserError naming what is wrong with the path."""
    if not path.exists():
        raise UserError(f"corpus file {path} does not exist; pass data.path=/path/to/file.txt")
    if path.is_dir():
        raise UserError(f"corpus path {path} is a directory; pass data.path=/path/to/file.txt")
    if not path.is_file():
        # /dev/zero, a terminal, a pipe: possibly endless, and never of a size known before reading
        raise UserError(f"corpus path {path} is not a regular file (a device, pipe or socket); save the text "
                        f"to a file and pass data.path=/path/to/file.txt")
    try:
        file = path.open("rb")
    except OSError as e:
        raise UserError(f"cannot read corpus file {path}: {e.strerror}; pass a readable file as data.path") from None
    if os.fstat(file.fileno()).st_size == 0:
        # /proc and /sys files report a size of 0 whatever they hold: reading twice could give two contents
        pseudo = file.read(1) != b""
        file.close()
        if pseudo:
            raise UserError(f"corpus file {path} reports a size of 0 but holds text (a /proc or /sys file, whose "
                            f"content can change between reads); copy it to a regular file and pass that as data.path")
        raise UserError(f"corpus file {path} is empty; pass data.path=/path/to/a/text/file.txt")
    return file


def symbol_blocks(path: Path, encoding: str, observe: Callable[[bytes], object] = len) -> Iterator[np.ndarray]:
    """The file's symbols, block by block: uint8 arrays where a block is all bytes or ASCII, else uint32
    code points. observe sees each block of bytes as it is read (to hash it, or to show progress)."""
    with open_corpus(path) as file:
        blocks = iter(lambda: file.read(BLOCK_BYTES), b"")
        if encoding == "bytes":
            for block in blocks:
                observe(block)
                yield np.frombuffer(block, np.uint8)
            return
        decoder = codecs.getincrementaldecoder("utf-8")("replace" if encoding == "utf-8-replace" else "strict")
        fed = 0  # bytes given to the decoder before this block
        for block in blocks_then_end(blocks):
            observe(block)
            held = len(decoder.getstate()[0])  # the start of a character cut by the last boundary
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                raise UserError(f"corpus file {path} is not valid UTF-8 (byte offset {fed - held + e.start}); "
                                f"convert it, or pass data.encoding=utf-8-replace (invalid bytes read as U+FFFD) "
                                f"or data.encoding=bytes (a vocabulary of byte values)") from None
            fed += len(block)
            if text:
                yield code_points(text)


def blocks_then_end(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The blocks, then b"": the decoder's final call, which flushes (or refuses) a cut-off character."""
    yield from blocks
    yield b""


def code_points(text: str) -> np.ndarray:
    """text's code points: (n,) uint8 when it is ASCII (a quarter of the memory, and faster), else uint32."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), np.uint32)


def scan(path: Path, encoding: str, progress: Callable[[int], object] = int) -> Scan:
    """First pass: the vocabulary, the length in symbols and the content hash. progress is told how many
    bytes each block had."""
    hasher = hashlib.sha256()

    def observe(block: bytes) -> None:
        hasher.update(block)
        progress(len(block))
    present = np.zeros(BYTE_SIZE if encoding == "bytes" else UNICODE_SIZE, bool)
    length = 0
    for symbols in symbol_blocks(path, encoding, observe):
        counts = np.bincount(symbols)
        present[: len(counts)] |= counts > 0
        length += len(symbols)
    return Scan(np.flatnonzero(present).astype(np.int32), length, hasher.hexdigest())


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id: 1 byte up to 256 symbols, 2 up to 65,536, else 4."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"a vocabulary of {vocab_size} symbols")


def write_ids(path: Path, encoding: str, symbols: np.ndarray, out, progress: Callable[[int], object] = int) -> int:
    """Second pass: each symbol's id (its index in symbols), written to the binary file out in
    id_dtype(len(symbols)); returns how many were written. A symbol that scan() did not find means the
    file changed between the passes (so does a change of its size, which the caller compares)."""
    table = np.zeros(int(symbols[-1]) + 1, id_dtype(len(symbols)))  # symbol -> id
    table[symbols] = np.arange(len(symbols))
    known = np.zeros(len(table), bool)
    known[symbols] = True
    written = 0
    for block in symbol_blocks(path, encoding, lambda raw: progress(len(raw))):
        if len(block) and (int(block.max()) >= len(table) or not known[block].all()):
            raise UserError(f"corpus file {path} changed while it was being encoded; run again once it is written")
        out.write(table[block].tobytes())
        written += len(block)
    return written


def file_sha256(path: Path) -> str:
    with open_corpus(path) as file:
        return stream_sha256(file)


def stream_sha256(file) -> str:
    """The sha256 of what is left to read in a binary file."""
    hasher = hashlib.sha256()
    for block in iter(lambda: file.read(BLOCK_BYTES), b""):
        hasher.update(block)
    return hasher.hexdigest()


def fetch(path: Path, url: str, sha256: str | None) -> None:
    """Download url to path, verifying its sha256; write atomically so a failed fetch leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
    with atomic_write(path) as out:
        out.write(payload)


def corpus_path(cfg) -> Path:
    """The corpus file named by a DataConfig: data.path as given, else download_path, fetched from url
    if absent."""
    if cfg.path is not None:
        return Path(cfg.path).expanduser()
    path = Path(cfg.download_path)
    if not path.exists():
        fetch(path, cfg.url, cfg.sha256)
    return path
