"""The encoded-ids cache is charrnn's own and never trusted blindly: a damaged, tampered or substituted
entry is found when it is opened and rebuilt; an encoding that is interrupted leaves nothing behind for
good; any corpus name fits; the cache goes where the setting says, and its failures name that setting."""

import errno
import fcntl
import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from charrnn.data import cache as data_cache
from charrnn.data.cache import BESIDE, load_encoded
from charrnn.data.corpus import open_corpus, scan, write_ids
from charrnn.errors import UserError
from tests.conftest import HANG, TINY
from tests.runtree import assert_clean, finish, script

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 120


def entry(cache: Path) -> tuple[Path, Path]:
    (ids_file,), (meta_file,) = sorted(cache.glob("*.ids")), sorted(cache.glob("*.json"))
    return ids_file, meta_file


def edit_meta(change):
    def damage(ids_file, meta_file):
        meta = json.loads(meta_file.read_text())
        change(meta)
        meta_file.write_text(json.dumps(meta))
    return damage


def set_byte(value: int, at: int = 100):
    def damage(ids_file, meta_file):
        with open(ids_file, "r+b") as f:
            f.seek(at)
            f.write(bytes([value]))
    return damage


def symlinked_ids(ids_file, meta_file):
    """The entry's ids replaced by a link to a file of the user's, of the right size."""
    users = ids_file.parent.parent / "users_file.bin"
    users.write_bytes(bytes(range(256)) * (ids_file.stat().st_size // 256 + 1))
    os.truncate(users, ids_file.stat().st_size)
    ids_file.unlink()
    ids_file.symlink_to(users)


DAMAGES = {
    "an id out of range": set_byte(0xFF),
    "an id changed within range": set_byte(1, at=0),
    "ids appended": lambda ids_file, meta_file: ids_file.write_bytes(ids_file.read_bytes() + b"\x00"),
    "ids symlinked to a user's file": symlinked_ids,
    "a symbol replaced": edit_meta(lambda m: m["symbols"].__setitem__(-1, m["symbols"][-1] + 1)),
    "a symbol beyond U+10FFFF": edit_meta(lambda m: m["symbols"].__setitem__(-1, 0x110000)),
    "a surrogate symbol": edit_meta(lambda m: m["symbols"].__setitem__(-1, 0xD800)),
    "a symbol added": edit_meta(lambda m: m["symbols"].append(0x2603)),
    "the length shortened": edit_meta(lambda m: m.update(length=m["length"] - 1)),
    "the hash replaced": edit_meta(lambda m: m.update(sha256="0" * 64)),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_or_tampered_entry_is_found_when_opened_and_rebuilt(tmp_path, damage):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    symbols, ids = load_encoded(corpus, "utf-8", None)
    pristine = (symbols.copy(), np.array(ids))
    users = tmp_path / "users_file.bin"
    damage(*entry(tmp_path / BESIDE))
    users_before = users.read_bytes() if users.exists() else None
    symbols, ids = load_encoded(corpus, "utf-8", None)
    assert np.array_equal(symbols, pristine[0]) and np.array_equal(ids, pristine[1])
    ids_file, _ = entry(tmp_path / BESIDE)
    assert not ids_file.is_symlink()
    assert (users.read_bytes() if users.exists() else None) == users_before  # a link is replaced, not written through


def test_a_damaged_cache_does_not_crash_training_again_and_again(corpus, tmp_path):
    """The case as a user met it: one byte of the ids set to 0xff, then train.py, twice."""
    cache = tmp_path / "cache"
    load_encoded(corpus, "utf-8", str(cache))  # the first run's encoding
    set_byte(0xFF)(*entry(cache))
    (proc,) = finish(script("train.py", f"data.path={corpus}", *TINY, "train.max_iters=12", f"data.cache_dir={cache}",
                            f"hydra.run.dir={tmp_path / 'run'}"))
    assert_clean(proc)
    assert (tmp_path / "run" / "ckpt_last.npz").is_file()


def test_an_opened_entry_is_checked_without_reading_the_corpus(tmp_path, monkeypatch):
    """The checks on opening cost no pass over the corpus: an untouched entry is neither hashed nor encoded."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    load_encoded(corpus, "utf-8", None)
    monkeypatch.setattr(data_cache, "scan", lambda *a: pytest.fail("encoded again"))
    monkeypatch.setattr(data_cache, "file_sha256", lambda *a: pytest.fail("the corpus hashed again"))
    symbols, ids = load_encoded(corpus, "utf-8", None)
    assert "".join(map(chr, symbols[ids])) == TEXT


# -- interrupted encodings -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    """20 MB of text: encoding it takes long enough to be interrupted."""
    path = tmp_path_factory.mktemp("big") / "big.txt"
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz .,\n", np.uint8)
    path.write_bytes(letters[np.random.default_rng(0).integers(0, len(letters), 20_000_000, np.uint8)].tobytes())
    return path


def parts(cache: Path) -> list[Path]:
    """The temporary files of the atomic writes in cache (charrnn.files)."""
    return sorted(cache.glob(".*.tmp")) if cache.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_an_encoding_interrupted_by_a_signal_leaves_no_partial_file_for_good(big_corpus, tmp_path, sig):
    """SIGTERM: the temporary file is removed on the way out. kill -9: nothing can run, so the next start
    that opens the cache removes what a dead process left (and never a file a live one is writing)."""
    cache = tmp_path / "cache"
    common = [f"data.path={big_corpus}", f"data.cache_dir={cache}", *TINY, "train.batch_size=100000000"]
    proc = script("train.py", *common, f"hydra.run.dir={tmp_path / 'run'}", stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not parts(cache):
        assert proc.poll() is None and time.monotonic() < deadline, "no temporary file was ever seen"
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=HANG)
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + sig and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith("SIGTERM"), err
        assert parts(cache) == []
        return
    assert parts(cache), "kill -9 leaves its temporary file"
    (again,) = finish(script("train.py", *common, f"hydra.run.dir={tmp_path / 'again'}"), timeout=HANG)
    assert again.returncode == 2 and "fewer than one batch needs" in again.stderr, again.stderr  # it got past the cache
    assert parts(cache) == []


def test_only_a_killed_writers_leftovers_are_removed(tmp_path):
    """A temporary file of the entry's that its writer no longer holds was left by a killed process; one
    a live writer holds (locked), and any name not of the entry's, are left alone."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    load_encoded(corpus, "utf-8", None)
    cache = tmp_path / BESIDE
    ids_file, _ = entry(cache)
    left, live = (ids_file.with_name(f".{ids_file.name}.{tag}.tmp") for tag in ("a1b2c3", "x1y2z3"))
    others = [cache / "download.tmp", cache / f".other.txt.{'0' * 16}.ids.d4e5f6.tmp"]
    for path in (left, live, *others):
        path.write_bytes(b"partial")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        corpus.write_text(TEXT + "x")  # changed: the entry is encoded again
        symbols, ids = load_encoded(corpus, "utf-8", None)
    assert "".join(map(chr, symbols[ids])) == TEXT + "x"
    assert not left.exists() and live.exists() and all(path.exists() for path in others)


# -- names and places ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["n" * 250 + ".txt", "é" * 120 + ".txt"], ids=["250 characters", "240 bytes"])
def test_any_corpus_file_name_fits_the_cache(tmp_path, name):
    corpus = tmp_path / name
    corpus.write_text(TEXT)
    symbols, ids = load_encoded(corpus, "utf-8", str(tmp_path / "cache"))
    assert "".join(map(chr, symbols[ids])) == TEXT
    assert all(len(os.fsencode(p.name)) <= 255 for p in (tmp_path / "cache").iterdir())


def test_an_empty_cache_setting_means_the_default_place(corpus, tmp_path):
    """CHARRNN_DATA_CACHE= (set, empty) is not the current directory: the cache goes beside the corpus."""
    here = tmp_path / "here"
    here.mkdir()
    (proc,) = finish(script("train.py", f"data.path={corpus}", *TINY, "train.batch_size=100000",
                            f"hydra.run.dir={tmp_path / 'run'}", cwd=here, env={"CHARRNN_DATA_CACHE": ""}))
    assert proc.returncode == 2 and "fewer than one batch needs" in proc.stderr, proc.stderr
    assert list(here.iterdir()) == []
    assert list((corpus.parent / BESIDE).glob("*.ids"))


def test_a_corpus_that_changes_between_the_two_passes_is_named_in_one_line(tmp_path):
    """The second pass meets a symbol the first did not see: past the last one, or between two."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    symbols = scan(corpus, "utf-8").symbols
    for seen in (symbols[:-1], np.delete(symbols, 3)):
        with open(tmp_path / "ids.bin", "wb") as out, \
                pytest.raises(UserError, match=f"corpus file {corpus} changed while it was being encoded"):
            write_ids(corpus, "utf-8", seen, out)


def test_a_full_cache_directory_names_the_cache_setting(corpus, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "cache" / "x.ids"))

    monkeypatch.setattr(data_cache, "write_ids", full)
    with pytest.raises(UserError, match=r"cannot write the encoded corpus .*No space left on device.*data\.cache_dir"):
        load_encoded(corpus, "utf-8", str(tmp_path / "cache"))
    assert parts(tmp_path / "cache") == []
    # from the command line, with the file size limit of a quota: one line that names data.cache_dir
    (proc,) = finish(script("train.py", f"data.path={corpus}", *TINY, f"data.cache_dir={tmp_path / 'small'}",
                            f"hydra.run.dir={tmp_path / 'run'}",
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "data.cache_dir" in line and "hydra.run.dir" not in line, line
    assert not (tmp_path / "run").exists()


def test_a_file_that_reports_no_size_is_not_called_empty():
    with pytest.raises(UserError, match="/proc/cpuinfo") as refused:
        open_corpus(Path("/proc/cpuinfo"))
    assert "empty" not in str(refused.value) and "copy" in str(refused.value)
