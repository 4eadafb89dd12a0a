import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from charrnn.config import DataConfig
from charrnn.data import Vocab, load_ids, split
from charrnn.errors import UserError

SHARED = Path(os.environ.get("CHARRNN_TINYSHAKESPEARE",
                           Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare/input.txt"))


def data_cfg(**kw):
    base = dict(name="text", path=None, download_path=None, url=None, sha256=None, val_fraction=0.1,
                encoding="utf-8", cache_dir=os.environ["CHARRNN_DATA_CACHE"])
    return DataConfig(**{**base, **kw})


def load_corpus(cfg) -> np.ndarray:
    """The corpus's symbols, through its ids and vocabulary."""
    vocab, ids = load_ids(cfg)
    return vocab.symbols[ids]


def text_of(symbols) -> str:
    return "".join(map(chr, symbols))


def test_vocab_is_sorted_code_points_and_round_trips(tmp_path):
    text = "héllo wörld ✓\n"
    (tmp_path / "c.txt").write_text(text, encoding="utf-8")
    corpus = load_corpus(data_cfg(path=str(tmp_path / "c.txt")))
    vocab = Vocab.from_corpus(corpus, "utf-8")
    assert text_of(vocab.symbols) == "".join(sorted(set(text)))
    ids = vocab.ids(corpus)
    assert vocab.decode(ids) == text and np.array_equal(vocab.encode(text), ids)
    assert vocab.decode([]) == ""
    with pytest.raises(UserError, match="not in the vocabulary: 'z'"):
        vocab.encode("zz")
    assert vocab.unknown("hé zz") == ["z"]


RAW = "café ✓".encode() + b" \xff!"  # two multi-byte characters and a byte that is not UTF-8


def test_byte_vocabulary_reads_any_file_and_decodes_what_it_can(tmp_path):
    (tmp_path / "c.bin").write_bytes(RAW)
    corpus = load_corpus(data_cfg(path=str(tmp_path / "c.bin"), encoding="bytes"))
    assert list(corpus) == list(RAW)
    vocab = Vocab.from_corpus(corpus, "bytes")
    assert vocab.is_bytes and len(vocab) == len(set(RAW))
    assert vocab.decode(vocab.ids(corpus)) == "café ✓ \\xff!"
    # text goes in as its UTF-8 bytes, and a character comes out once its last byte is there
    assert list(vocab.decode_stream(vocab.encode("é✓"))) == ["", "é", "", "", "✓", ""]
    assert vocab.unknown("éè") == ["è"]  # è is c3 a8: a8 is not in the corpus
    with pytest.raises(UserError, match=r"not in the vocabulary: b'\\xa8'"):
        vocab.encode("è")


def test_invalid_utf8_is_refused_naming_the_offset_or_replaced(tmp_path):
    (tmp_path / "c.txt").write_bytes(RAW)
    with pytest.raises(UserError, match="not valid UTF-8 \\(byte offset 10\\).*data.encoding=utf-8-replace.*"
                                        "data.encoding=bytes"):
        load_corpus(data_cfg(path=str(tmp_path / "c.txt")))
    assert text_of(load_corpus(data_cfg(path=str(tmp_path / "c.txt"), encoding="utf-8-replace"))) == "café ✓ \ufffd!"


def test_split_is_contiguous_with_validation_last():
    ids = np.arange(1000)
    train, val = split(ids, 0.1)
    assert len(train) == 900 and np.array_equal(np.concatenate([train, val]), ids)


@pytest.mark.skipif(not SHARED.exists(), reason="Tiny Shakespeare not available here")
def test_tinyshakespeare_split_matches_nanogpt():
    corpus = load_corpus(data_cfg(path=str(SHARED)))
    vocab = Vocab.from_corpus(corpus, "utf-8")
    train, val = split(vocab.ids(corpus), 0.1)
    assert (len(corpus), len(vocab), len(train), len(val)) == (1115394, 65, 1003854, 111540)


def test_download_verifies_checksum_and_writes_the_file(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("to be or not to be\n")
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "cache" / "input.txt"
    cfg = data_cfg(download_path=str(target), url=source.as_uri(), sha256=good)
    assert text_of(load_corpus(cfg)) == "to be or not to be\n"
    assert target.read_text() == "to be or not to be\n"


def test_download_with_wrong_checksum_leaves_nothing(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("not the corpus\n")
    target = tmp_path / "cache" / "input.txt"
    cfg = data_cfg(download_path=str(target), url=source.as_uri(), sha256="0" * 64)
    with pytest.raises(UserError, match="sha256"):
        load_corpus(cfg)
    assert not target.exists()


def test_failed_download_says_how_to_place_the_file(tmp_path):
    target = tmp_path / "input.txt"
    cfg = data_cfg(download_path=str(target), url=(tmp_path / "nowhere.txt").as_uri(), sha256=None)
    with pytest.raises(UserError, match="data.path="):
        load_corpus(cfg)


@pytest.mark.parametrize("content,message", [(b"", "empty"), (b"ok \xff\xfe bad", "byte offset 3")])
def test_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_corpus(data_cfg(path=str(path)))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_corpus(data_cfg(path=str(tmp_path / "missing.txt")))
    with pytest.raises(UserError, match="directory"):
        load_corpus(data_cfg(path=str(tmp_path)))


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "locked.txt"
    path.write_text("abc")

    def refuse(self, *args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)  # chmod 000 stops no root
    with pytest.raises(UserError, match=f"cannot read corpus file {path}: Permission denied; pass a readable file"):
        load_corpus(data_cfg(path=str(path)))
