"""The encoded corpus on disk: its ids in a compact binary file that later runs memory-map, and the
vocabulary beside it.

    <cache dir>/<file name>.<key>.ids    the ids, one uint8 / uint16 / uint32 each by vocabulary size
    <cache dir>/<file name>.<key>.json   what the ids are: the format, source file, data.encoding, the
                                         source's sha256 and stat, the length, dtype and vocabulary

key is a hash of the source's absolute path and data.encoding: one entry per corpus file and encoding,
rewritten in place when the file changes, so an edited corpus never leaves stale gigabytes behind.

Whether an entry holds this corpus is decided by content, the sha256 of the file's bytes, computed
while encoding. Hashing a gigabyte takes about a second, too much for every start, so the json also
records the file's size, mtime, ctime and inode as last seen: while those are unchanged the recorded
hash is trusted (ctime cannot be set back by a program, as mtime can); when any differs (the file was
edited, copied, touched) the file is hashed again, and only a different hash re-encodes it.

An entry is written atomically (a temporary file, then a rename; the json last, since it vouches for the
ids), and one that is unreadable, from another format, for another file or of the wrong size is rebuilt,
never trusted. The ids' bytes themselves are not re-read to check them: that would cost a pass over the
corpus on every start.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from charrnn.data.corpus import file_sha256, id_dtype, open_corpus, scan, write_ids
from charrnn.errors import UserError
from charrnn.files import atomic_write

FORMAT = "charrnn-ids-1"
BESIDE = ".charrnn-cache"  # the default cache: a directory next to the corpus


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "charrnn"


def cache_dirs(source: Path, cache_dir: str | None) -> list[Path]:
    """Where the entry may be, in order: data.cache_dir if set, else beside the corpus, then the user's
    cache directory (for a corpus in a directory that cannot be written)."""
    if cache_dir is not None:
        return [Path(cache_dir).expanduser()]
    return [source.parent / BESIDE, user_cache_dir()]


def fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class CacheEntry:
    def __init__(self, directory: Path, source: Path, encoding: str):
        key = hashlib.sha256(f"{source}\0{encoding}".encode()).hexdigest()[:16]
        self.ids_path = directory / f"{source.name}.{key}.ids"
        self.meta_path = directory / f"{source.name}.{key}.json"
        self.source, self.encoding = source, encoding

    def open(self) -> tuple[np.ndarray, np.memmap] | None:
        """The vocabulary (V,) and the memory-mapped ids (n,), or None if the entry is absent, is not a
        valid entry for this file, or holds an earlier content of it."""
        try:
            meta = json.loads(self.meta_path.read_text())
            if (meta["format"], meta["source"], meta["encoding"]) != (FORMAT, str(self.source), self.encoding):
                return None
            symbols = np.array(meta["symbols"], np.int32)
            length, dtype = int(meta["length"]), np.dtype(meta["dtype"])
            if not (len(symbols) and symbols[0] >= 0 and (np.diff(symbols) > 0).all() and length > 0
                    and dtype == id_dtype(len(symbols))
                    and self.ids_path.stat().st_size == length * dtype.itemsize):
                return None
            stat = fingerprint(self.source)
            if meta["stat"] != stat:
                if meta["sha256"] != file_sha256(self.source):
                    return None
                self._remember(meta, stat)
            return symbols, np.memmap(self.ids_path, dtype, mode="r", shape=(length,))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _remember(self, meta: dict, stat: list[int]) -> None:
        """Record the stat the content was last verified under, so the next start need not hash again."""
        try:
            with atomic_write(self.meta_path, "w") as out:
                json.dump({**meta, "stat": stat}, out)
        except OSError:
            pass  # a read-only cache still works; the next start hashes again

    def build(self) -> tuple[np.ndarray, np.memmap]:
        """Encode the source (two passes over it) into this entry, and open it."""
        stat = fingerprint(self.source)
        bar = tqdm(total=2 * stat[0], unit="B", unit_scale=True, desc=f"encoding {self.source.name}",
                   leave=False, delay=2.0)  # shown only when encoding takes a while
        with bar:
            found = scan(self.source, self.encoding, bar.update)
            self.meta_path.unlink(missing_ok=True)
            with atomic_write(self.ids_path, "wb") as out:
                written = write_ids(self.source, self.encoding, found.symbols, out, bar.update)
        if written != found.length or fingerprint(self.source) != stat:
            raise UserError(f"corpus file {self.source} changed while it was being encoded; "
                            f"run again once it is written")
        meta = dict(format=FORMAT, source=str(self.source), encoding=self.encoding, sha256=found.sha256,
                    stat=stat, length=found.length, dtype=id_dtype(len(found.symbols)).name,
                    symbols=found.symbols.tolist())
        with atomic_write(self.meta_path, "w") as out:
            json.dump(meta, out)
        return found.symbols, np.memmap(self.ids_path, meta["dtype"], mode="r", shape=(found.length,))


def writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def load_encoded(source: Path, encoding: str, cache_dir: str | None) -> tuple[np.ndarray, np.memmap]:
    """The vocabulary (V,) and memory-mapped ids (n,) of the corpus file source: from the cache, or
    encoded into it first."""
    open_corpus(source).close()  # a missing, unreadable or empty file is named before anything else
    source = source.resolve()
    dirs = cache_dirs(source, cache_dir)
    for directory in dirs:
        found = CacheEntry(directory, source, encoding).open()
        if found is not None:
            return found
    for directory in dirs:
        if writable(directory):
            return CacheEntry(directory, source, encoding).build()
    tried = " or ".join(str(d) for d in dirs)
    raise UserError(f"cannot write the encoded corpus to {tried}; name a writable directory with "
                    f"data.cache_dir=PATH")
