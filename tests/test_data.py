import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from charrnn.config import DataConfig
from charrnn.data import Vocab, load_text, split
from charrnn.errors import UserError

SHARED = Path(os.environ.get("CHARRNN_TINYSHAKESPEARE",
                           Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare/input.txt"))


def data_cfg(**kw):
    base = dict(name="text", path=None, download_path=None, url=None, sha256=None, val_fraction=0.1)
    return DataConfig(**{**base, **kw})


def test_vocab_is_sorted_code_points_and_round_trips():
    text = "héllo wörld ✓\n"
    vocab = Vocab.from_text(text)
    assert vocab.chars == sorted(set(text))
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert vocab.decode([]) == ""
    with pytest.raises(UserError, match="'z'"):
        vocab.encode("zz")


def test_split_is_contiguous_with_validation_last():
    ids = np.arange(1000)
    train, val = split(ids, 0.1)
    assert len(train) == 900 and np.array_equal(np.concatenate([train, val]), ids)


@pytest.mark.skipif(not SHARED.exists(), reason="Tiny Shakespeare not available here")
def test_tinyshakespeare_split_matches_nanogpt():
    text = load_text(data_cfg(path=str(SHARED)))
    vocab = Vocab.from_text(text)
    train, val = split(vocab.encode(text), 0.1)
    assert (len(text), len(vocab), len(train), len(val)) == (1115394, 65, 1003854, 111540)


def test_download_verifies_checksum_and_writes_the_file(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("to be or not to be\n")
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "cache" / "input.txt"
    cfg = data_cfg(download_path=str(target), url=source.as_uri(), sha256=good)
    assert load_text(cfg) == "to be or not to be\n"
    assert target.read_text() == "to be or not to be\n"


def test_download_with_wrong_checksum_leaves_nothing(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("not the corpus\n")
    target = tmp_path / "cache" / "input.txt"
    cfg = data_cfg(download_path=str(target), url=source.as_uri(), sha256="0" * 64)
    with pytest.raises(UserError, match="sha256"):
        load_text(cfg)
    assert not target.exists()


def test_failed_download_says_how_to_place_the_file(tmp_path):
    target = tmp_path / "input.txt"
    cfg = data_cfg(download_path=str(target), url=(tmp_path / "nowhere.txt").as_uri(), sha256=None)
    with pytest.raises(UserError, match="data.path="):
        load_text(cfg)


@pytest.mark.parametrize("content,message", [(b"", "empty"), (b"ok \xff\xfe bad", "byte offset 3")])
def test_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_text(data_cfg(path=str(path)))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_text(data_cfg(path=str(tmp_path / "missing.txt")))
    with pytest.raises(UserError, match="directory"):
        load_text(data_cfg(path=str(tmp_path)))
