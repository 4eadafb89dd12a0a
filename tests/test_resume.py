import os
import random
import shlex
import signal
import subprocess
import sys
import time
import weakref

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

import charrnn
from charrnn.training import loop as trainer
from charrnn.checkpoint import load_checkpoint, save_checkpoint
from charrnn.commandline import override
from charrnn.errors import UserError
from charrnn import signals
from charrnn.signals import StopRequest, Stopped
from charrnn.monitor import Monitor
from charrnn.monitor.dashboard import VAL_DIR
from charrnn.start import run_config
from tests.conftest import HANG, REPO, TINY, compose_raw, make_config

# float64 so that the NumPy backend can be held to bit-identical results. 16 streams of 32 make 10
# chunks per epoch, so 40 steps cross three epoch boundaries (where the carried state resets).
EXACT = [*TINY, "model.dtype=float64", "train.batch_size=16", "train.seq_length=32", "train.max_iters=40",
         "train.eval_interval=10", "train.log_interval=5", "optim.lr=0.01"]


@pytest.fixture
def losses(monkeypatch):
    """(step, loss) of every training step, in order, over all the runs a test makes."""
    record = []
    real = Monitor.step

    def step(self, step, result, *args, **kwargs):
        record.append((step, result.loss))
        real(self, step, result, *args, **kwargs)

    monkeypatch.setattr(Monitor, "step", step)
    return record


def signal_after(monkeypatch, last_step, sig):
    """Send this process `sig` as training step last_step is logged, as Ctrl-C would mid-run."""
    real = Monitor.step

    def step(self, step, result, *args, **kwargs):
        real(self, step, result, *args, **kwargs)
        if step == last_step:
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(Monitor, "step", step)


def curves(run_dir):
    """Every TensorBoard scalar as [(step, value)] (wall-clock ones left out), the val run's under val/TAG,
    and the samples by step."""
    wall_clock = ("throughput/chars_per_sec", "run/chars_per_sec", "run/train_seconds")
    scalars = {}
    for prefix, log_dir in (("", run_dir), (f"{VAL_DIR}/", run_dir / VAL_DIR)):
        events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0}).Reload()
        scalars.update({prefix + tag: [(e.step, e.value) for e in events.Scalars(tag)]
                        for tag in events.Tags()["scalars"] if tag not in wall_clock})
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0}).Reload()
    samples = {e.step: e.tensor_proto.string_val[0] for e in events.Tensors("sample/text_summary")}
    return scalars, samples


LSTM_DROPOUT = ["model=lstm", "model.num_layers=2", "model.dropout=0.3", "model.hidden_size=8"]
MINGRU_DROPOUT = ["model=mingru", "model.num_layers=2", "model.dropout=0.3", "model.hidden_size=8"]


@pytest.mark.parametrize("backend,stop,at,model", [
    ("numpy", "signal", 23, []),     # mid log interval, mid epoch, carried state non-zero
    ("numpy", "signal", 20, []),     # at an evaluation step that the stopped run did not reach
    ("numpy", "max_iters", 23, []),  # the first run's extra final evaluation must not be repeated
    ("numpy", "max_iters", 20, []),  # ... nor the regular one it resumes at
    ("torch", "signal", 23, []),
    ("numpy", "signal", 23, LSTM_DROPOUT),   # (h, c) of two layers carried, dropout masks drawn again
    ("numpy", "signal", 23, MINGRU_DROPOUT),
    ("torch", "signal", 23, MINGRU_DROPOUT),
])
def test_stopped_and_resumed_run_matches_an_unbroken_one(corpus, tmp_path, monkeypatch, losses, backend, stop, at,
                                                         model):
    if backend == "torch":
        pytest.importorskip("charrnn.backends.torch_backend")
    config = [f"data.path={corpus}", f"backend={backend}", *EXACT, *model]
    trainer.train(make_config(config), tmp_path / "unbroken")
    unbroken_losses = losses[:]
    losses.clear()

    with monkeypatch.context() as m:
        if stop == "signal":
            signal_after(m, at - 1, signal.SIGINT)
            first = trainer.train(make_config(config), tmp_path / "resumed")
            assert first.stopped_by == signal.SIGINT
            # What a run killed after its last checkpoint leaves: curves past the step it resumes at.
            for log_dir in (tmp_path / "resumed", tmp_path / "resumed" / VAL_DIR):
                with SummaryWriter(str(log_dir)) as w:
                    for step in range(at + 1, 40):
                        w.add_scalar("loss", 99.0, step)
        else:
            first = trainer.train(make_config([*config, f"train.max_iters={at}", "train.lr_decay_iters=40"]),
                                  tmp_path / "resumed")
    assert first.steps == at
    resumed = trainer.train(make_config([*config, f"train.resume={tmp_path / 'resumed'}"]), tmp_path / "new")
    assert resumed.run_dir == tmp_path / "resumed" and not (tmp_path / "new").exists()
    assert resumed.steps == 40 and resumed.stopped_by is None

    # the per-step loss curve: bit for bit on NumPy in float64, to round-off on torch
    assert [s for s, _ in losses] == [s for s, _ in unbroken_losses] == list(range(40))
    tolerance = 0 if backend == "numpy" else 1e-12
    assert np.abs(np.array(losses) - np.array(unbroken_losses)).max() <= tolerance

    # TensorBoard: each step once, the same points as the unbroken run (plus the first run's final
    # evaluation when it stopped at max_iters between evaluation steps), the same samples
    got, got_samples = curves(tmp_path / "resumed")
    want, want_samples = curves(tmp_path / "unbroken")
    assert got.keys() == want.keys()
    extra = {at} if stop == "max_iters" and at % 10 else set()
    for tag, points in got.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), tag
        kept = [p for p in points if p[0] not in extra]
        assert [s for s, _ in kept] == [s for s, _ in want[tag]], tag
        assert np.allclose([v for _, v in kept], [v for _, v in want[tag]], rtol=1e-6, atol=0), tag
    assert {s: t for s, t in got_samples.items() if s not in extra} == want_samples
    assert got_samples.keys() - want_samples.keys() == extra

    # the final checkpoints: weights, optimizer state, carried state and progress
    a, b = load_checkpoint(tmp_path / "unbroken" / "ckpt_last.npz"), load_checkpoint(tmp_path / "resumed" / "ckpt_last.npz")
    for k in a.params:
        assert np.abs(a.params[k] - b.params[k]).max() <= tolerance, k
    for k in a.optimizer_state:
        assert np.abs(a.optimizer_state[k] - b.optimizer_state[k]).max() <= tolerance, k
    assert a.state.keys() == b.state.keys() == {"h", *(["c"] if model == LSTM_DROPOUT else [])}
    for k in a.state:
        assert np.abs(a.state[k] - b.state[k]).max() <= tolerance, k
    for k in ("step", "epoch", "chunk", "eval_step"):
        assert a.progress[k] == b.progress[k], k
    assert a.progress["monitor"]["smooth_loss"] == pytest.approx(b.progress["monitor"]["smooth_loss"], abs=tolerance)


def trained(corpus, tmp_path, *overrides):
    """A finished 10-step run; returns its directory."""
    return trainer.train(make_config([f"data.path={corpus}", *TINY, "train.max_iters=10", *overrides]),
                         tmp_path / "run").run_dir


def test_resume_continues_the_saved_config_with_command_line_overrides(corpus, tmp_path):
    run_dir = trained(corpus, tmp_path, "model.hidden_size=12", "optim=sgd")
    overrides = [f"train.resume={run_dir}", "train.max_iters=30", "optim.lr=0.5"]
    cfg = run_config(compose_raw(overrides), overrides)
    assert cfg.data.path == str(corpus)                        # saved, though the defaults say tinyshakespeare
    assert (cfg.model.hidden_size, cfg.optim.name) == (12, "sgd")
    assert (cfg.train.max_iters, cfg.optim.lr, cfg.train.resume) == (30, 0.5, str(run_dir))
    assert cfg.train.lr_decay_iters == 10                      # the saved schedule, resolved when it started
    with pytest.raises(UserError, match="experiment=min_char_rnn does not name one config key"):
        run_config(compose_raw([*overrides, "experiment=min_char_rnn"]),
                       [*overrides, "experiment=min_char_rnn"])


@pytest.mark.parametrize("overrides,message", [
    (["model.hidden_size=32"], r"do not fit model.hidden_size=32"),
    (["train.batch_size=8"], r"train.batch_size=8 \(checkpoint: 4\)"),
    (["optim=sgd"], r"optim.name=sgd \(checkpoint: adam\)"),
    (["train.max_iters=10"], r"nothing to resume: .* step 10"),
])
def test_resume_refuses_a_changed_shape_or_a_finished_run(corpus, tmp_path, overrides, message):
    run_dir = trained(corpus, tmp_path)
    cfg = make_config([f"data.path={corpus}", *TINY, "train.max_iters=20", f"train.resume={run_dir}", *overrides])
    with pytest.raises(UserError, match=message):
        trainer.train(cfg, tmp_path / "new")


def test_resume_refuses_another_vocabulary(corpus, tmp_path):
    run_dir = trained(corpus, tmp_path)
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text().replace("q", "Q") + "zebra!\n")
    cfg = make_config([f"data.path={other}", *TINY, "train.max_iters=20", f"train.resume={run_dir}"])
    with pytest.raises(UserError, match=r"vocabulary differs .*new: '!Q', gone: 'q'"):
        trainer.train(cfg, tmp_path / "new")


def test_resume_refuses_a_checkpoint_without_progress(corpus, tmp_path):
    run_dir = trained(corpus, tmp_path)
    ckpt = load_checkpoint(run_dir / "ckpt_last.npz")
    ckpt.progress = {"step": ckpt.progress["step"]}  # as written before exact resume
    save_checkpoint(run_dir / "ckpt_last.npz", ckpt)
    cfg = make_config([f"data.path={corpus}", *TINY, "train.max_iters=20", f"train.resume={run_dir}"])
    with pytest.raises(UserError, match="cannot be resumed: its progress lacks epoch, chunk"):
        trainer.train(cfg, tmp_path / "new")


def test_a_checkpoint_from_before_encodings_and_skipped_steps_resumes_and_samples(corpus, tmp_path):
    run_dir = trained(corpus, tmp_path)
    ckpt = load_checkpoint(run_dir / "ckpt_last.npz")
    del ckpt.config["data"]["encoding"], ckpt.config["train"]["nonfinite"], ckpt.progress["monitor"]["skipped_steps"]
    save_checkpoint(run_dir / "ckpt_last.npz", ckpt)
    result = trainer.train(make_config([f"data.path={corpus}", *TINY, "train.max_iters=15", f"train.resume={run_dir}"]),
                           tmp_path / "new")
    assert result.steps == 15
    resumed = load_checkpoint(run_dir / "ckpt_last.npz").config
    assert (resumed["data"]["encoding"], resumed["train"]["nonfinite"]) == ("utf-8", "stop")


def test_a_signal_asks_to_stop_and_a_second_one_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler runs as soon as the signal arrives
    assert signal.getsignal(signal.SIGINT) is before


def test_a_signal_whose_stop_python_dropped_stops_the_run_when_training_would_begin(monkeypatch):
    """Python drops an exception raised inside a weakref callback (every import runs one, on its module
    lock), printing it as ignored: a Ctrl-C then must not be lost with its Stopped."""
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)

    class Thing:
        pass

    def interrupted_inside_callback(_):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0)

    with StopRequest(immediate=True) as stop:
        thing = Thing()
        ref = weakref.ref(thing, interrupted_inside_callback)
        del thing
        assert ref() is None and [type(d.exc_value) for d in dropped] == [Stopped]
        with pytest.raises(Stopped, match=f"^{int(signal.SIGINT)}$"):
            stop.begin_training()


def test_a_ctrl_c_python_dropped_before_the_run_began_stops_it(monkeypatch):
    monkeypatch.setattr(signals, "_interrupted", True)  # as quiet_keyboard_interrupt's handler records one
    with pytest.raises(Stopped, match=f"^{int(signal.SIGINT)}$"):
        with StopRequest(immediate=True):
            pass
    with StopRequest() as stop:
        assert stop.signal == signal.SIGINT


def wait_for(path, proc, timeout=HANG):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_sigint_and_sigterm_save_flush_and_print_the_resume_command(corpus, tmp_path):
    runs = {}
    for sig in (signal.SIGINT, signal.SIGTERM):  # both at once: most of each run is starting Python
        run_dir = tmp_path / f"{sig.name} it's"  # the printed command must survive a shell
        cmd = [sys.executable, "train.py", f"data.path={corpus}", *TINY, "train.max_iters=1000000",
               "train.eval_interval=50", *shlex.split(override("hydra.run.dir", run_dir))]
        runs[sig] = (subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
                     run_dir)
    for sig, (proc, run_dir) in runs.items():
        wait_for(run_dir / "ckpt_last.npz", proc)
        time.sleep(0.3)
        proc.send_signal(sig)
    for sig, (proc, run_dir) in runs.items():
        _, err = proc.communicate(timeout=HANG)
        assert proc.returncode == 128 + sig, err
        assert "Traceback" not in err
        message = err.strip().splitlines()[-1]
        assert message.startswith(f"{sig.name}: saved step ")
        command = shlex.split(message.split("resume with: ")[1])
        assert command[:2] == ["python", "train.py"] and compose_raw(command[2:]).train.resume == str(run_dir)
        state = load_checkpoint(run_dir / "ckpt_last.npz").progress
        assert state["step"] > 0 and f"step {state['step']} " in message
        # TensorBoard was flushed: the train curve reaches the last full log interval before the stop
        events = EventAccumulator(str(run_dir)).Reload()
        logged = events.Tags()["scalars"]
        train_steps = [e.step for e in events.Scalars("loss")] if "loss" in logged else [0]
        assert train_steps[-1] == state["step"] - state["step"] % 5


@pytest.mark.slow
def test_sigterm_resume_sigkill_resume_from_the_command_line_matches_an_unbroken_run(corpus, tmp_path):
    options = [f"data.path={corpus}", *EXACT, "train.max_iters=1500", "train.eval_interval=50", "train.log_interval=1"]
    run_dir = tmp_path / "run"

    def start(*args, hydra_dir):
        return subprocess.Popen([sys.executable, "train.py", *args, f"hydra.run.dir={hydra_dir}"], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def steps_done():
        return load_checkpoint(run_dir / "ckpt_last.npz").progress["step"]

    # started with options, stopped by SIGTERM: it prints the command that resumes it
    proc = start(*options, hydra_dir=run_dir)
    wait_for(run_dir / "ckpt_last.npz", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 128 + signal.SIGTERM, err
    resume_command = shlex.split(err.strip().splitlines()[-1].split("resume with: ")[1])
    assert resume_command == ["python", "train.py", f"train.resume={run_dir}"]  # a plain path needs no quotes
    stopped_at = steps_done()

    # that command (options come from the checkpoint), killed outright once it has checkpointed again
    proc = start(*resume_command[2:], hydra_dir=tmp_path / "hydra1")
    while proc.poll() is None and steps_done() == stopped_at:
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.3))
    proc.kill()
    proc.wait()
    assert steps_done() < 1500

    # and again, to the end
    proc = start(*resume_command[2:], hydra_dir=tmp_path / "hydra2")
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, err

    trainer.train(make_config(options), tmp_path / "unbroken")
    got, got_samples = curves(run_dir)
    want, want_samples = curves(tmp_path / "unbroken")
    assert got["loss"] == want["loss"] and [s for s, _ in got["loss"]] == list(range(1, 1501))
    assert got["val/loss"] == want["val/loss"] and got_samples == want_samples
    a, b = load_checkpoint(run_dir / "ckpt_last.npz"), load_checkpoint(tmp_path / "unbroken" / "ckpt_last.npz")
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


def test_a_start_reads_the_checkpoint_it_resumes_or_fine_tunes_from_once(corpus, tmp_path, monkeypatch):
    """The config, the run directory and the weights all come from one read of the file (charrnn.start)."""
    from charrnn.checkpoint import format as checkpoint_format

    first = [f"data.path={corpus}", *TINY, "train.max_iters=10", "model.dtype=float64"]
    charrnn.train([*first, f"hydra.run.dir={tmp_path / 'first'}"])
    reads = []
    real = checkpoint_format._load_checkpoint

    def counted(path):
        reads.append(path.resolve())
        return real(path)

    monkeypatch.setattr(checkpoint_format, "_load_checkpoint", counted)
    resumed = charrnn.train([*first, "train.max_iters=15", f"train.resume={tmp_path / 'first'}",
                             f"hydra.run.dir={tmp_path / 'unused'}"])
    assert resumed.steps == 15 and resumed.run_dir == tmp_path / "first"
    assert reads.count((tmp_path / "first" / "ckpt_last.npz").resolve()) == 1
    reads.clear()
    tuned = charrnn.train([*first, f"train.init_from={tmp_path / 'first'}", f"hydra.run.dir={tmp_path / 'tuned'}"])
    assert tuned.steps == 10
    assert reads.count((tmp_path / "first" / "ckpt_best.npz").resolve()) == 1
