"""backend.precision for the torch backend: mixed precision by autocast, the weights, their gradients and
the optimizer state kept in float32, so that checkpoints are what an fp32 run writes.

    fp32  the weights' own dtype (model.dtype float32 or float64) throughout: no autocast
    bf16  autocast to bfloat16: the matrix products and the recurrence in bf16 (8 bits of mantissa),
          the loss and softmax in float32; bf16 has float32's range, so gradients need no scaling
    fp16  autocast to float16 (CUDA only), with torch's gradient scaler: the loss is multiplied by a scale
          (2^16 to start) before backward, so that small gradients do not flush to zero in fp16's narrow
          range, and the gradients divided by it before clipping. A step whose gradients overflowed is
          skipped (StepResult.cause "overflow": routine, not an explosion; the trainer goes on) and the
          scale halved; after 2000 steps without one it doubles. The scale travels in the checkpoint's
          optimizer state (optim/scaler/...), so a resumed fp16 run continues bit-exact.

Which device takes which precision is charrnn.devices' table.
"""

import contextlib

import numpy as np
import torch

from charrnn.optim import SCALER_KEYS

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """One run's arithmetic: the autocast context of its forward passes and, for fp16, its gradient scaler."""

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.device = device
        self.dtype = AUTOCAST_DTYPES[name]
        # A disabled scaler passes everything through: scale(loss) is loss, unscale_ and update do nothing.
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")

    @property
    def scaling(self) -> bool:
        return self.scaler.is_enabled()

    def autocast(self):
        """The context of a forward pass: autocast to bf16 or fp16, or nothing for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def loss_scale(self) -> float:
        """What backward multiplied the gradients by (1 unless fp16 scales them)."""
        return float(self.scaler.get_scale()) if self.scaling else 1.0

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale (before clipping, which must see the true gradients)."""
        self.scaler.unscale_(optimizer)

    def update(self) -> None:
        """After every step that unscaled: halve the scale after an overflow, else count towards doubling it."""
        self.scaler.update()

    def state_dict(self) -> dict[str, np.ndarray]:
        """The scaler's state as flat arrays (none without a scaler)."""
        if not self.scaling:
            return {}
        state = self.scaler.state_dict()
        return {"scaler/scale": np.array(state["scale"], np.float64),
                "scaler/growth_tracker": np.array(state["_growth_tracker"], np.int64)}

    def load_state_dict(self, flat: dict[str, np.ndarray]) -> None:
        """Restore what state_dict wrote; a checkpoint without it (another precision's) keeps a fresh scaler."""
        if self.scaling and all(k in flat for k in SCALER_KEYS):
            self.scaler.load_state_dict({**self.scaler.state_dict(), "scale": float(flat["scaler/scale"]),
                                         "_growth_tracker": int(flat["scaler/growth_tracker"])})
