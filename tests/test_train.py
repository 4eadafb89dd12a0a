import json
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from charrnn.training import loop as trainer
from charrnn.checkpoint import load_checkpoint
from charrnn.errors import UserError
from charrnn.monitor.dashboard import VAL_DIR
from tests.conftest import HANG, REPO, TINY, StepClock, make_config


def run(corpus, tmp_path, *overrides):
    cfg = make_config([f"data.path={corpus}", *TINY, *overrides])
    return trainer.train(cfg, tmp_path / "run")


def test_training_writes_events_and_checkpoints_and_loss_falls(corpus, tmp_path):
    result = run(corpus, tmp_path, "train.max_iters=60", "optim.lr=0.03")
    run_dir = result.run_dir
    assert result.steps == 60
    events = EventAccumulator(str(run_dir), size_guidance={"histograms": 0}).Reload()
    assert "sample" in " ".join(events.Tags()["tensors"])
    val_events = EventAccumulator(str(run_dir / VAL_DIR)).Reload()
    val = [e.value for e in val_events.Scalars("loss")]
    assert [e.step for e in val_events.Scalars("loss")] == [0, 10, 20, 30, 40, 50, 60]
    # what the weights and gradients look like at each evaluation
    for name in ("Wxh", "Whh", "Why", "bh", "by"):
        assert [e.step for e in events.Histograms(f"weights/{name}")] == [0, 10, 20, 30, 40, 50, 60]
        assert len(events.Histograms(f"grads/{name}")) == 7
    whh = load_checkpoint(run_dir / "ckpt_last.npz").params["Whh"]
    assert events.Scalars("spectral_norm/Whh")[-1].value == pytest.approx(np.linalg.svd(whh)[1][0], rel=1e-6)
    assert val[-1] < 0.7 * val[0]   # a repetitive corpus is learned fast
    train_loss = [e.value for e in events.Scalars("loss")]
    assert train_loss[-1] < 0.7 * train_loss[0]
    ckpt = load_checkpoint(run_dir / "ckpt_last.npz")
    assert ckpt.progress["step"] == 60
    assert ckpt.params["Whh"].shape == (16, 16)
    assert "".join(chr(c) for c in ckpt.vocab) == "".join(sorted(set(corpus.read_text())))
    assert ckpt.config["model"]["hidden_size"] == 16
    assert (run_dir / "ckpt_best.npz").is_file() and (run_dir / "config.yaml").is_file()
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 60


class Recorder:
    """Wraps a backend and records the state it is handed at each step and the state_last it returned."""

    def __init__(self, backend):
        self.backend = backend
        self.calls = []

    def train_step(self, inputs, targets, state, lr, masks=None):
        result = self.backend.train_step(inputs, targets, state, lr, masks)
        self.calls.append((np.stack(state), np.stack(result.state_last)))
        return result

    def __getattr__(self, name):
        return getattr(self.backend, name)


@pytest.mark.parametrize("reset_state,model", [(False, ["model=rnn"]), (True, ["model=rnn"]),
                                               (False, ["model=lstm", "model.num_layers=2"])])
def test_hidden_state_carries_across_chunks_and_resets_at_epoch_end(corpus, tmp_path, monkeypatch, reset_state,
                                                                    model):
    recorders = []
    real = trainer.make_backend

    def recording(*args):
        recorders.append(Recorder(real(*args)))
        return recorders[-1]

    monkeypatch.setattr(trainer, "make_backend", recording)
    cfg = make_config([f"data.path={corpus}", *model, *TINY, "train.batch_size=16", "train.seq_length=64",
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


def test_wall_clock_budget_stops_training_and_anneals_the_learning_rate(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer.Trainer, "clock", staticmethod(StepClock(1 / 128)))  # 1/128 s a step
    result = run(corpus, tmp_path, "train.max_iters=1000000", "train.max_seconds=0.375", "optim.lr=0.01",
                 "train.min_lr=0.001")
    assert (result.steps, result.train_seconds) == (48, 0.375)
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
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=HANG)
    assert proc.returncode == 0, proc.stderr
    # each job's directory is named by its number and the values the sweep varies
    for job in ("0_optim-adam", "1_optim-sgd"):
        assert (out / job / "ckpt_last.npz").is_file()
        assert json.loads((out / job / "result.json").read_text())["steps"] == 5
    assert load_checkpoint(out / "1_optim-sgd" / "ckpt_last.npz").config["optim"]["name"] == "sgd"


BLOW_UP = ["optim=sgd", "optim.lr=1e38", "train.clip_mode=none", "train.lr_schedule=constant", "train.max_iters=30"]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_blow_up_stops_the_run_and_saves_nothing_new(corpus, tmp_path, backend):
    # SGD at 1e38: the first update overflows the weights, or leaves them so large that the next loss explodes
    with pytest.raises(UserError, match=r"^step [1-9]\d*: (the update made a weight or the optimizer state non-finite"
                                        r"|the loss has exploded|the loss is not finite) .*too high, "
                                        r"optim.lr=1e\+38 on unclipped gradients"):
        run(corpus, tmp_path, f"backend={backend}", "backend.device=cpu", *BLOW_UP)
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt_last.npz")
    assert ckpt.progress["step"] == 0 and all(np.isfinite(v).all() for v in ckpt.params.values())
    assert not (tmp_path / "run" / "result.json").exists()


class Poisoner:
    """Wraps a backend: at the given steps, hands it an h_prev holding a NaN, and checks that its
    weights and optimizer state are the same after the step as before."""

    def __init__(self, backend, steps):
        self.backend, self.steps, self.step, self.untouched = backend, steps, 0, []

    def train_step(self, inputs, targets, state, lr, masks=None):
        poisoned = self.step in self.steps
        if poisoned:
            state = tuple(s.copy() for s in state)
            state[0][0, 0, 0] = np.nan
            before = {**self.backend.export_params(), **self.backend.export_optimizer_state()}
        result = self.backend.train_step(inputs, targets, state, lr, masks)
        if poisoned:
            after = {**self.backend.export_params(), **self.backend.export_optimizer_state()}
            self.untouched.append(result.skipped and all(np.array_equal(after[k], before[k]) for k in before))
        self.step += 1
        return result

    def __getattr__(self, name):
        return getattr(self.backend, name)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_nonfinite_steps_are_skipped_counted_and_logged(corpus, tmp_path, monkeypatch, backend):
    poisoners = []
    real = trainer.make_backend
    monkeypatch.setattr(trainer, "make_backend", lambda *args: poisoners.append(
        Poisoner(real(*args), steps={0, 1, 2, 3, 4, 7, 8})) or poisoners[-1])
    result = run(corpus, tmp_path, f"backend={backend}", "backend.device=cpu", "train.nonfinite=skip",
                 "train.max_iters=20")
    assert result.steps == 20 and np.isfinite(result.val_loss)
    assert poisoners[0].untouched == [True] * 7
    events = EventAccumulator(str(result.run_dir)).Reload()
    assert [(e.step, e.value) for e in events.Scalars("steps/skipped")] == [(5, 5), (10, 7), (15, 7), (20, 7)]
    # the first log interval had no step that counted; the others average only the steps that did
    assert [e.step for e in events.Scalars("loss")] == [10, 15, 20]
    assert all(np.isfinite(e.value) for e in events.Scalars("loss"))
    # and the same poison stops a run that asks to stop, naming the step
    monkeypatch.setattr(trainer, "make_backend", lambda *args: Poisoner(real(*args), steps={3}))
    with pytest.raises(UserError, match=r"^step 3: the loss is not finite \(loss nan nats/char, gradient norm nan\), "
                                        r"so no update was made"):
        run(corpus, tmp_path / "stop", f"backend={backend}", "backend.device=cpu", "train.max_iters=20")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_vocabulary_of_thousands_of_characters_trains(tmp_path, backend):
    rng = np.random.default_rng(0)
    code_points = 0x4E00 + np.concatenate([np.arange(3000), rng.integers(0, 3000, 3000)])  # 3000 CJK ideographs
    path = tmp_path / "cjk.txt"
    path.write_text("".join(map(chr, code_points)), encoding="utf-8")
    result = run(path, tmp_path, f"backend={backend}", "backend.device=cpu", "train.max_iters=2")
    assert result.steps == 2 and np.log(3000) - 0.5 < result.val_loss < np.log(3000) + 0.5
    assert len(load_checkpoint(result.run_dir / "ckpt_last.npz").vocab) == 3000
