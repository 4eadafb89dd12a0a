"""The training loop, the same for every backend: it speaks only the interface in backends/interface.py."""

import contextlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from charrnn.backends import make_backend
from charrnn.backends.guard import CAUSES, StepGuard
from charrnn.data.batching import StreamBatcher
from charrnn.checkpoint import Checkpoint, save_checkpoint
from charrnn.config import Config, config_to_dict
from charrnn.data import load_ids, split
from charrnn.training.distributed import Muted, Solo, join
from charrnn.model import dropout_masks
from charrnn.errors import UserError
from charrnn.training.evaluation import evaluate, full_evaluation
from charrnn.training.signals import StopRequest
from charrnn.model import init_params, spec_of, zero_state
from charrnn.monitor import Monitor
from charrnn.novelty import NoveltyIndex
from charrnn.optim import learning_rate
from charrnn.training.resume import resume, resume_dir
from charrnn.training.resume import RunState
from charrnn.training.rundir import check_fresh, claim
from charrnn.sampling import generate, start_ids
from charrnn.training.threads import thread_counts


@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    val_loss: float
    best_val_loss: float
    run_dir: Path
    stopped_by: int | None  # the signal (SIGINT, SIGTERM) that stopped training early, if one did


def run_progress(step: int, train_seconds: float, tc) -> float:
    """Fraction of the schedule spent: of lr_decay_iters steps, or of max_seconds, whichever is further.
    Without max_seconds it depends on the step alone, so runs are reproducible to the bit (and a run
    stopped early and resumed follows the same schedule); with it the schedule follows the clock, so
    a short time budget still anneals fully."""
    progress = step / tc.lr_decay_iters
    if tc.max_seconds is not None:
        progress = max(progress, train_seconds / tc.max_seconds)
    return progress


def make_batchers(cfg: Config, ids: np.ndarray) -> tuple[StreamBatcher, StreamBatcher]:
    train_ids, val_ids = split(ids, cfg.data.val_fraction)
    B, T = cfg.train.batch_size, cfg.train.seq_length
    if len(train_ids) < B * (T + 1):
        raise UserError(f"the train split has {len(train_ids)} chars, fewer than one batch needs "
                        f"(batch_size {B} streams of seq_length+1 = {T + 1}); use a longer corpus "
                        f"or lower train.batch_size / train.seq_length")
    if len(val_ids) < 2:
        raise UserError(f"the val split has {len(val_ids)} chars, too few to evaluate; "
                        f"raise data.val_fraction or use a longer corpus")
    eval_streams = min(cfg.train.eval_batch_size, len(val_ids) // 2)
    return StreamBatcher(train_ids, B, T), StreamBatcher(val_ids, eval_streams, T)


def write_config(run_dir: Path, config_dict: dict) -> None:
    """The run directory's first file: a directory that cannot be written fails here, before training."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config_dict))
    except OSError as e:
        raise UserError(f"cannot write to the run directory {run_dir}: {e.strerror}; "
                        f"name a writable one with hydra.run.dir=PATH") from None


def step_problem(step: int, result, lr: float, guard: StepGuard, cfg: Config) -> str:
    """What went wrong at a step the backend refused or undid (result.cause), with its figures."""
    figures = f"loss {result.loss:.4g} nats/char, gradient norm {result.grad_norm:.4g}"
    if result.cause == "exploded":
        return (f"step {step}: the loss has exploded ({figures}; train.max_loss_ratio={cfg.train.max_loss_ratio} "
                f"x ln(V) = {guard.max_loss:.4g} is the most a learning model scores), so no update was made")
    if result.cause == "update":
        return f"step {step}: {CAUSES['update']} ({figures}, both finite; lr {lr:.4g}), so it was not kept"
    return f"step {step}: {CAUSES[result.cause]} ({figures}), so no update was made"


def nonfinite_error(problem: str, cfg: Config, run_dir: Path) -> UserError:
    """Training cannot go on: what happened, its likely cause, and that the last checkpoint is intact."""
    if cfg.train.clip_mode == "none":
        cause = f"optim.lr={cfg.optim.lr} on unclipped gradients: lower it, or clip (train.clip_mode=norm)"
    else:
        cause = f"optim.lr={cfg.optim.lr}: lower it, or clip harder (train.grad_clip={cfg.train.grad_clip})"
    return UserError(f"{problem}; likely cause: a learning rate too high, {cause}; nothing new was saved, "
                     f"{run_dir / 'ckpt_last.npz'} holds the last good state")


def train(cfg: Config, run_dir: Path, on_start=None) -> TrainResult:
    """Train afresh into run_dir or, with train.resume, continue that checkpoint's run in its own directory
    (so TensorBoard shows one unbroken run) exactly as if it had never stopped; resumed from an earlier
    point than where that run stopped, it forks into run_dir instead (see resume_dir). The directory is
    locked for the whole run; on_start() is called once the run is accepted, before anything is written.
    The corpus is read first: a mistake in the command is named before the directory is looked at."""
    # this process's rank and streams, under torchrun (charrnn.training.distributed); one process otherwise
    replicas = join(cfg.train.batch_size)
    data = load_ids(cfg.data)
    note = None
    if cfg.train.resume is not None:
        run_dir, note = resume_dir(cfg.train.resume, run_dir)
    # rank 0 alone writes into the run directory, so it alone owns it
    with claim(run_dir) if replicas.is_main else contextlib.nullcontext():
        return _train(cfg, run_dir, note, on_start, replicas, *data)


def _train(cfg: Config, run_dir: Path, note: str | None, on_start, replicas: Solo, vocab,
           ids: np.ndarray) -> TrainResult:
    tc = cfg.train
    train_batches, full_val_batches = make_batchers(cfg, ids)
    val_batches = full_val_batches.head(tc.eval_chars)
    spec, dtype = spec_of(cfg.model, len(vocab)), cfg.model.dtype
    zeros = zero_state(spec, tc.batch_size // replicas.world_size, dtype)
    if replicas.is_main and (tc.resume is None or note):
        check_fresh(run_dir)
    if tc.resume is None:
        params = init_params(spec, cfg.model.init, cfg.model.init_std, cfg.seed, dtype, cfg.model.forget_bias)
        backend = make_backend(cfg, spec, params)
        run = RunState(hidden=zeros)
    else:
        backend, run = resume(cfg, vocab, len(train_batches), run_dir)
        run.hidden = replicas.shard(run.hidden)
    backend.replicas = replicas
    guard = StepGuard.from_config(tc, len(vocab))
    if on_start and replicas.is_main:
        on_start()
    config_dict = config_to_dict(cfg)
    if replicas.is_main:
        write_config(run_dir, config_dict)
    monitor = (Monitor(run_dir, tc.max_iters, run.step, tc.log_interval, tc.clip_mode, run.monitor,
                       tc.max_seconds, run.train_seconds, NoveltyIndex(*split(ids, cfg.data.val_fraction), vocab))
               if replicas.is_main else Muted())
    monitor.write(f"{len(ids):,} {'bytes' if vocab.is_bytes else 'chars'}, vocabulary {len(vocab)}, "
                  f"{train_batches.num_targets:,} train / {val_batches.num_targets:,} val predictions per pass"
                  f"{'' if val_batches is full_val_batches else ' (train.eval_chars of the split)'}; "
                  f"run directory {run_dir}; {thread_counts()}" + (f"; resuming at step {run.step}" if run.step else ""))
    if note:
        monitor.write(note)
    exploded = False  # the last step's loss was above guard.max_loss: the weights are not worth saving

    def state_prev() -> tuple:
        return zeros if tc.reset_state else run.hidden

    def masks(step: int, inputs: np.ndarray) -> tuple | None:
        """Training step `step`'s dropout masks for this rank's streams of the chunk inputs (B, T) (an epoch's
        last chunk may be shorter): drawn for every stream, so that any number of ranks applies the same."""
        drawn = dropout_masks(cfg.model.dropout, spec, tc.batch_size, inputs.shape[1], cfg.seed, step, dtype)
        return None if drawn is None else replicas.shard(drawn)

    def save(*names: str) -> None:
        if exploded:
            raise nonfinite_error(f"step {run.step}: not saving, the model has exploded (the last step's loss "
                                  f"was above {guard.max_loss:.4g})", cfg, run_dir)
        hidden = replicas.gather(run.hidden)
        if not replicas.is_main:
            return
        run.monitor = monitor.state_dict()
        ckpt = Checkpoint(params=backend.export_params(), optimizer_state=backend.export_optimizer_state(),
                          vocab=vocab.symbols, config=config_dict,
                          state={**run.to_json(), "backend": cfg.backend.name},
                          hidden=dict(zip(spec.state_names, hidden)))
        for name in names:
            save_checkpoint(run_dir / name, ckpt)

    def evaluate_and_save() -> None:
        run.val_loss = evaluate(backend, val_batches, spec, dtype, replicas)
        if not run.val_loss <= guard.max_loss:  # NaN too
            raise nonfinite_error(f"step {run.step}: the validation loss is {run.val_loss:.4g}, the weights have "
                                  f"blown up (train.max_loss_ratio={tc.max_loss_ratio} x ln(V) = "
                                  f"{guard.max_loss:.4g} is the most a working model scores)", cfg, run_dir)
        if replicas.is_main:
            # Seeded by the step, not drawn from one long stream: a resumed run, or one whose extra final
            # evaluation came in between, draws the same sample at each step as an unbroken run.
            sample_rng = np.random.default_rng([cfg.seed, run.step])
            sample_ids = generate(backend, start_ids(vocab, ""), zero_state(spec, 1, dtype), tc.sample_length,
                                  sample_rng)
            # The chunk that training reads next (this rank's streams), from the state it starts from:
            # how far back its gradient reaches.
            inputs, targets = replicas.local(*train_batches.chunk(run.chunk))
            grads = backend.gradients(inputs, targets, state_prev(), masks(run.step, inputs))
            monitor.evaluation(run.step, run.val_loss, vocab.decode(sample_ids), backend.export_params(), grads,
                               best_val_loss=min(run.best_val, run.val_loss), train_seconds=run.train_seconds)
        run.eval_step = run.step
        improved = run.val_loss < run.best_val
        run.best_val = min(run.best_val, run.val_loss)
        # best first: a kill between the two writes leaves ckpt_last.npz before this step, which a resume
        # repeats, evaluating and writing both again
        save(*(["ckpt_best.npz"] if improved else []), "ckpt_last.npz")

    with monitor, StopRequest(repeat_raises=replicas.world_size == 1) as stop, warnings.catch_warnings():
        # A blow-up is reported below in one line; NumPy's overflow warnings on the way would bury it.
        # (A filter costs nothing until a warning is raised; np.errstate slowed every step by ~3%.)
        warnings.filterwarnings("ignore", r"(overflow|invalid value) encountered", RuntimeWarning)
        replicas.watch(stop)
        stopped_by = None
        while (run.step < tc.max_iters and (tc.max_seconds is None or run.train_seconds < tc.max_seconds)
               and stopped_by is None):
            # evaluate, sample and checkpoint, unless a resumed run starts at a step already evaluated
            # (evaluation time is not training time)
            if run.step % tc.eval_interval == 0 and run.eval_step != run.step and (run.step or tc.eval_at_start):
                evaluate_and_save()
            # learning rate for this step
            lr = learning_rate(run.step, run_progress(run.step, run.train_seconds, tc), cfg.optim.lr,
                               tc.lr_schedule, tc.warmup_iters, tc.min_lr)
            # forward, backward, clip, update on the next chunk of every stream
            inputs, targets = replicas.local(*train_batches.chunk(run.chunk))
            started = time.perf_counter()
            result = backend.train_step(inputs, targets, state_prev(), lr, masks(run.step, inputs))
            seconds = time.perf_counter() - started
            run.train_seconds += seconds
            # a non-finite or exploded loss, a non-finite gradient or update: the backend made no update (or
            # undid it); stop, or drop the chunk (train.nonfinite)
            if result.skipped and tc.nonfinite == "stop":
                raise nonfinite_error(f"{step_problem(run.step, result, lr, guard, cfg)} (train.nonfinite=skip "
                                      f"would drop the step and go on)", cfg, run_dir)
            exploded = result.cause == "exploded"
            # advance the streams; the carried state is already detached (state_last has no history), and
            # one from a dropped chunk cannot be trusted
            run.hidden = zeros if result.skipped else result.state_last
            run.chunk += 1
            if run.chunk == len(train_batches):
                run.chunk, run.epoch, run.hidden = 0, run.epoch + 1, zeros
            # log
            monitor.step(run.step, result, lr, inputs.size * replicas.world_size, seconds)
            run.step += 1
            # every rank stops at the same step, and goes by the same clock
            stopped_by, run.train_seconds = replicas.agree(stop.signal, run.train_seconds,
                                                           clock=tc.max_seconds is not None)
        # stopped by a signal: keep the state between two steps; finished: evaluate the last step
        if stopped_by is not None:
            save("ckpt_last.npz")
        elif run.eval_step != run.step:
            evaluate_and_save()
        full_val_loss = None
        if stopped_by is None and tc.final_full_eval:
            full_val_loss = full_evaluation(backend, val_batches, full_val_batches, run.val_loss, spec, dtype,
                                            replicas, monitor, run.step)
        monitor.hparams(config_dict)
    if replicas.is_main:
        (run_dir / "result.json").write_text(json.dumps(
            dict(steps=run.step, train_seconds=run.train_seconds, val_loss=run.val_loss,
                 best_val_loss=run.best_val, val_bpc=run.val_loss / math.log(2), val_loss_full=full_val_loss),
            indent=2))
    return TrainResult(steps=run.step, train_seconds=run.train_seconds, val_loss=run.val_loss,
                       best_val_loss=run.best_val, run_dir=run_dir, stopped_by=stopped_by)
