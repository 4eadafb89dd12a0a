"""The training loop, the same for every backend: it speaks only the interface in backends/interface.py.

    train(cfg, run_dir)        read the corpus, claim the run directory, start or resume the run
    Trainer.run()              the loop, in phases: evaluate and checkpoint; learning rate; forward,
                               backward, clip and update; a refused step; advance the streams; log; stop
"""

import contextlib
import itertools
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from charrnn.backends import Backend, StepResult, StepSettings, make_backend
from charrnn.backends.guard import CAUSES, ROUTINE
from charrnn.checkpoint import Checkpoint, load_checkpoint, resume_path, save_checkpoint
from charrnn.config import Config, config_to_dict
from charrnn.data import StreamBatcher, Vocab, load_ids, split
from charrnn.distributed import Muted, Ranks, join
from charrnn.errors import UserError
from charrnn.files import write_text_atomic
from charrnn.model import dropout_masks, init_params, spec_of, zero_state
from charrnn.monitor import Monitor
from charrnn.novelty import NoveltyIndex
from charrnn.generation import generate, quiet_overflow, start_ids
from charrnn.training.evaluation import evaluate, full_evaluation
from charrnn.training.finetune import Start, in_vocabulary, start_from
from charrnn.training.resume import Progress, config_header, resume, resume_dir
from charrnn.training.rundir import check_empty, claim
from charrnn.training.schedule import Schedule, epoch_budget
from charrnn.signals import StopRequest
from charrnn.threads import PhaseThreads


@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    val_loss: float
    best_val_loss: float
    run_dir: Path
    stopped_by: int | None  # the signal (SIGINT, SIGTERM) that stopped training early, if one did
    # Where the learning-rate schedule ended (charrnn.training.schedule): the cosine's progress (1: done),
    # the share of lr the warm-up had reached (None: past it), the last step's learning rate, and what a
    # resume with a new budget did to the schedule (None: nothing).
    schedule_progress: float = 1.0
    warmup: float | None = None
    lr: float = math.nan
    replanned: str | None = None
    epochs_ended: bool = False  # train.max_epochs ended the run, before train.max_iters and the clock


def train(cfg: Config, run_dir: Path, on_start=None, command: str | None = None) -> TrainResult:
    """Train afresh into run_dir (from train.init_from's weights, if given) or, with train.resume, continue
    that checkpoint's run in its own directory (so TensorBoard shows one unbroken run) exactly as if it had
    never stopped; resumed from an earlier point than where that run stopped, it forks into run_dir instead
    (see resume_dir). The directory is locked for the whole run; on_start(run_dir) is called once the run is
    accepted, before anything is written; command is the command line, for TensorBoard's config card.
    The corpus is read first: a mistake in the command is named before the directory is looked at."""
    # this process's rank and streams, under torchrun (charrnn.distributed); one process otherwise
    replicas = join(cfg.train.batch_size, cfg.backend.device)
    # a signal stops the run at once until training begins, then asks it to stop after a step
    with StopRequest(repeat_raises=replicas.world_size == 1, immediate=True) as stop:
        vocab, ids = load_ids(cfg.data)
        note, start = None, None
        if cfg.train.resume is not None:
            run_dir, note = resume_dir(cfg.train.resume, run_dir)
            if cfg.train.init_from is not None:
                # a fine-tuned run's vocabulary holds its corpus's characters and its first checkpoint's
                symbols = load_checkpoint(resume_path(cfg.train.resume)).vocab
                if np.isin(vocab.symbols, symbols).all():
                    vocab, ids = in_vocabulary(symbols, vocab, ids)
        elif cfg.train.init_from is not None:
            start = start_from(cfg, vocab, ids)
            vocab, ids = start.vocab, start.ids
        # rank 0 alone writes into the run directory, so it alone owns it
        with claim(run_dir) if replicas.is_main else contextlib.nullcontext():
            trainer = Trainer(cfg, run_dir, vocab, ids, replicas, forked=note is not None, start=start)
            if on_start and replicas.is_main:
                on_start(run_dir)
            trainer.announce(len(ids), note, command)
            return trainer.run(stop)


SAMPLE_SEED_STEPS = 10**9


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


class Trainer:
    """One run between its start and its end: the backend, the batches, the progress and the monitor."""

    # What a training step's time is read from (tests give a fake one).
    clock = staticmethod(time.perf_counter)

    def __init__(self, cfg: Config, run_dir: Path, vocab: Vocab, ids: np.ndarray, replicas: Ranks, forked: bool,
                 start: Start | None = None):
        """A fresh run (from start's weights, when fine-tuning), or (train.resume) the checkpoint's, checked
        against this corpus and config."""
        tc = cfg.train
        self.cfg, self.run_dir, self.vocab, self.replicas = cfg, run_dir, vocab, replicas
        self.train_batches, self.full_val_batches = make_batchers(cfg, ids)
        # the budget the run goes by: cfg.train's, train.max_epochs turned into steps where they come first
        self.tc = tc = epoch_budget(tc, len(self.train_batches))
        self.val_batches = self.full_val_batches.head(tc.eval_chars)
        self.spec, self.dtype = spec_of(cfg.model, len(vocab)), cfg.model.dtype
        self.zeros = zero_state(self.spec, tc.batch_size // replicas.world_size, self.dtype)
        if replicas.is_main and (tc.resume is None or forked):
            check_empty(run_dir)
        self.backend: Backend
        if tc.resume is None:
            params = start.params if start else init_params(self.spec, cfg.model.init, cfg.model.init_std, cfg.seed,
                                                            self.dtype, cfg.model.forget_bias)
            self.backend = make_backend(cfg.backend.name, self.spec, params, StepSettings.from_config(cfg, len(vocab)),
                                        cfg.backend.device, replicas)
            self.progress = Progress(state=self.zeros, init_from=start.origin if start else None)
        else:
            self.backend, self.progress = resume(cfg, vocab, len(self.train_batches), run_dir, replicas)
            if forked:  # another run from here on, with an identity of its own
                self.progress.run_id = Progress(state=()).run_id
        p = self.progress
        self.schedule = Schedule(tc, cfg.optim.lr, p.schedule, p.step, p.train_seconds)
        p.segments.append({"from_step": p.step, "max_iters": cfg.train.max_iters, "max_seconds": tc.max_seconds})
        # after the backend, which loads torch if it needs it
        self.threads = PhaseThreads()
        self.guard = self.backend.settings.guard
        self.config_dict = config_to_dict(cfg)
        # the last step's loss was above guard.max_loss: the weights are not worth saving
        self.exploded = False
        self.monitor = Muted()

    def announce(self, corpus_length: int, note: str | None, command: str | None = None) -> None:
        """Write the run's config and open its monitor (rank 0), then the run's first lines."""
        p, tc = self.progress, self.tc
        if self.replicas.is_main:
            write_config(self.run_dir, self.config_dict, p.run_id)
            novelty = NoveltyIndex(self.train_batches.ids, self.full_val_batches.ids, self.vocab)
            self.monitor = Monitor(self.run_dir, tc.max_iters, p.step, tc.log_interval, tc.clip_mode, p.monitor,
                                   tc.max_seconds, p.train_seconds, novelty, config=self.config_dict,
                                   command=command)
        vocab, shortened = self.vocab, self.val_batches is not self.full_val_batches
        self.monitor.write(
            f"{corpus_length:,} {'bytes' if vocab.is_bytes else 'chars'}, vocabulary {len(vocab)}, "
            f"{self.train_batches.num_targets:,} train / {self.val_batches.num_targets:,} val predictions per pass"
            f"{' (train.eval_chars of the split)' if shortened else ''}; run directory {self.run_dir}; "
            f"{self.threads.describe()}" + (f"; resuming at step {p.step}" if p.step else ""))
        if note:
            self.monitor.write(note)
        if self.schedule.note:
            self.monitor.schedule_note(p.step, self.schedule.note)
        if tc.max_seconds is not None:
            capped = (f"; train.max_epochs={tc.max_epochs:g} ends it at step {tc.max_iters:,} if the clock has not"
                      if tc.max_iters < self.cfg.train.max_iters else "")
            self.monitor.write(self.schedule.plan() + capped)

    def run(self, stop: StopRequest) -> TrainResult:
        p, tc = self.progress, self.tc
        lr = math.nan
        with self.monitor, quiet_overflow(), self.threads.phase("training"):
            self.replicas.watch(stop)
            stop.begin_training()
            stopped_by = None
            while not p.finished(tc) and stopped_by is None:
                # evaluate, sample and checkpoint every eval_interval steps or share of the clock, unless a
                # resumed run starts at a step already evaluated (evaluation time is not training time); a
                # signal abandons it
                due = self.schedule.evaluation_due(p.step, p.train_seconds) if p.step else tc.eval_at_start
                if due and p.eval_step != p.step:
                    if not self.evaluate_and_save(stop):
                        stopped_by = stop.signal or signal.SIGTERM
                        break
                # learning rate for this step: a warm-up, then the schedule, by steps or by the clock
                lr = self.schedule.next_lr(p.step, p.train_seconds)
                for news in self.schedule.pop_news():
                    self.monitor.write(news)
                # forward, backward, clip and update on the next chunk of every stream
                inputs, targets = self.replicas.local(*self.train_batches.chunk(p.chunk))
                started = self.clock()
                result = self.backend.train_step(inputs, targets, self.state_prev(), lr, self.masks(p.step, inputs))
                seconds = self.clock() - started
                # a step the backend refused or undid (a non-finite or exploded loss, gradient or update):
                # stop, or drop the chunk (train.nonfinite)
                if result.skipped and result.cause not in ROUTINE and tc.nonfinite == "stop":
                    raise self.nonfinite_error(f"{self.step_problem(result, lr)} (train.nonfinite=skip would "
                                               f"drop the step and go on)")
                self.exploded = result.cause == "exploded"
                # advance the streams: the carried state is already detached, and one from a dropped chunk
                # cannot be trusted
                self.advance(result, seconds)
                # log
                self.monitor.step(p.step, result, lr, inputs.size * self.replicas.world_size, seconds,
                                  epoch=p.epoch + p.chunk / len(self.train_batches))
                p.step += 1
                # every rank stops at the same step, and goes by the same clock
                stopped_by, p.train_seconds = self.replicas.agree(stop.signal, p.train_seconds,
                                                                  clock=tc.max_seconds is not None)
                self.schedule.record(p.train_seconds, inputs.shape[1] / tc.seq_length)
            # finished: evaluate the last step; stopped by a signal, there or before: keep the state between
            # two steps (an evaluation it interrupted is left for a resume to repeat)
            if stopped_by is None and p.eval_step != p.step and not self.evaluate_and_save(stop):
                stopped_by = stop.signal or signal.SIGTERM
            epochs_ended = stopped_by is None and self.epochs_ended()
            if epochs_ended:
                clock = f", {p.train_seconds:.3g} s of train.max_seconds={tc.max_seconds:g}" if tc.max_seconds else ""
                self.monitor.write(f"train.max_epochs={tc.max_epochs:g} reached at step {p.step:,}{clock}: the run "
                                   f"and its cosine end here (train.max_epochs=null trains on)")
            if stopped_by is not None:
                self.save("ckpt_last.npz")
            full_val_loss = None
            if stopped_by is None and tc.final_full_eval:
                with self.threads.phase("evaluation"):
                    full_val_loss = full_evaluation(self.backend, self.val_batches, self.full_val_batches,
                                                    p.val_loss, self.spec, self.dtype, self.replicas, self.monitor,
                                                    p.step, stop.stopping)
                if full_val_loss is None:
                    stopped_by = stop.signal or signal.SIGTERM
            self.monitor.hparams(self.config_dict)
        if self.replicas.is_main:
            write_text_atomic(self.run_dir / "result.json", json.dumps(
                dict(steps=p.step, train_seconds=p.train_seconds, val_loss=p.val_loss, best_val_loss=p.best_val,
                     val_bpc=p.val_loss / math.log(2), val_loss_full=full_val_loss, run_id=p.run_id), indent=2))
        # where the schedule stands once the steps taken are done
        schedule = self.schedule
        progress = schedule.progress(p.step, p.train_seconds)
        return TrainResult(steps=p.step, train_seconds=p.train_seconds, val_loss=p.val_loss,
                           best_val_loss=p.best_val, run_dir=self.run_dir, stopped_by=stopped_by,
                           schedule_progress=min(progress, 1.0) if tc.lr_schedule == "cosine" else 1.0,
                           warmup=schedule.warmed / tc.warmup_iters if schedule.warming_up else None, lr=lr,
                           replanned=schedule.note, epochs_ended=epochs_ended)

    def epochs_ended(self) -> bool:
        """Whether train.max_epochs ended the run, before train.max_iters and the clock."""
        p, tc = self.progress, self.tc
        clock_ended = tc.max_seconds is not None and p.train_seconds >= tc.max_seconds
        return p.step >= tc.max_iters and tc.max_iters < self.cfg.train.max_iters and not clock_ended

    def state_prev(self) -> tuple:
        """The state the next chunk starts from: the last chunk's, or zeros with train.reset_state."""
        return self.zeros if self.cfg.train.reset_state else self.progress.state

    def masks(self, step: int, inputs: np.ndarray) -> tuple | None:
        """Training step `step`'s dropout masks for this rank's streams of the chunk inputs (B, T) (an epoch's
        last chunk may be shorter): drawn for every stream, so that any number of ranks applies the same."""
        cfg = self.cfg
        drawn = dropout_masks(cfg.model.dropout, self.spec, cfg.train.batch_size, inputs.shape[1], cfg.seed, step,
                              self.dtype)
        return None if drawn is None else self.replicas.shard(drawn)

    def advance(self, result: StepResult, seconds: float) -> None:
        """On to the next chunk of every stream, and to the next epoch (from zero states) after the last."""
        p = self.progress
        p.train_seconds += seconds
        p.state = self.zeros if result.skipped and result.cause not in ROUTINE else result.state_last
        p.chunk += 1
        if p.chunk == len(self.train_batches):
            p.chunk, p.epoch, p.state = 0, p.epoch + 1, self.zeros

    def evaluate_and_save(self, stop: StopRequest) -> bool:
        """The validation loss of the weights now (every rank), then ckpt_best.npz if it improved and
        ckpt_last.npz, then the monitor's figures and a sample (rank 0): saved first, so that output that
        fails loses nothing. False, with nothing saved or shown, if a signal interrupted it."""
        p, tc = self.progress, self.cfg.train
        with self.threads.phase("evaluation"):
            val_loss = evaluate(self.backend, self.val_batches, self.spec, self.dtype, self.replicas, stop.stopping)
        if val_loss is None:
            return False
        p.val_loss = val_loss
        if not p.val_loss <= self.guard.max_loss:  # NaN too
            raise self.nonfinite_error(f"step {p.step}: the validation loss is {p.val_loss:.4g}, the weights have "
                                       f"blown up (train.max_loss_ratio={tc.max_loss_ratio} x ln(V) = "
                                       f"{self.guard.max_loss:.4g} is the most a working model scores)")
        # the sample (rank 0) is drawn first, as a signal may cut it short; every rank learns whether it did
        shown = self.show_evaluation(stop) if self.replicas.is_main else None
        if self.replicas.sum(float(shown is None and self.replicas.is_main)):
            return False
        p.eval_step = p.step
        self.schedule.evaluated(p.train_seconds)
        improved = p.val_loss < p.best_val
        p.best_val = min(p.best_val, p.val_loss)
        # best first: a kill between the two writes leaves ckpt_last.npz before this step, which a resume
        # repeats, evaluating and writing both again
        self.save(*(["ckpt_best.npz"] if improved else []), "ckpt_last.npz")
        if shown is not None:
            sample, params, grads, drawn = shown
            self.monitor.evaluation(p.step, p.val_loss, sample, params, grads, best_val_loss=p.best_val,
                                    train_seconds=p.train_seconds, sample_settings=drawn)
        return True

    def show_evaluation(self, stop: StopRequest) -> tuple | None:
        """What the monitor shows of an evaluation: a sample, the weights, the gradients of the next chunk
        (how far back they reach) and the sample's settings; None if a signal cut the sample short."""
        p, cfg = self.progress, self.cfg
        # sample.py's options, a seed of each step's own, not one long stream, so that a resumed run, or one
        # whose extra final evaluation came in between, draws the same sample at each step as an unbroken run;
        # one whole number (seed, then the step in 9 digits), so that sample.py seed=N draws it again
        drawn = {"temperature": 1.0, "length": cfg.train.sample_length, "prime": "",
                 "seed": cfg.seed * SAMPLE_SEED_STEPS + p.step % SAMPLE_SEED_STEPS}
        with self.threads.phase("sampling"):
            ids = generate(self.backend, start_ids(self.vocab, drawn["prime"]), zero_state(self.spec, 1, self.dtype),
                           drawn["length"], np.random.default_rng(drawn["seed"]), drawn["temperature"])
            sample_ids = list(itertools.takewhile(lambda _: not stop.stopping(), ids))
        if stop.stopping():
            return None
        # the chunk training reads next (this rank's streams), from the state it starts from
        inputs, targets = self.replicas.local(*self.train_batches.chunk(p.chunk))
        with self.threads.phase("evaluation"):
            grads = self.backend.gradients(inputs, targets, self.state_prev(), self.masks(p.step, inputs))
        return self.vocab.decode(sample_ids), self.backend.export_params(), grads, drawn

    def save(self, *names: str) -> None:
        """Checkpoint the run as of now into each of names (rank 0; every rank gives its streams' state)."""
        p = self.progress
        if self.exploded:
            raise self.nonfinite_error(f"step {p.step}: not saving, the model has exploded (the last step's loss "
                                       f"was above {self.guard.max_loss:.4g})")
        state = self.replicas.gather(p.state)
        if not self.replicas.is_main:
            return
        p.monitor = self.monitor.state_dict()
        p.schedule = self.schedule.state_dict()
        ckpt = Checkpoint(params=self.backend.export_params(), optimizer_state=self.backend.export_optimizer_state(),
                          vocab=self.vocab.symbols, config=self.config_dict,
                          progress={**p.to_json(), "backend": self.cfg.backend.name},
                          state=dict(zip(self.spec.state_names, state)))
        for name in names:
            save_checkpoint(self.run_dir / name, ckpt)

    def step_problem(self, result: StepResult, lr: float) -> str:
        """What went wrong at a step the backend refused or undid (result.cause), with its figures."""
        step, figures = self.progress.step, f"loss {result.loss:.4g} nats/char, gradient norm {result.grad_norm:.4g}"
        if result.cause == "exploded":
            return (f"step {step}: the loss has exploded ({figures}; train.max_loss_ratio="
                    f"{self.cfg.train.max_loss_ratio} x ln(V) = {self.guard.max_loss:.4g} is the most a learning "
                    f"model scores), so no update was made")
        if result.cause == "update":
            return f"step {step}: {CAUSES['update']} ({figures}, both finite; lr {lr:.4g}), so it was not kept"
        return f"step {step}: {CAUSES[result.cause]} ({figures}), so no update was made"

    def nonfinite_error(self, problem: str) -> UserError:
        """Training cannot go on: what happened, its likely cause, and that the last checkpoint is intact."""
        cfg, last = self.cfg, self.run_dir / "ckpt_last.npz"
        if self.progress.step == 0 and cfg.train.resume is None:  # no update made: the start is to blame
            return UserError(f"{problem}; likely cause: initial weights too large, model.init={cfg.model.init} "
                             f"model.init_std={cfg.model.init_std}: lower model.init_std; nothing was saved")
        kept = f"{last} holds the last good state" if last.exists() else "no checkpoint was written yet"
        if cfg.train.clip_mode == "none":
            cause = f"optim.lr={cfg.optim.lr} on unclipped gradients: lower it, or clip (train.clip_mode=norm)"
        else:
            cause = f"optim.lr={cfg.optim.lr}: lower it, or clip harder (train.grad_clip={cfg.train.grad_clip})"
        return UserError(f"{problem}; likely cause: a learning rate too high, {cause}; nothing new was saved, "
                         f"{kept}")


def write_config(run_dir: Path, config_dict: dict, run_id: str) -> None:
    """The run directory's first file, headed by the run's identity: a directory that cannot be written
    fails here, before training."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", f"{config_header(run_id)}\n{OmegaConf.to_yaml(config_dict)}")
    except OSError as e:
        raise UserError(f"cannot write to the run directory {run_dir}: {e.strerror}; "
                        f"name a writable one with hydra.run.dir=PATH") from None
