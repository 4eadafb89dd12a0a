import json
import os

import numpy as np
import pytest

from charrnn.data import cache as data_cache
from charrnn.data.cache import BESIDE, load_encoded
from charrnn.errors import UserError


def text_of(symbols, ids) -> str:
    return "".join(map(chr, symbols[ids]))


def entry_files(cache):
    return sorted(cache.glob("*.ids")), sorted(cache.glob("*.json"))


def test_encoded_once_then_memory_mapped(tmp_path, monkeypatch):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n" * 10)
    symbols, ids = load_encoded(corpus, "utf-8", None)
    assert text_of(symbols, ids) == corpus.read_text()
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint8
    (ids_file,), (meta_file,) = entry_files(tmp_path / BESIDE)  # beside the corpus by default
    assert ids_file.stat().st_size == len(corpus.read_text())
    monkeypatch.setattr(data_cache, "scan", lambda *a: pytest.fail("encoded again"))
    monkeypatch.setattr(data_cache, "file_sha256", lambda *a: pytest.fail("hashed again"))
    again_symbols, again = load_encoded(corpus, "utf-8", None)
    assert isinstance(again, np.memmap) and np.array_equal(again, ids) and np.array_equal(again_symbols, symbols)


def test_each_encoding_has_its_own_entry(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("né\n")
    assert len(load_encoded(corpus, "utf-8", None)[1]) == 3
    assert len(load_encoded(corpus, "bytes", None)[1]) == 4
    assert len(entry_files(tmp_path / BESIDE)[0]) == 2


def test_a_changed_file_is_encoded_again_in_place(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc" * 10)
    load_encoded(corpus, "utf-8", None)
    corpus.write_text("xyz" * 10)  # the same size: only the content tells
    symbols, ids = load_encoded(corpus, "utf-8", None)
    assert text_of(symbols, ids) == "xyz" * 10
    assert [len(files) for files in entry_files(tmp_path / BESIDE)] == [1, 1]


def test_a_touched_file_is_hashed_not_encoded_again(tmp_path, monkeypatch):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc" * 10)
    load_encoded(corpus, "utf-8", None)
    os.utime(corpus, ns=(1, 1))
    monkeypatch.setattr(data_cache, "scan", lambda *a: pytest.fail("encoded again"))
    symbols, ids = load_encoded(corpus, "utf-8", None)
    assert text_of(symbols, ids) == "abc" * 10
    (meta_file,) = entry_files(tmp_path / BESIDE)[1]
    assert json.loads(meta_file.read_text())["stat"][1] == 1  # remembered: the next start hashes nothing


def corrupt_ids(ids_file, meta_file):
    ids_file.write_bytes(ids_file.read_bytes()[:-1])


def corrupt_meta(ids_file, meta_file):
    meta_file.write_text(meta_file.read_text()[:20])


def foreign_meta(ids_file, meta_file):
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "source": "/elsewhere/c.txt"}))


def wrong_dtype(ids_file, meta_file):
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "dtype": "uint16", "length": meta["length"] // 2}))


def unsorted_vocabulary(ids_file, meta_file):
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "symbols": meta["symbols"][::-1]}))


def missing_ids(ids_file, meta_file):
    ids_file.unlink()


@pytest.mark.parametrize("damage", [corrupt_ids, corrupt_meta, foreign_meta, wrong_dtype, unsorted_vocabulary,
                                    missing_ids])
def test_a_damaged_or_foreign_entry_is_rebuilt(tmp_path, damage):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcd" * 10)
    load_encoded(corpus, "utf-8", None)
    damage(*(files[0] for files in entry_files(tmp_path / BESIDE)))
    symbols, ids = load_encoded(corpus, "utf-8", None)
    assert text_of(symbols, ids) == "abcd" * 10
    assert not list((tmp_path / BESIDE).glob("*.part"))


@pytest.mark.parametrize("num_symbols,dtype", [(200, np.uint8), (300, np.uint16), (70_000, np.uint32)])
def test_ids_take_one_two_or_four_bytes_by_vocabulary_size(tmp_path, num_symbols, dtype):
    text = "".join(map(chr, range(0xE000, 0xE000 + num_symbols))) * 2  # past the surrogates (D800-DFFF)
    corpus = tmp_path / "c.txt"
    corpus.write_text(text, encoding="utf-8")
    symbols, ids = load_encoded(corpus, "utf-8", str(tmp_path / "cache"))
    assert ids.dtype == dtype and len(symbols) == num_symbols
    assert text_of(symbols, ids) == text
    (ids_file,), _ = entry_files(tmp_path / "cache")
    assert ids_file.stat().st_size == len(text) * np.dtype(dtype).itemsize


def test_a_corpus_directory_that_cannot_be_written_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc" * 10)
    (tmp_path / BESIDE).write_text("a file where the cache directory would go")  # mkdir fails, even for root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    symbols, ids = load_encoded(corpus, "utf-8", None)
    assert text_of(symbols, ids) == "abc" * 10
    assert [len(files) for files in entry_files(tmp_path / "xdg" / "charrnn")] == [1, 1]


def test_a_cache_dir_that_cannot_be_written_is_named(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc")
    with pytest.raises(UserError, match=f"cannot write the encoded corpus to {corpus}/sub; name a writable "
                                        f"directory with data.cache_dir=PATH"):
        load_encoded(corpus, "utf-8", str(corpus / "sub"))
