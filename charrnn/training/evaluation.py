"""Validation loss: every stream of a batcher read in order, its state carried from chunk to chunk.

A large corpus's val split is too long to read at every evaluation (100 MB of a 1 GB corpus is minutes
of forward passes), so train.eval_chars bounds one evaluation to the split's first eval_chars ids: the
same contiguous stretch every time, so that every point of the val curve measures the same text.
train.final_full_eval reads the whole split once more after the last step.
"""

from collections.abc import Callable

from tqdm import tqdm

from charrnn.data.batching import StreamBatcher
from charrnn.distributed import SOLO, Ranks
from charrnn.model import ModelSpec, zero_state

BAR_DELAY = 2.0  # seconds: an evaluation that takes longer shows a bar of its own under training's


def evaluate(backend, batcher: StreamBatcher, spec: ModelSpec, dtype: str, replicas: Ranks = SOLO,
             stopping: Callable[[], bool] = lambda: False) -> float | None:
    """Mean nats/char over all the batcher's chunks; under torchrun each rank reads its share of the
    streams and the sums are added across ranks (rank 0 alone shows a bar). None if stopping() turned
    true before the end (a signal): every rank learns it with the sums."""
    rows = replicas.streams(batcher.batch_size)
    state = zero_state(spec, rows.stop - rows.start, dtype)
    total, interrupted = 0.0, False
    with tqdm(total=len(batcher), desc="evaluating", unit="chunk", leave=False, delay=BAR_DELAY,
              disable=not replicas.is_main) as bar:
        for k in range(len(batcher) if rows.stop > rows.start else 0):
            if stopping():
                interrupted = True
                break
            inputs, targets = batcher.chunk(k)
            loss, state = backend.evaluate(inputs[rows], targets[rows], state)
            total += loss * inputs[rows].size
            bar.update()
    total = replicas.sum(total)
    if replicas.sum(float(interrupted)):
        return None
    return total / batcher.num_targets


def full_evaluation(backend, val_batches: StreamBatcher, full_val_batches: StreamBatcher, val_loss: float,
                    spec: ModelSpec, dtype: str, replicas: Ranks, monitor, step: int,
                    stopping: Callable[[], bool] = lambda: False) -> float | None:
    """The val loss over the whole split (val_loss, if the budget already covered it), shown and logged
    as loss_full of the val curves; None if a signal interrupted it."""
    if full_val_batches is not val_batches:
        val_loss = evaluate(backend, full_val_batches, spec, dtype, replicas, stopping)
    if val_loss is not None:
        monitor.full_evaluation(step, val_loss, full_val_batches.num_targets)
    return val_loss
