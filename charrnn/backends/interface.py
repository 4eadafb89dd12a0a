"""The one small interface every backend meets. The trainer, sampler and checkpoints use nothing else.

Arrays cross it as NumPy: ids (B, T) int, the recurrent state as a tuple of (L, B, H) arrays
(charrnn.model.zero_state's layout: (h,) or, for the LSTM, (h, c)), dropout masks as None or a tuple
of L (T, B, H) arrays (charrnn.model.dropout_masks), weights under the names of charrnn.model. A
backend owns its model spec, its parameters, its optimizer and its gradient clipping; it is built by
charrnn.backends.make_backend from the spec, the initial weights and StepSettings.
"""

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from charrnn.backends.guard import StepGuard
from charrnn.distributed import Ranks
from charrnn.optim import global_norm


@dataclass(frozen=True)
class StepSettings:
    """What a training step does beyond the model's math, the same for every backend."""

    optim: object                    # the config of one of charrnn.optim.OPTIMIZERS
    clip_mode: str = "norm"          # norm | value | none (charrnn.optim.clip_gradients)
    grad_clip: float = 5.0
    loss_reduction: str = "mean"     # mean over the chunk's predictions | sum (min-char-rnn's)
    guard: StepGuard = field(default_factory=StepGuard)
    # the torch backend's alone (the NumPy backend computes in the weights' dtype, on its own loop):
    precision: str = "fp32"          # fp32 | bf16 | fp16 (charrnn.backends.torch_precision)
    recurrence: str = "auto"         # auto | fused | loop (charrnn.backends.torch_fused)

    @classmethod
    def from_config(cls, cfg, vocab_size: int) -> "StepSettings":
        """The settings a run's config (charrnn.config.Config) gives, for a V-character vocabulary."""
        ratio = cfg.train.max_loss_ratio
        guard = StepGuard(max_loss=math.inf if ratio is None else ratio * math.log(vocab_size),
                          undo=cfg.train.nonfinite == "skip")
        return cls(optim=cfg.optim, clip_mode=cfg.train.clip_mode, grad_clip=cfg.train.grad_clip,
                   loss_reduction=cfg.train.loss_reduction, guard=guard, precision=cfg.backend.precision,
                   recurrence=cfg.backend.recurrence)


@dataclass
class StepResult:
    loss: float                            # mean cross-entropy over the chunk, nats per character
    state_last: tuple                      # (L, B, H) arrays: the state after the chunk, detached, the next chunk's
    grad_norms: dict[str, float]           # L2 norm of each parameter's gradient, before clipping
    clipped_grad_norms: dict[str, float]   # the same after clipping (what the optimizer used)
    skipped: bool                          # no update was made, or it was undone (see guard.py)
    cause: str | None = None               # why, when skipped: a guard.CAUSES key

    @property
    def grad_norm(self) -> float:
        return global_norm(self.grad_norms)

    @property
    def clipped_grad_norm(self) -> float:
        return global_norm(self.clipped_grad_norms)


@dataclass
class Gradients:
    """A chunk's gradients, to look at rather than to train on."""

    params: dict[str, np.ndarray]   # dL/dW under the model's names, before clipping
    dh_norms: np.ndarray            # (L, T) |dL/dh_t| (L2 over H, averaged over the B streams) of layer l
                                    # (row l, 0 = the bottom layer) at each step t


class Backend(Protocol):
    settings: StepSettings
    # The ranks whose gradients train_step averages between backward and clipping (charrnn.distributed).
    replicas: Ranks

    def train_step(self, inputs: np.ndarray, targets: np.ndarray, state: tuple, lr: float,
                   masks: tuple | None = None) -> StepResult:
        """Forward (with the dropout masks, if any), backward through the chunk, replicas.average_ of the
        gradients, clip, and one optimizer update at learning rate lr, unless the backend's StepGuard refuses
        it (a loss or gradient not finite, a loss exploded): then weights and optimizer state stay as they
        were, and the result says skipped and why. An update that comes out non-finite is reported the same
        way, and undone if the guard keeps an undo copy."""

    def gradients(self, inputs: np.ndarray, targets: np.ndarray, state: tuple, masks: tuple | None = None) -> Gradients:
        """The gradients of the chunk's loss, as train_step differentiates it, without updating anything."""

    def evaluate(self, inputs: np.ndarray, targets: np.ndarray, state: tuple) -> tuple[float, tuple]:
        """Mean cross-entropy (nats) over the chunk without dropout or updates, and the state after it."""

    def step_logits(self, x: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        """One step without dropout: x (B,) ids, state -> logits (B, V) for the next character, new state."""

    def export_params(self) -> dict[str, np.ndarray]:
        """A copy of the weights as NumPy arrays under their model names."""

    def export_optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimizer state as flat NumPy arrays (see charrnn.optim for the key names)."""

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state written by export_optimizer_state of either backend."""
