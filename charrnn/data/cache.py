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

The ids file is checked the same way: the json records its sha256 (taken while it was written) and its
own size, mtime, ctime and inode; while those are unchanged it is trusted, and when any differs (an
edit, a copy over it) it is hashed again. The json is sealed by a sha256 of its own fields, so an edited
vocabulary or length is seen. An entry that fails any check (unreadable, another format or file, a
vocabulary out of order or out of range, the wrong size, a link in place of the ids file) is rebuilt,
never trusted; rebuilding renames new files over the old names, which replaces a link rather than
writing through it.

An entry is written atomically (charrnn.files.atomic_write; the json last, since it vouches for the ids);
a temporary file that a killed writer left is removed by the entry's next writer.
"""

import hashlib
import json
import os
import stat as stat_kinds
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from charrnn.data.corpus import UNICODE_SIZE, file_sha256, id_dtype, open_corpus, scan, stream_sha256, write_ids
from charrnn.errors import UserError
from charrnn.files import atomic_write, remove_leftovers

FORMAT = "charrnn-ids-2"
BESIDE = ".charrnn-cache"  # the default cache: a directory next to the corpus
NAME_BYTES = 100           # of the corpus's file name kept in an entry's name (a name may have 255 bytes)
SURROGATES = range(0xD800, 0xE000)  # code points no UTF-8 text decodes to


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "charrnn"


def cache_dirs(source: Path, cache_dir: str | None) -> list[Path]:
    """Where the entry may be, in order: data.cache_dir if set (an empty value is unset, as an empty
    XDG variable is), else beside the corpus, then the user's cache directory (for a corpus in a
    directory that cannot be written)."""
    if cache_dir:
        return [Path(cache_dir).expanduser()]
    return [source.parent / BESIDE, user_cache_dir()]


def fingerprint(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def sealed(meta: dict) -> str:
    """The sha256 of an entry's fields (all but the seal itself)."""
    fields = {k: v for k, v in meta.items() if k != "seal"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def vocabulary_problem(symbols: np.ndarray, encoding: str) -> bool:
    """Whether symbols cannot be a vocabulary of this encoding: empty, out of order, or out of range."""
    highest = 255 if encoding == "bytes" else UNICODE_SIZE - 1
    return not (len(symbols) and symbols[0] >= 0 and symbols[-1] <= highest and (np.diff(symbols) > 0).all()
                and (encoding == "bytes" or not np.isin(symbols, SURROGATES).any()))


class CacheEntry:
    def __init__(self, directory: Path, source: Path, encoding: str):
        key = hashlib.sha256(f"{source}\0{encoding}".encode()).hexdigest()[:16]
        name = os.fsdecode(os.fsencode(source.name)[:NAME_BYTES])
        self.directory = directory
        self.ids_path = directory / f"{name}.{key}.ids"
        self.meta_path = directory / f"{name}.{key}.json"
        self.source, self.encoding = source, encoding

    def open(self) -> tuple[np.ndarray, np.memmap] | None:
        """The vocabulary (V,) and the memory-mapped ids (n,), or None if the entry is absent, is not a
        valid entry for this file, or holds an earlier content of it."""
        try:
            meta = json.loads(self.meta_path.read_text())
            if (meta["format"], meta["source"], meta["encoding"]) != (FORMAT, str(self.source), self.encoding) \
                    or meta["seal"] != sealed(meta):
                return None
            symbols = np.array(meta["symbols"], np.int64)
            length, dtype = int(meta["length"]), np.dtype(meta["dtype"])
            if vocabulary_problem(symbols, self.encoding) or length <= 0 or dtype != id_dtype(len(symbols)):
                return None
            # O_NOFOLLOW: a link in the entry's place is not the entry
            with open(self.ids_path, "rb", opener=lambda path, flags: os.open(path, flags | os.O_NOFOLLOW)) as ids:
                st = os.fstat(ids.fileno())
                if not stat_kinds.S_ISREG(st.st_mode) or st.st_size != length * dtype.itemsize:
                    return None
                changed = {}
                if meta["ids_stat"] != fingerprint(st):
                    if meta["ids_sha256"] != stream_sha256(ids):
                        return None
                    changed["ids_stat"] = fingerprint(st)
                source_stat = fingerprint(self.source.stat())
                if meta["stat"] != source_stat:
                    if meta["sha256"] != file_sha256(self.source):
                        return None
                    changed["stat"] = source_stat
                if changed:
                    self._remember({**meta, **changed})
                return symbols.astype(np.int32), np.memmap(ids, dtype, mode="r", shape=(length,))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _remember(self, meta: dict) -> None:
        """Record the stats the contents were last verified under, so the next start need not hash again."""
        try:
            with atomic_write(self.meta_path, "w") as out:
                json.dump({**meta, "seal": sealed(meta)}, out)
        except OSError:
            pass  # a read-only cache still works; the next start hashes again

    def build(self) -> tuple[np.ndarray, np.memmap]:
        """Encode the source (two passes over it) into this entry, and open it."""
        for path in (self.ids_path, self.meta_path):
            remove_leftovers(path)
        stat = fingerprint(self.source.stat())
        bar = tqdm(total=2 * stat[0], unit="B", unit_scale=True, desc=f"encoding {self.source.name}",
                   leave=False, delay=2.0)  # shown only when encoding takes a while
        with bar:
            found = scan(self.source, self.encoding, bar.update)
            self.meta_path.unlink(missing_ok=True)
            with atomic_write(self.ids_path, "wb") as out:
                hashed = Hashed(out)
                written = write_ids(self.source, self.encoding, found.symbols, hashed, bar.update)
        if written != found.length or fingerprint(self.source.stat()) != stat:
            raise UserError(f"corpus file {self.source} changed while it was being encoded; "
                            f"run again once it is written")
        meta = dict(format=FORMAT, source=str(self.source), encoding=self.encoding, sha256=found.sha256,
                    stat=stat, length=found.length, dtype=id_dtype(len(found.symbols)).name,
                    symbols=found.symbols.tolist(), ids_sha256=hashed.hasher.hexdigest(),
                    ids_stat=fingerprint(os.lstat(self.ids_path)))
        with atomic_write(self.meta_path, "w") as out:
            json.dump({**meta, "seal": sealed(meta)}, out)
        return found.symbols, np.memmap(self.ids_path, meta["dtype"], mode="r", shape=(found.length,))

class Hashed:
    """A binary file that hashes what is written to it."""

    def __init__(self, out):
        self.out, self.hasher = out, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.hasher.update(data)
        self.out.write(data)


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
            return build(CacheEntry(directory, source, encoding))
    tried = " or ".join(str(d) for d in dirs)
    raise UserError(f"cannot write the encoded corpus to {tried}; name a writable directory with "
                    f"data.cache_dir=PATH")


def build(entry: CacheEntry) -> tuple[np.ndarray, np.memmap]:
    try:
        return entry.build()
    except OSError as e:
        raise UserError(f"cannot write the encoded corpus to {entry.directory}: {e.strerror}; free some space "
                        f"there, or name another directory with data.cache_dir=PATH") from None
