from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from charrnn.config import to_config

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
REPO = Path(__file__).resolve().parents[1]


def compose_raw(overrides=(), config_name="train"):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def make_config(overrides=()):
    return to_config(compose_raw(overrides))


@pytest.fixture
def corpus(tmp_path):
    """A small repetitive corpus (learnable in a few steps) written to a temp file; returns its path."""
    text = "the quick brown fox jumps over the lazy dog.\n" * 120
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


# Tiny sizes: each run finishes in well under a second of compute.
TINY = ["model.hidden_size=16", "train.batch_size=4", "train.seq_length=8", "train.eval_interval=10",
        "train.log_interval=5", "train.sample_length=20", "train.warmup_iters=0"]
