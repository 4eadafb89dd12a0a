"""Nothing a user made is lost, and every failure is one line: non-finite and exploded models
never reach disk, a run directory has one owner, a refused start changes nothing, resuming from an
earlier point forks, and the machine's own failures (memory, disk, Ctrl-C) end in one line."""

import errno
import hashlib
import io
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from charrnn.backends import StepSettings
from charrnn.backends.guard import StepGuard, all_finite
from charrnn.backends.numpy_backend import NumpyBackend
from charrnn.backends.torch_backend import TorchBackend
from charrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from charrnn.cli import Command
from charrnn.config import to_sample_config
from charrnn.signals import Stopped
from charrnn.start import run_config
from charrnn.data.corpus import open_corpus
from charrnn.errors import UserError
from charrnn.model import init_params, model_spec, zero_state
from charrnn.generation import next_char_distribution
from charrnn.sampling import sample
from charrnn.training import loop as trainer, rundir
from tests.conftest import HANG, REPO, TINY, assert_user_error, compose_raw, make_config, run_scripts


def run(corpus, run_dir, *overrides):
    return trainer.train(make_config([f"data.path={corpus}", *TINY, *overrides]), run_dir)


def hashes(directory) -> dict[str, str]:
    """Every file under directory, by content."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A corpus and a finished 20-step run over it, evaluated at steps 0, 10 and 20; each test copies it."""
    tmp = tmp_path_factory.mktemp("finished")
    corpus = tmp / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 120, encoding="utf-8")
    run(corpus, tmp / "run", "train.max_iters=20")
    return corpus, tmp / "run"


def copy_of(finished, tmp_path):
    corpus, run_dir = finished
    shutil.copytree(run_dir, tmp_path / "run")
    return corpus, tmp_path / "run"


# -- non-finite weights never reach disk ---------------------------------------------------------------

SPEC = model_spec("rnn", vocab_size=7, hidden_size=5)


def tiny_checkpoint(**arrays) -> Checkpoint:
    params = init_params(SPEC, "uniform", 0.01, 0, "float32")
    params.update(arrays)
    return Checkpoint(params=params, optimizer_state={"step": np.array(3), "sum/Whh": np.ones((5, 5))},
                      vocab=np.arange(97, 104, dtype=np.int32),
                      config={"model": {"hidden_size": 5}, "train": {"batch_size": 2}},
                      progress={},
                      state={"h": np.zeros((1, 2, 5), np.float32)})


def test_non_finite_weights_are_refused_on_save_and_on_load(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, tiny_checkpoint())
    saved = path.read_bytes()
    bad = tiny_checkpoint(Whh=np.full((5, 5), np.inf, np.float32))
    with pytest.raises(UserError, match=f"refusing to write {path}: Whh not finite .* what was there before is as it"):
        save_checkpoint(path, bad)
    bad.optimizer_state["sum/Whh"] = np.full((5, 5), np.nan)
    with pytest.raises(UserError, match="Whh, sum/Whh not finite"):
        save_checkpoint(path, bad)
    assert path.read_bytes() == saved and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    # a file written by something else: refused on load, for sampling and resuming alike
    arrays = dict(np.load(path))
    arrays["param/Why"] = np.full_like(arrays["param/Why"], np.nan)
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(UserError, match="is damaged: Why not finite .*use an earlier checkpoint"):
        load_checkpoint(tmp_path / "nan.npz")


BACKENDS = {"numpy": lambda params, cfg, guard: NumpyBackend(SPEC, params, StepSettings(cfg, "none", 1.0, guard=guard)),
            "torch": lambda params, cfg, guard: TorchBackend(SPEC, params, StepSettings(cfg, "none", 1.0, guard=guard),
                                                             "cpu")}
OPTIMS = {"adam": OmegaConf.create({"name": "adam", "lr": 1.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
          "sgd": OmegaConf.create({"name": "sgd", "lr": 1.0, "momentum": 0.9, "nesterov": False})}


@pytest.mark.filterwarnings("ignore:(overflow|invalid value) encountered:RuntimeWarning")
@pytest.mark.parametrize("optim", OPTIMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_update_that_overflows_the_weights_is_caught_and_undone(backend, optim):
    """Finite gradients, an absurd float32 learning rate: the update itself makes the weights non-finite."""
    rng = np.random.default_rng(0)
    inputs, targets = rng.integers(0, 7, (2, 4)), rng.integers(0, 7, (2, 4))
    h = zero_state(SPEC, 2, np.float32)
    model = BACKENDS[backend](init_params(SPEC, "uniform", 0.01, 0, "float32"), OPTIMS[optim], StepGuard(undo=True))
    assert not model.train_step(inputs, targets, h, 0.01).skipped  # state to undo back to, not zeros
    before = {**model.export_params(), **model.export_optimizer_state()}
    result = model.train_step(inputs, targets, h, 1e39)
    assert result.skipped and result.cause == "update" and math.isfinite(result.grad_norm)
    after = {**model.export_params(), **model.export_optimizer_state()}
    assert all(np.array_equal(after[k], before[k]) for k in before)  # bit for bit, the step count too
    assert not model.train_step(inputs, targets, h, 0.01).skipped  # and training goes on from there
    # without an undo copy (train.nonfinite=stop) the step is still reported, and the trainer stops
    model = BACKENDS[backend](init_params(SPEC, "uniform", 0.01, 0, "float32"), OPTIMS[optim], StepGuard())
    assert model.train_step(inputs, targets, h, 1e39).cause == "update"


@pytest.mark.filterwarnings("ignore:(overflow|invalid value) encountered:RuntimeWarning")
def test_all_finite_sees_through_a_sum_that_overflows():
    assert all_finite([np.full(4, 3e38, np.float32)])  # the sum overflows, the values are fine
    assert not all_finite([np.array([1.0, np.nan], np.float32)])
    assert not all_finite([np.array([np.inf, -np.inf])])


def test_a_signal_after_updates_that_overflowed_saves_finite_weights(finished, tmp_path, monkeypatch):
    """optim.lr=1e39 in float32 with train.nonfinite=skip, then SIGTERM."""
    corpus, _ = finished
    real = trainer.make_backend
    steps = []

    def stopping_backend(*args):
        backend = real(*args)
        train_step = backend.train_step

        def step(*args):
            result = train_step(*args)
            steps.append(result.cause)
            if len(steps) == 12:
                os.kill(os.getpid(), signal.SIGTERM)
            return result
        backend.train_step = step
        return backend

    monkeypatch.setattr(trainer, "make_backend", stopping_backend)
    result = run(corpus, tmp_path / "run", "optim.lr=1e39", "train.nonfinite=skip", "train.max_iters=100",
                 "train.lr_schedule=constant")
    assert result.stopped_by == signal.SIGTERM and steps == ["update"] * 12
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt_last.npz")
    assert ckpt.progress["step"] == 12 and ckpt.progress["monitor"]["skipped_steps"] == 12


# -- a loss that explodes but stays finite -------------------------------------------------------------

# Adam moves each weight by about lr per step: at 1e12 the next losses pass 3 ln V and stay finite in float64.
EXPLODING = ["optim.lr=1e12", "train.clip_mode=none", "train.lr_schedule=constant", "model.dtype=float64"]


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_an_exploding_loss_stops_the_run_before_it_saves(finished, tmp_path, policy):
    corpus, run_dir = copy_of(finished, tmp_path)
    before = hashes(run_dir)
    with pytest.raises(UserError, match=r"step \d+: (the loss has exploded \(loss \S+ nats/char.*3\.0 x ln\(V\) = "
                                        r"10\.1|not saving, the model has exploded|the validation loss is \S+, the "
                                        r"weights have blown up).*likely cause: a learning rate too high, optim.lr"):
        run(corpus, tmp_path / "new", f"train.resume={run_dir}", "train.max_iters=60", *EXPLODING,
            f"train.nonfinite={policy}")
    after = hashes(run_dir)
    assert {k: v for k, v in after.items() if k.startswith("ckpt")} == {k: v for k, v in before.items()
                                                                         if k.startswith("ckpt")}


def test_the_explosion_threshold_depends_on_the_vocabulary_alone():
    """ln V, not a measured first loss: a resumed run judges exactly as an unbroken one."""
    cfg = make_config(["data=text", "data.path=x"])
    assert StepSettings.from_config(cfg, 65).guard.max_loss == 3.0 * math.log(65)
    assert StepSettings.from_config(make_config(["data=text", "data.path=x", "train.max_loss_ratio=null"]),
                                    65).guard.max_loss == math.inf


# -- items 3, 12: one owner per run directory; an unwritable one changes nothing ----------------------

def test_a_run_directory_has_one_owner(tmp_path):
    with rundir.claim(tmp_path / "run"):
        with pytest.raises(UserError, match=rf"{tmp_path / 'run'} is in use by another training \(process "
                                            rf"{os.getpid()}\); wait for it to end"):
            with rundir.claim(tmp_path / "run"):
                pass
    with rundir.claim(tmp_path / "run"):  # released at the end of the run
        (tmp_path / "run" / "config.yaml").write_text("x")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml"]  # the lock is no file


def test_a_run_that_wrote_nothing_leaves_no_directory_it_made(tmp_path, monkeypatch):
    users = tmp_path / "users"
    users.mkdir()
    monkeypatch.setattr(rundir, "STARTED_NS", time.time_ns())  # users/ was there before this "process"
    made = Path(rundir.unique_dir(str(tmp_path / "runs" / "label" / "date")))
    for run_dir in (made, users):
        with rundir.claim(run_dir):
            pass
        rundir.remove_if_made_and_empty(run_dir)
    assert not (tmp_path / "runs").exists() and users.is_dir()


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_an_unwritable_run_directory_is_one_line_before_anything_is_written(finished, tmp_path, monkeypatch, code):
    corpus, run_dir = copy_of(finished, tmp_path)
    before = hashes(run_dir)
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(rundir.os, "open", read_only)
    with pytest.raises(UserError, match=f"cannot write to the run directory {run_dir}: {os.strerror(code)}; "
                                        f"nothing in it was changed"):
        run(corpus, tmp_path / "new", f"train.resume={run_dir}", "train.max_iters=30")
    assert hashes(run_dir) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_run_directory_is_refused(finished, tmp_path):
    corpus, run_dir = copy_of(finished, tmp_path)
    before = hashes(run_dir)
    run_dir.chmod(0o555)
    try:
        with pytest.raises(UserError, match="cannot write to the run directory .*Permission denied"):
            run(corpus, tmp_path / "new", f"train.resume={run_dir}", "train.max_iters=30")
    finally:
        run_dir.chmod(0o755)
    assert hashes(run_dir) == before


# -- resuming from an earlier point forks, and best stays true to its file ------------------------------

def test_resuming_from_an_earlier_checkpoint_forks_and_leaves_the_later_work(finished, tmp_path, capsys):
    corpus, run_dir = copy_of(finished, tmp_path)
    earlier = load_checkpoint(run_dir / "ckpt_last.npz")
    earlier.progress["step"], earlier.progress["eval_step"] = 10, 10  # as if kept at step 10
    save_checkpoint(run_dir / "step10.npz", earlier)
    before = hashes(run_dir)
    result = run(corpus, tmp_path / "fork", f"train.resume={run_dir / 'step10.npz'}", "train.max_iters=30")
    assert result.run_dir == tmp_path / "fork" and result.steps == 30
    assert "continuing in a new run directory" in capsys.readouterr().out
    assert hashes(run_dir) == before
    assert (tmp_path / "fork" / "ckpt_best.npz").is_file()  # its own best, judged afresh
    # into its own directory it cannot fork: refused with the way to do it
    with pytest.raises(UserError, match=r"in its own directory: its ckpt_last.npz is at step 20 and would be "
                                        r"overwritten; name a new directory with hydra.run.dir=PATH"):
        run(corpus, run_dir, f"train.resume={run_dir / 'step10.npz'}", "train.max_iters=30")


def test_a_stale_best_checkpoint_is_brought_up_to_date_after_a_resume(finished, tmp_path):
    """A kill during the ckpt_best.npz write: ckpt_last.npz records a best that ckpt_best.npz does not hold."""
    corpus, run_dir = copy_of(finished, tmp_path)
    last = load_checkpoint(run_dir / "ckpt_last.npz")
    last.progress["best_val"] = 0.0  # a best no file holds
    save_checkpoint(run_dir / "ckpt_last.npz", last)
    result = run(corpus, tmp_path / "new", f"train.resume={run_dir}", "train.max_iters=30")
    best = load_checkpoint(run_dir / "ckpt_best.npz").progress
    assert result.best_val_loss == best["val_loss"] != 0.0  # the best is the file's, not the record's 0.0


# -- every config value -----------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,message", [
    (["seed=-1"], "seed must not be negative, got -1"),
    (["optim.beta1=1.0"], r"optim.beta1 must be in \[0, 1\), got 1.0"),
    (["optim.beta2=-0.1"], r"optim.beta2 must be in \[0, 1\)"),
    (["optim.eps=0"], "optim.eps must be positive"),
    (["optim=adagrad", "optim.eps=nan"], "optim.eps must be finite, got nan"),
    (["optim=sgd", "optim.momentum=-0.5"], "optim.momentum must not be negative"),
    (["optim=sgd", "optim.momentum=0", "optim.nesterov=true"], "optim.nesterov=true needs momentum"),
    (["train.min_lr=nan"], "train.min_lr must be finite, got nan"),
    (["train.max_seconds=nan"], "train.max_seconds must be finite, got nan"),
    (["train.max_seconds=-1"], "train.max_seconds must be positive"),
    (["train.warmup_iters=-1"], "train.warmup_iters must not be negative"),
    (["train.lr_decay_iters=0"], "train.lr_decay_iters must be positive"),
    (["model.init_std=nan"], "model.init_std must be finite"),
    (["model.init_std=0"], "model.init_std must be positive"),
    (["train.max_loss_ratio=0.5"], r"train.max_loss_ratio must be in \(1, inf\)"),
    (["train.grad_clip=inf"], "train.grad_clip must be finite"),
])
def test_every_config_value_is_checked_before_anything_runs(overrides, message):
    with pytest.raises(UserError, match=message):
        make_config(["data=text", "data.path=x", *overrides])


@pytest.mark.parametrize("override,message", [
    ("seed=-1", "seed must not be negative"), ("temperature=nan", "temperature must be finite"),
    ("temperature=0", "temperature must be positive"), ("top_k=0", "top_k must be positive"),
    ("num_samples=0", "num_samples must be positive"),
])
def test_every_sampling_value_is_checked(override, message):
    with pytest.raises(UserError, match=message):
        to_sample_config(compose_raw(["checkpoint=x", override], config_name="sample"))


# -- every checkpoint field --------------------------------------------------------------------------

def edit_step(c):
    c.progress["step"] = "12"


def edit_step_float(c):
    c.progress["step"] = 12.0


def edit_best_val(c):
    c.progress["best_val"] = "good"


def edit_monitor(c):
    del c.progress["monitor"]["interval"]


def edit_clipped_steps(c):
    c.progress["monitor"]["clipped_steps"] = -3


def edit_chars_per_step(c):
    c.progress["monitor"]["chars_per_step"] = "many"


def edit_optimizer_missing(c):
    del c.optimizer_state["exp_avg/Whh"]


def edit_optimizer_shape(c):
    c.optimizer_state["exp_avg_sq/Why"] = np.zeros((3, 3), np.float32)


def edit_optimizer_step(c):
    c.optimizer_state["step"] = np.array(-1)


def edit_config(c):
    c.config["optim"]["beta1"] = 2.0


@pytest.mark.parametrize("edit,message", [
    (edit_step, "progress.step must be a whole number from 0 to 2\\*\\*53, got '12'"),
    (edit_step_float, "progress.step must be a whole number from 0 to 2\\*\\*53, got 12.0"),
    (edit_best_val, "progress.best_val must be a number, got 'good'"),
    (edit_monitor, "progress.monitor must be an object with smooth_loss, interval, skipped_steps, clipped_steps, "
                   r"chars_per_step \(the monitor's state; it lacks interval\)"),
    (edit_clipped_steps, "progress.monitor must be an object whose clipped_steps is a whole number from 0 to 2\\*\\*53 "
                         r"\(got -3\)"),
    (edit_chars_per_step, "progress.monitor must be an object whose chars_per_step is a whole number from 0 to "
                          r"2\*\*53, or null \(got 'many'\)"),
    (edit_optimizer_missing, "the optimizer state lacks optim/exp_avg/Whh"),
    (edit_optimizer_shape, r"optim/exp_avg_sq/Why is float32 \(3, 3\), where its model needs \(29, 16\)"),
    (edit_optimizer_step, "optim/step must be a whole number from 0"),
    (edit_config, r"its saved config, with your overrides, does not validate \(optim.beta1 must be in \[0, 1\)"),
])
def test_every_checkpoint_field_is_checked_on_load(finished, tmp_path, edit, message):
    corpus, run_dir = copy_of(finished, tmp_path)
    ckpt = load_checkpoint(run_dir / "ckpt_last.npz")
    edit(ckpt)
    save_checkpoint(run_dir / "ckpt_last.npz", ckpt)
    overrides = [f"train.resume={run_dir}", "train.max_iters=30"]  # as train.py reads them
    with pytest.raises(UserError, match=message) as caught:
        trainer.train(run_config(compose_raw(overrides), overrides), tmp_path / "new")
    assert str(run_dir / "ckpt_last.npz") in str(caught.value)


def test_sampling_refuses_a_checkpoint_whose_config_does_not_validate(finished, tmp_path):
    _, run_dir = copy_of(finished, tmp_path)
    ckpt = load_checkpoint(run_dir / "ckpt_best.npz")
    ckpt.config["model"]["init_std"] = -1.0
    save_checkpoint(run_dir / "ckpt_best.npz", ckpt)
    with pytest.raises(UserError, match="holds an unusable config .*model.init_std must be positive"):
        sample(to_sample_config(compose_raw([f"checkpoint={run_dir}"], config_name="sample")), io.StringIO())


# -- sampling never crashes on numbers ----------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # sample() filters it for users
def test_a_temperature_that_underflows_is_greedy_not_nan():
    logits = np.array([1.0, 3.0, 2.0, 3.0 - 1e-9])
    for temperature in (1e-300, 5e-324):
        p = next_char_distribution(logits, temperature, None, None)
        assert np.isfinite(p).all() and p[1] == 1.0
    assert np.allclose(next_char_distribution(logits, 1e300, None, None), 0.25)


def test_sampling_a_model_whose_scores_overflow_is_one_line(finished, tmp_path):
    _, run_dir = copy_of(finished, tmp_path)
    ckpt = load_checkpoint(run_dir / "ckpt_best.npz")
    # finite weights whose logits overflow float32: h saturates at 1, each logit sums 16 terms of 3e38
    ckpt.params["bh"] = np.full_like(ckpt.params["bh"], 100.0)
    ckpt.params["Why"] = np.full_like(ckpt.params["Why"], 3e38)
    ckpt.config["model"]["dtype"] = "float32"
    save_checkpoint(run_dir / "ckpt_best.npz", ckpt)
    with pytest.raises(UserError, match="scores for the next character are not finite"):
        sample(to_sample_config(compose_raw([f"checkpoint={run_dir}"], config_name="sample")), io.StringIO())


def test_control_characters_are_escaped_unless_raw_is_asked_for(tmp_path):
    corpus = tmp_path / "bytes.bin"
    corpus.write_bytes(b"\x1b[31mred\x07\r\n" * 300)
    cfg = make_config([f"data.path={corpus}", *TINY, "data.encoding=bytes", "train.max_iters=1"])
    run_dir = trainer.train(cfg, tmp_path / "run").run_dir

    def sample_text(raw):
        out = io.StringIO()
        sample(to_sample_config(compose_raw([f"checkpoint={run_dir}", "length=400", f"raw={raw}"],
                                            config_name="sample")), out)
        return out.getvalue()

    escaped, raw_text = sample_text("false"), sample_text("true")
    assert "\x1b" not in escaped and "\x07" not in escaped and "\\x1b" in escaped
    assert "\x1b" in raw_text and raw_text.replace("\x1b", "\\x1b").replace("\x07", "\\x07") == escaped


# -- items 10, 11: memory, endless inputs, disk ------------------------------------------------------

@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:118] "
                                   "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"),
                                   RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   OSError(errno.ENOSPC, "No space left on device", "/runs/x/events.out")])
def test_memory_and_disk_failures_are_one_line(error, capsys):
    with pytest.raises(SystemExit) as exited:
        with Command(out_of_memory="out of memory; lower model.hidden_size").task():
            raise error
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert ("out of memory; lower model.hidden_size" in err if not isinstance(error, OSError)
            else "cannot write /runs/x/events.out: No space left on device" in err)


def test_a_bug_is_not_taken_for_a_machine_failure():
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        with Command().task():
            raise RuntimeError("shapes cannot be multiplied")
    with pytest.raises(FileNotFoundError, match="No such file or directory"):
        with Command().task():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_a_device_is_not_read_as_a_corpus(path):
    with pytest.raises(UserError, match=f"corpus path {path} is not a regular file"):
        open_corpus(__import__("pathlib").Path(path))


def test_a_full_disk_while_tensorboard_writes_keeps_the_checkpoint(finished, tmp_path, monkeypatch, capsys):
    from torch.utils.tensorboard import SummaryWriter

    corpus, _ = finished

    close = SummaryWriter.close

    def full(self):
        close(self)
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "events.out.tfevents.x"))

    monkeypatch.setattr(SummaryWriter, "close", full)
    with pytest.raises(SystemExit) as exited:
        with Command().task():
            run(corpus, tmp_path / "run", "train.max_iters=10")
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("error: cannot write") and "No space left on device" in last
    assert load_checkpoint(tmp_path / "run" / "ckpt_last.npz").progress["step"] == 10


# -- end to end: exit code, one stderr line, no traceback, earlier files byte-identical ---------------

def test_a_refused_run_in_the_current_directory_leaves_that_directory(tmp_path):
    """A run directory that its run left empty is removed, but never the current directory, which an
    empty hydra.run.dir or hydra.run.dir=. names."""
    here = tmp_path / "empty"
    here.mkdir()
    (tmp_path / "short.txt").write_bytes(b"abcdefghij" * 5)
    short = [f"data.path={tmp_path / 'short.txt'}", "train.batch_size=8", "train.seq_length=16"]
    empty, dot = (subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=here, capture_output=True,
                                 text=True, timeout=HANG)
                  for args in (["hydra.run.dir="], ["hydra.run.dir=.", *short]))
    assert_user_error(empty, "hydra.run.dir is empty")
    assert_user_error(dot, "fewer than one batch needs")   # refused after the directory was claimed
    assert here.is_dir()


def test_refused_starts_leave_an_earlier_run_byte_identical_and_an_accepted_one_writes_hydras_record(finished,
                                                                                                       tmp_path):
    corpus, run_dir = copy_of(finished, tmp_path)
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("the earlier run's record\n")
    before = hashes(run_dir)
    common = [f"data.path={corpus}", *TINY]
    with rundir.claim(tmp_path / "busy"):
        fresh, busy, empty, bad_value, accepted = run_scripts(
            ["train.py", *common, f"hydra.run.dir={run_dir}"],
            ["train.py", *common, f"hydra.run.dir={tmp_path / 'busy'}"],
            ["train.py", *common, "hydra.run.dir="],
            ["train.py", f"train.resume={run_dir}", "optim.beta1=1", f"hydra.run.dir={run_dir}"],
            ["train.py", *common, "train.max_iters=1", f"hydra.run.dir={tmp_path / 'new'}"])
    assert_user_error(fresh, f"{run_dir} already holds a run")
    assert_user_error(busy, f"{tmp_path / 'busy'} is in use by another training (process {os.getpid()})")
    assert_user_error(empty, "hydra.run.dir is empty")
    assert_user_error(bad_value, "optim.beta1 must be in [0, 1)")
    assert hashes(run_dir) == before
    assert not list(REPO.glob("ckpt_*.npz")) and not (REPO / ".hydra").exists()
    assert accepted.returncode == 0, accepted.stderr
    record = tmp_path / "new" / ".hydra"
    assert OmegaConf.load(record / "config.yaml").train.max_iters == 1
    assert "train.max_iters=1" in OmegaConf.load(record / "overrides.yaml")
    assert OmegaConf.load(record / "hydra.yaml").hydra.run.dir == str(tmp_path / "new")


@pytest.mark.parametrize("script", ["train.py", "sample.py"])
def test_ctrl_c_at_any_moment_is_one_line(finished, tmp_path, script):
    corpus, run_dir = finished
    args = ([f"data.path={corpus}", *TINY, "train.max_iters=1000000"]
            if script == "train.py" else [f"checkpoint={run_dir}", "length=100000000"])
    # During the imports, Hydra's start, the work itself. (Before the first line of the script runs, while
    # Python imports its own site module, Ctrl-C is Python's to report; that moment is not tested.)
    delays = (1.0, 2.0, 4.0)
    procs = [subprocess.Popen([sys.executable, script, *args, *([f"hydra.run.dir={tmp_path / str(d)}"]
                                                                if script == "train.py" else [])],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for d in delays]
    started = time.monotonic()
    for delay, proc in zip(delays, procs):
        time.sleep(max(0.0, started + delay - time.monotonic()))
        proc.send_signal(signal.SIGINT)
    for delay, proc in zip(delays, procs):
        _, err = proc.communicate(timeout=HANG)
        assert "Traceback" not in err, (delay, err)
        assert proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT), (delay, proc.returncode, err)
        last = err.strip().splitlines()[-1]
        assert last == "interrupted" or last.startswith(("SIGINT: saved step", "SIGINT: stopped before training began",
                                                         "interrupted without saving")), err


def test_an_error_a_ctrl_c_became_inside_a_library_is_reported_as_the_interrupt(monkeypatch, capsys):
    """Hydra, interrupted while it composes the config, may raise an error of its own ("defaults is not a
    config key"): after a Ctrl-C, that is the interrupt, not the user's mistake."""
    from omegaconf.errors import ConfigKeyError

    from charrnn import signals

    def composing():
        raise ConfigKeyError("Key 'defaults' is not in struct")
    monkeypatch.setattr(signals, "_interrupted", True)
    with pytest.raises(SystemExit) as exited:
        Command().run(composing)
    assert exited.value.code == 128 + signal.SIGINT
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize("signalled", [Stopped(signal.SIGTERM), KeyboardInterrupt()])
def test_a_signal_that_a_librarys_cleanup_replaced_is_still_the_signal(signalled, monkeypatch):
    """A signal inside Hydra's composition once came out as "defaults is not a config key": the error of a
    cleanup the signal cut short, raised while its exception was being handled. The command raises the
    signal's exception, which the script reports as itself, not the cleanup's error as the user's mistake."""
    monkeypatch.setattr(sys, "argv", ["explore"])

    def composing():
        try:
            raise signalled
        finally:
            raise ConfigKeyError("Key 'defaults' is not in struct")

    with pytest.raises(type(signalled)):
        Command().run(composing)
