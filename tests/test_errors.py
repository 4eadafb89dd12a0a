import subprocess
import sys

import pytest

from charrnn import trainer
from charrnn.errors import UserError
from tests.conftest import REPO, TINY, make_config


@pytest.mark.parametrize("override,message", [
    ("train.batch_size=abc", "train.batch_size"),
    ("train.batch_size=0", "train.batch_size must be positive"),
    ("optim.lr=-1", "optim.lr must be positive"),
    ("model.hidden_size=-3", "model.hidden_size must be positive"),
    ("train.clip_mode=sometimes", "train.clip_mode='sometimes' is not one of norm, value, none"),
    ("data.val_fraction=1.5", "data.val_fraction must be between 0 and 1"),
    ("model.dtype=float16", "model.dtype"),
    ("optim.name=rmsprop", "unknown optimizer 'rmsprop'"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        make_config([override])


def test_corpus_shorter_than_one_batch(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("abcdefghij" * 5)
    cfg = make_config([f"data.path={path}", *TINY, "train.batch_size=8", "train.seq_length=16"])
    with pytest.raises(UserError, match="fewer than one batch"):
        trainer.train(cfg, tmp_path / "run")


@pytest.mark.parametrize("args,message", [
    (["data.path=/no/such/file.txt"], "corpus file /no/such/file.txt does not exist"),
    (["train.seq_length=0"], "train.seq_length must be positive"),
])
def test_entry_point_prints_one_line_and_exits_2(args, message):
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
