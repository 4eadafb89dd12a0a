import json
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from charrnn import trainer
from charrnn.checkpoint import load_checkpoint
from tests.conftest import REPO, TINY, make_config


def run(corpus, tmp_path, *overrides):
    cfg = make_config([f"data.path={corpus}", *TINY, *overrides])
    return trainer.train(cfg, tmp_path / "run")


def test_training_writes_events_and_checkpoints_and_loss_falls(corpus, tmp_path):
    result = run(corpus, tmp_path, "train.max_iters=60", "optim.lr=0.03")
    run_dir = result.run_dir
    assert result.steps == 60
    events = EventAccumulator(str(run_dir)).Reload()
    tags = events.Tags()["scalars"]
    for tag in ("loss/train", "loss/train_smooth", "loss/val", "bpc/val", "grad_norm/global",
                "grad_norm/global_clipped", "grad_norm/Whh", "grad_norm_clipped/Whh",
                "grad_norm/clipped_fraction", "lr", "throughput/chars_per_sec"):
        assert tag in tags, tag
    assert "sample" in " ".join(events.Tags()["tensors"])
    val = [e.value for e in events.Scalars("loss/val")]
    assert [e.step for e in events.Scalars("loss/val")] == [0, 10, 20, 30, 40, 50, 60]
    assert val[-1] < 0.7 * val[0]   # a repetitive corpus is learned fast
    train_loss = [e.value for e in events.Scalars("loss/train")]
    assert train_loss[-1] < 0.7 * train_loss[0]
    ckpt = load_checkpoint(run_dir / "ckpt_last.npz")
    assert ckpt.state["step"] == 60
    assert ckpt.params["Whh"].shape == (16, 16)
    assert "".join(chr(c) for c in ckpt.vocab) == "".join(sorted(set(corpus.read_text())))
    assert ckpt.config["model"]["hidden_size"] == 16
    assert (run_dir / "ckpt_best.npz").is_file() and (run_dir / "config.yaml").is_file()
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 60


class Recorder:
    """Wraps a backend and records the h_prev it is handed at each step and the h_last it returned."""

    def __init__(self, backend):
        self.backend = backend
        self.calls = []

    def train_step(self, inputs, targets, h_prev, lr):
        result = self.backend.train_step(inputs, targets, h_prev, lr)
        self.calls.append((h_prev.copy(), result.h_last.copy()))
        return result

    def __getattr__(self, name):
        return getattr(self.backend, name)


@pytest.mark.parametrize("reset_state", [False, True])
def test_hidden_state_carries_across_chunks_and_resets_at_epoch_end(corpus, tmp_path, monkeypatch, reset_state):
    recorders = []
    real = trainer.make_backend

    def recording(cfg, params):
        recorders.append(Recorder(real(cfg, params)))
        return recorders[-1]

    monkeypatch.setattr(trainer, "make_backend", recording)
    cfg = make_config([f"data.path={corpus}", *TINY, "train.batch_size=16", "train.seq_length=64",
                       f"train.reset_state={reset_state}", "train.max_iters=12", "train.eval_interval=100"])
    train_chunks = len(trainer.make_batchers(cfg, np.zeros(len(corpus.read_text()), int))[0])
    assert train_chunks < 12  # the run crosses an epoch boundary
    trainer.train(cfg, tmp_path / "run")
    calls = recorders[0].calls
    for step, (h_prev, _) in enumerate(calls):
        if reset_state or step % train_chunks == 0:
            assert not h_prev.any(), step
        else:
            assert np.array_equal(h_prev, calls[step - 1][1]), step


def test_wall_clock_budget_stops_training_and_anneals_the_learning_rate(corpus, tmp_path):
    result = run(corpus, tmp_path, "train.max_iters=1000000", "train.max_seconds=0.3", "optim.lr=0.01",
                 "train.min_lr=0.001")
    assert 0 < result.steps < 1000000
    assert result.train_seconds >= 0.3
    lrs = [e.value for e in EventAccumulator(str(result.run_dir)).Reload().Scalars("lr")]
    assert lrs[0] > 0.009 and lrs[-1] < 0.002  # the cosine followed the clock, not the step budget


def test_min_char_rnn_experiment_reproduces_the_original_settings():
    cfg = make_config(["experiment=min_char_rnn"])
    assert (cfg.model.hidden_size, cfg.train.seq_length, cfg.train.batch_size) == (100, 25, 1)
    assert (cfg.optim.name, cfg.optim.lr) == ("adagrad", 0.1)
    assert (cfg.train.clip_mode, cfg.train.grad_clip, cfg.train.loss_reduction) == ("value", 5.0, "sum")
    assert (cfg.model.init, cfg.model.init_std) == ("normal", 0.01)


def test_train_py_runs_from_the_command_line_and_multirun_sweeps(corpus, tmp_path):
    out = tmp_path / "sweep"
    cmd = [sys.executable, "train.py", "-m", f"data.path={corpus}", *TINY, "train.max_iters=5",
           "optim=adam,sgd", f"hydra.sweep.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for job in ("0", "1"):
        assert (out / job / "ckpt_last.npz").is_file()
        assert json.loads((out / job / "result.json").read_text())["steps"] == 5
    assert load_checkpoint(out / "1" / "ckpt_last.npz").config["optim"]["name"] == "sgd"
