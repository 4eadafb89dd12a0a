"""The training loop, the same for every backend: it speaks only the interface in backends/interface.py."""

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from charrnn.backends import make_backend
from charrnn.batching import StreamBatcher
from charrnn.checkpoint import Checkpoint, save_checkpoint
from charrnn.config import Config, config_to_dict
from charrnn.data import Vocab, load_text, split
from charrnn.errors import UserError
from charrnn.model import init_params
from charrnn.monitor import Monitor
from charrnn.optim import learning_rate
from charrnn.sampling import generate


@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    val_loss: float
    best_val_loss: float
    run_dir: Path


def evaluate(backend, batcher: StreamBatcher, hidden_size: int, dtype: str) -> float:
    """Mean nats/char over the whole split, each stream read in order with its hidden state carried."""
    h = np.zeros((batcher.batch_size, hidden_size), dtype)
    total = 0.0
    for k in range(len(batcher)):
        inputs, targets = batcher.chunk(k)
        loss, h = backend.evaluate(inputs, targets, h)
        total += loss * inputs.size
    return total / batcher.num_targets


def run_progress(step: int, train_seconds: float, tc) -> float:
    """Fraction of the run's budget spent: whichever of max_iters and max_seconds binds first.
    Without max_seconds it depends on the step alone, so runs are reproducible to the bit; with it
    the schedule follows the clock, so a short budget still anneals fully."""
    progress = step / tc.max_iters
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


def train(cfg: Config, run_dir: Path) -> TrainResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    text = load_text(cfg.data)
    vocab = Vocab.from_text(text)
    train_batches, val_batches = make_batchers(cfg, vocab.encode(text))
    H, dtype = cfg.model.hidden_size, cfg.model.dtype
    params = init_params(len(vocab), H, cfg.model.init, cfg.model.init_std, cfg.seed, dtype)
    backend = make_backend(cfg, params)
    config_dict = config_to_dict(cfg)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config_dict))
    sample_rng = np.random.default_rng(cfg.seed)
    zeros = np.zeros((tc.batch_size, H), dtype)

    step, epoch, chunk, h = 0, 0, 0, zeros
    best_val, val_loss, train_seconds = math.inf, math.nan, 0.0
    monitor = Monitor(run_dir, tc.max_iters, step, tc.log_interval)
    monitor.write(f"{len(text):,} chars, vocabulary {len(vocab)}, {train_batches.num_targets:,} train / "
                  f"{val_batches.num_targets:,} val predictions per pass; run directory {run_dir}")

    def evaluate_and_save() -> None:
        nonlocal best_val, val_loss
        val_loss = evaluate(backend, val_batches, H, dtype)
        prime = vocab.encode("\n") if "\n" in vocab.chars else np.array([0])
        sample_ids = generate(backend, prime, np.zeros((1, H), dtype), tc.sample_length, sample_rng)
        monitor.evaluation(step, val_loss, vocab.decode(list(sample_ids)))
        state = dict(step=step, epoch=epoch, chunk=chunk, best_val=min(best_val, val_loss),
                     val_loss=val_loss, train_seconds=train_seconds, backend=cfg.backend.name)
        ckpt = Checkpoint(params=backend.export_params(), optimizer_state=backend.export_optimizer_state(),
                          vocab=vocab.code_points, config=config_dict, state=state, h=h)
        save_checkpoint(run_dir / "ckpt_last.npz", ckpt)
        if val_loss < best_val:
            best_val = val_loss
            save_checkpoint(run_dir / "ckpt_best.npz", ckpt)

    try:
        while step < tc.max_iters and (tc.max_seconds is None or train_seconds < tc.max_seconds):
            # evaluate, sample and checkpoint (evaluation time is not training time)
            if step % tc.eval_interval == 0:
                evaluate_and_save()
            # learning rate for this step
            lr = learning_rate(step, run_progress(step, train_seconds, tc), cfg.optim.lr, tc.lr_schedule,
                               tc.warmup_iters, tc.min_lr)
            # forward, backward, clip, update on the next chunk of every stream
            inputs, targets = train_batches.chunk(chunk)
            started = time.perf_counter()
            result = backend.train_step(inputs, targets, zeros if tc.reset_state else h, lr)
            seconds = time.perf_counter() - started
            train_seconds += seconds
            if not math.isfinite(result.loss):
                raise UserError(f"the loss became {result.loss} at step {step}; lower optim.lr or clip "
                                f"gradients (train.clip_mode=norm train.grad_clip=5)")
            # advance the streams; the carried state is already detached (h_last has no history)
            h = result.h_last
            chunk += 1
            if chunk == len(train_batches):
                chunk, epoch, h = 0, epoch + 1, zeros
            # log
            monitor.step(step, result, lr, inputs.size, seconds)
            step += 1
        evaluate_and_save()
    finally:
        monitor.close()
    (run_dir / "result.json").write_text(json.dumps(
        dict(steps=step, train_seconds=train_seconds, val_loss=val_loss, best_val_loss=best_val,
             val_bpc=val_loss / math.log(2)), indent=2))
    return TrainResult(steps=step, train_seconds=train_seconds, val_loss=val_loss, best_val_loss=best_val,
                       run_dir=run_dir)
