"""When a training step must leave the weights as they were: the checks every backend makes around
its optimizer update, and the reasons it reports (StepResult.cause) for the trainer to name.

Before the update: a loss or gradient that is not finite, or a loss that has exploded (above
max_loss, a multiple of ln V, the loss of a uniform guess over the V characters: char-rnn stops
at 3x its first loss; ln V is what a fresh model's first loss is near, and unlike a measured first
loss it is the same for a resumed run). After the update: a weight or optimizer state that the
update itself made non-finite (finite gradients at an absurd learning rate overflow float32).
That update is undone when `undo` is set, at the price of a copy of the weights and optimizer
state per step; without it the trainer stops and never saves the broken weights.
"""

import math
from dataclasses import dataclass

import numpy as np

from charrnn.optim import global_norm


# StepResult.cause values, in the words the trainer's message uses.
CAUSES = {
    "loss": "the loss is not finite",
    "gradient": "a gradient is not finite",
    "exploded": "the loss has exploded",
    "update": "the update made a weight or the optimizer state non-finite",
    "overflow": "the fp16 gradients overflowed, so the gradient scaler skipped the step and lowered its scale",
}
# Causes that are part of training as it should go, not a sign of a broken model: the step is dropped and
# training goes on, whatever train.nonfinite says (fp16's scaler expects a few, mostly at the start).
ROUTINE = ("overflow",)


@dataclass(frozen=True)
class StepGuard:
    max_loss: float = math.inf  # nats/char; above it a step is refused as exploded (StepSettings.from_config)
    undo: bool = False          # keep a copy to undo an update that came out non-finite

    def refusal(self, loss: float, grad_norms: dict[str, float]) -> str | None:
        """Why no update may be made from this loss and these gradients (a CAUSES key), or None.
        A NaN or infinity anywhere in a gradient reaches its norm."""
        if not math.isfinite(loss):
            return "loss"
        if not math.isfinite(global_norm(grad_norms)):
            return "gradient"
        if loss > self.max_loss:
            return "exploded"
        return None


def all_finite(arrays) -> bool:
    """Whether every element of every array is finite. A sum carries any NaN or infinity through, so
    one cheap reduction answers for a finite array; only a sum that overflowed needs the full test."""
    return all(np.isfinite(a.sum()) or np.isfinite(a).all() for a in arrays)
