"""Validation loss: every stream of a batcher read in order, its state carried from chunk to chunk.

A large corpus's val split is too long to read at every evaluation (100 MB of a 1 GB corpus is minutes
of forward passes), so train.eval_chars bounds one evaluation to the split's first eval_chars ids: the
same contiguous stretch every time, so that every point of the val curve measures the same text.
train.final_full_eval reads the whole split once more after the last step.
"""

import numpy as np
from tqdm import tqdm

from charrnn.batching import StreamBatcher

BAR_DELAY = 2.0  # seconds: an evaluation that takes longer shows a bar of its own under training's


def evaluate(backend, batcher: StreamBatcher, hidden_size: int, dtype: str, progress: bool = True) -> float:
    """Mean nats/char over all the batcher's chunks."""
    h = np.zeros((batcher.batch_size, hidden_size), dtype)
    total = 0.0
    with tqdm(total=len(batcher), desc="evaluating", unit="chunk", leave=False, delay=BAR_DELAY,
              disable=not progress) as bar:
        for k in range(len(batcher)):
            inputs, targets = batcher.chunk(k)
            loss, h = backend.evaluate(inputs, targets, h)
            total += loss * inputs.size
            bar.update()
    return total / batcher.num_targets


def full_evaluation(backend, val_batches: StreamBatcher, full_val_batches: StreamBatcher, val_loss: float,
                    hidden_size: int, dtype: str, monitor, step: int) -> float:
    """The val loss over the whole split (val_loss, if the budget already covered it), shown and logged
    as loss/val_full."""
    if full_val_batches is not val_batches:
        val_loss = evaluate(backend, full_val_batches, hidden_size, dtype)
    monitor.writer.add_scalar("loss/val_full", val_loss, step)
    monitor.writer.flush()
    monitor.write(f"step {step}: val {val_loss:.4f} nats/char over the whole val split "
                  f"({full_val_batches.num_targets:,} predictions)")
    return val_loss
