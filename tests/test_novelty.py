"""The novelty figure: the share of a sample's n-windows found verbatim in the train split."""

import numpy as np
import pytest

import charrnn
from charrnn.data import Vocab, split
from charrnn import novelty
from charrnn.novelty import NoveltyIndex, window_hashes
from tests.conftest import run_scripts
from tests.test_api import TEXT, tiny_checkpoint

TRAIN = "the cat sat on the mat and then the dog ran off with the hat. "
HELD_OUT = "a cat sat on a mat and then a dog ran off with a hat! "


def index(n=8):
    vocab = Vocab.from_corpus(np.array([ord(c) for c in TRAIN + HELD_OUT]), "utf-8")
    return NoveltyIndex(vocab.encode(TRAIN), vocab.encode(HELD_OUT), vocab, n)


def test_equal_windows_hash_alike_and_different_ones_apart():
    ids = np.array([1, 2, 3, 1, 2, 3, 1, 2, 4])
    hashes = window_hashes(ids, 3)
    assert len(hashes) == 7 and hashes[0] == hashes[3] and len(set(hashes.tolist())) == 4
    assert len(window_hashes(ids, 10)) == 0


def test_share_counts_windows_found_in_the_train_split():
    idx = index(n=8)
    assert idx.copied_share(idx.ids_of(TRAIN[5:40])) == 1.0
    # "sat on the mat" is in the train split; "a dog ran" is not: 8-windows of "the mat and a dog ran"
    sample = "the mat and a dog ran"
    windows = [sample[i:i + 8] for i in range(len(sample) - 7)]
    expected = np.mean([w in TRAIN for w in windows])
    assert 0 < expected < 1 and idx.copied_share(idx.ids_of(sample)) == pytest.approx(expected)
    assert idx.copied_share(idx.ids_of("short")) is None
    assert idx.copied_share(idx.ids_of("the cat sat on the m\x00t")) < 1   # a symbol outside the vocabulary


def test_describe_puts_the_sample_beside_held_out_text():
    idx = index(n=8)
    held_out = np.mean([HELD_OUT[i:i + 8] in TRAIN for i in range(len(HELD_OUT) - 7)])
    assert idx.describe(TRAIN[:30]) == (f"novelty: 100.0% of the sample's 8-character windows occur in the training "
                                        f"text (held-out text: {held_out:.1%})")
    assert idx.describe("cat") == "novelty: the sample is shorter than one 8-character window"


def test_sample_py_novelty_line(tmp_path):
    """sample.py novelty=true writes the sample to stdout as before (the API's text), the figure to stderr."""
    run = tiny_checkpoint(tmp_path / "run", "gru")
    [proc] = run_scripts(["sample.py", f"checkpoint={run}", "length=120", "seed=3", "novelty=true"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == charrnn.load(run).sample(length=120, seed=3) + "\n"
    vocab = Vocab.from_corpus(np.array([ord(c) for c in TEXT]), "utf-8")
    idx = NoveltyIndex(*split(vocab.encode(TEXT * 40), 0.1), vocab)
    assert proc.stderr.strip() == idx.describe(proc.stdout[:-1])


def test_the_index_is_the_same_built_block_by_block(monkeypatch):
    whole = index(n=8)
    whole.copied_share(whole.ids_of(TRAIN[:10]))
    monkeypatch.setattr(novelty, "BLOCK", 7)
    blocks = index(n=8)
    blocks.copied_share(blocks.ids_of(TRAIN[:10]))
    assert np.array_equal(blocks._known, whole._known) and len(whole._known) == len(TRAIN) - 7
