"""Every mistake a user can make ends in one line naming it and exit code 2, through the real entry
points; a bug keeps its traceback; a failed start writes nothing over an earlier run."""

import itertools
import os
import subprocess
import sys

import pytest

from charrnn.training import loop as trainer
from charrnn.checkpoint import load_checkpoint
from charrnn.errors import UserError
from tests.conftest import HANG, REPO, TINY, assert_user_error, make_config, run_scripts


@pytest.mark.parametrize("override,message", [
    ("train.batch_size=abc", "train.batch_size"),
    ("train.batch_size=0", "train.batch_size must be positive"),
    ("train.seq_length=0", "train.seq_length must be positive"),
    ("train.grad_clip=0", "train.grad_clip must be positive"),
    ("optim.lr=-1", "optim.lr must be positive"),
    ("optim.lr=inf", "optim.lr must be finite"),
    ("model.hidden_size=-3", "model.hidden_size must be positive"),
    ("model.num_layers=0", "model.num_layers must be positive"),
    ("model.cell=transformer", "model.cell='transformer' is not one of rnn, lstm, gru"),
    ("model.dropout=1", r"model.dropout must be in \[0, 1\), got 1.0$"),
    ("model.dropout=-0.1", r"model.dropout must be in \[0, 1\)"),
    ("train.clip_mode=sometimes", "train.clip_mode='sometimes' is not one of norm, value, none"),
    ("train.nonfinite=ignore", "train.nonfinite='ignore' is not one of stop, skip"),
    ("data.encoding=latin-1", "data.encoding='latin-1' is not one of utf-8, utf-8-replace, bytes"),
    ("data.val_fraction=1.5", "data.val_fraction must be in"),
    ("data.val_fraction=0", "data.val_fraction must be in"),
    ("model.dtype=float16", "model.dtype"),
    ("optim.name=rmsprop", "unknown optimizer 'rmsprop'"),
    ("+train.foo=1", "train.foo is not a config key"),
    ("data=text", "data.path needs a value: pass data.path=..."),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        make_config([override])


@pytest.mark.parametrize("overrides,message", [
    (["model=mingru", "model.activation=relu"], "model.activation='relu' is not one of none, g$"),
    (["model=minlstm", "model.norm=batch"], "model.norm='batch' is not one of none, rms, layer$"),
    (["model=mingru", "model.residual=maybe"], "invalid config at model.residual"),
    (["model=gru", "model.norm=rms"], r"model.norm=rms is an option of the parallel cells \(mingru, minlstm\), not of "
                                      "model.cell=gru: leave it out, or use model=mingru or model=minlstm$"),
    (["model.activation=g"], "model.activation=g is an option of the parallel cells"),
    (["model=lstm", "model.residual=true"], "model.residual=True is an option of the parallel cells"),
])
def test_bad_parallel_cell_options_name_the_key(overrides, message):
    with pytest.raises(UserError, match=message):
        make_config(overrides)


def bad_inputs(tmp_path) -> dict[str, tuple[list[str], str]]:
    """name: (the command after `python`, the message its one line must hold)."""
    files = {"ok.txt": b"to be or not to be\n" * 100, "empty.txt": b"", "latin1.txt": "café\n".encode("latin-1") * 100,
             "short.txt": b"abcdefghij" * 5, "no_val.txt": b"abcdefghij" * 20, "unreadable.txt": b"abc" * 1000}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "unreadable.txt").chmod(0)
    run_dirs = (tmp_path / f"run{i}" for i in itertools.count())  # cases run at once; each owns its directory

    def train(data_path, *args):
        return ["train.py", f"data.path={data_path}", *TINY, f"hydra.run.dir={next(run_dirs)}", *args]

    return {
        "missing corpus": (train(tmp_path / "none.txt"), f"corpus file {tmp_path / 'none.txt'} does not exist"),
        "corpus is a directory": (train(tmp_path), "is a directory"),
        "unreadable corpus": (train(tmp_path / "unreadable.txt"), "Permission denied"),
        "empty corpus": (train(tmp_path / "empty.txt"), "is empty"),
        "not UTF-8": (train(tmp_path / "latin1.txt"), "is not valid UTF-8 (byte offset 3); convert it, or pass "
                                                      "data.encoding=utf-8-replace"),
        "shorter than a batch": (train(tmp_path / "short.txt", "train.batch_size=8", "train.seq_length=16"),
                                 "the train split has 45 chars, fewer than one batch needs"),
        "val split too short": (train(tmp_path / "no_val.txt", "data.val_fraction=0.001"),
                                "the val split has 1 chars, too few to evaluate"),
        "unknown key": (train(tmp_path, "train.foo=1"), "train.foo is not a config key"),
        "unknown backend": (train(tmp_path, "backend=jax"), "backend=jax is not an option; choose backend= one of "
                                                             "numpy, torch"),
        "unknown optimizer": (train(tmp_path, "optim=rmsprop"), "optim=rmsprop is not an option"),
        "unknown clip mode": (train(tmp_path, "train.clip_mode=sometimes"), "train.clip_mode='sometimes'"),
        "wrong type": (train(tmp_path, "train.batch_size=abc"), "invalid config at train.batch_size"),
        "zero hidden size": (train(tmp_path, "model.hidden_size=0"), "model.hidden_size must be positive"),
        "a parallel cell's option on another": (train(tmp_path / "ok.txt", "model=gru", "model.norm=rms"),
                                                "model.norm=rms is an option of the parallel cells"),
        "negative lr": (train(tmp_path, "optim.lr=-0.1"), "optim.lr must be positive"),
        "val_fraction outside (0, 1)": (train(tmp_path, "data.val_fraction=1"), "data.val_fraction must be in"),
        "unparsable override": (train(tmp_path, "train.batch_size=[1,2"), "cannot parse the override"),
        "override without a key": (train(tmp_path, "=3"), "'=3' names no key; write key=value, as in "
                                                          "seed=3"),
        "unquoted run directory": (train(tmp_path, "train.resume=runs/model=lstm/2026-01-01_00-00-00"),
                                   "a value holding '=' must be quoted, as in "
                                   "'train.resume=\"runs/model=lstm/2026-01-01_00-00-00\"'"),
        "too big for memory": (train(tmp_path / "ok.txt", "model.hidden_size=10000000"), "out of memory; lower "
                                                                                          "model.hidden_size"),
        "run directory under /proc": (["train.py", f"data.path={tmp_path}", "hydra.run.dir=/proc/forbidden"],
                                      "cannot create /proc/forbidden: No such file or directory"),
        "run directory under a file": (["train.py", f"hydra.run.dir={tmp_path / 'empty.txt' / 'run'}"],
                                       "Not a directory; name a writable run directory with hydra.run.dir"),
        "sample: unknown key": (["sample.py", "checkpoint=x", "foo=1"], "foo is not a config key"),
        "sample: unknown backend": (["sample.py", "checkpoint=x", "backend=jax"], "backend=jax is not an option"),
        "sample: no checkpoint": (["sample.py", f"checkpoint={tmp_path / 'none.npz'}"], "does not exist"),
    }


# One of each kind by default; all of them with -m slow. The cases of a list run at once.
FAST = ["missing corpus", "not UTF-8", "shorter than a batch", "unknown key", "unknown backend",
        "zero hidden size", "run directory under /proc", "unquoted run directory", "sample: unknown key",
        "override without a key"]
MORE = ["corpus is a directory", "empty corpus", "val split too short", "unknown optimizer", "unknown clip mode",
        "wrong type", "negative lr", "val_fraction outside (0, 1)", "unparsable override",
        "run directory under a file", "too big for memory", "sample: unknown backend", "sample: no checkpoint",
        # root reads a file whatever its mode (test_data checks the message without a subprocess)
        *(["unreadable corpus"] if os.geteuid() != 0 else [])]


@pytest.mark.parametrize("names", [pytest.param(FAST, id="one-of-each"),
                                   pytest.param(MORE, id="the-rest", marks=pytest.mark.slow)])
def test_bad_input_ends_in_one_line_and_exit_code_2(tmp_path, names):
    cases = bad_inputs(tmp_path)
    for name, proc in zip(names, run_scripts(*(cases[name][0] for name in names))):
        assert proc.stdout == "", name
        assert_user_error(proc, cases[name][1])
    # a run refused at its start leaves no empty run directory behind (Hydra made one for it)
    assert not list(tmp_path.glob("run*")), [p.name for p in tmp_path.glob("run*")]


def test_a_bug_keeps_its_traceback(corpus, tmp_path):
    """An error that is nobody's mistake in particular is not squeezed into one line."""
    boom = ("import runpy, charrnn.training.loop as t; t.make_batchers = lambda *a: 1 / 0; "
            "runpy.run_path('train.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", boom, f"data.path={corpus}", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=HANG)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr


def test_a_failed_start_writes_nothing_over_an_earlier_run(corpus, tmp_path):
    run_dir = trainer.train(make_config([f"data.path={corpus}", *TINY, "train.max_iters=5"]), tmp_path / "run").run_dir
    saved = {p.name: p.read_bytes() for p in run_dir.glob("ckpt_*.npz")}
    into_it = f"hydra.run.dir={run_dir}"
    fresh, bad_value, bad_corpus = run_scripts(
        ["train.py", f"data.path={corpus}", *TINY, into_it],
        ["train.py", f"data.path={corpus}", *TINY, "model.hidden_size=0", into_it],
        ["train.py", f"data.path={tmp_path / 'none.txt'}", *TINY, into_it])
    # after them: it would find the directory locked by the first
    (blown_up,) = run_scripts(
        # resumed, then a learning rate that overflows the weights on the first update
        ["train.py", f"train.resume={run_dir}", "train.max_iters=50", "optim.lr=1e38", "train.lr_schedule=constant",
         "train.clip_mode=none", f"hydra.run.dir={tmp_path / 'hydra'}"])
    assert_user_error(fresh, f"{run_dir} already holds a run (ckpt_best.npz, ckpt_last.npz); continue it with "
                             f"train.resume={run_dir}")
    assert_user_error(bad_value, "model.hidden_size must be positive")
    assert_user_error(bad_corpus, "does not exist")
    assert_user_error(blown_up, f"likely cause: a learning rate too high, optim.lr=1e+38 on unclipped gradients: "
                                f"lower it, or clip (train.clip_mode=norm); nothing new was saved, "
                                f"{run_dir / 'ckpt_last.npz'} holds the last good state", alone=False)
    assert "Warning" not in blown_up.stderr  # NumPy's overflow warnings do not bury that line
    assert {p.name: p.read_bytes() for p in run_dir.glob("ckpt_*.npz")} == saved
    assert load_checkpoint(run_dir / "ckpt_last.npz").progress["step"] == 5
