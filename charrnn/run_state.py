"""A run's progress between two steps: what a checkpoint holds beyond the weights and the optimizer
state so that training continues exactly as if it had never stopped.

No random generator needs saving: initial weights come from the seed, batching is deterministic, and
each evaluation draws its sample from a generator seeded by (seed, step) (see trainer.py).
"""

import math
from dataclasses import dataclass, field, fields
from pathlib import Path


from charrnn.checkpoint import Checkpoint
from charrnn.checkpoint_fields import state_problem
from charrnn.errors import UserError


@dataclass
class RunState:
    hidden: tuple                  # (L, B, H) arrays: the recurrent state carried into the next chunk
    step: int = 0                  # training steps done
    epoch: int = 0
    chunk: int = 0                 # the next chunk of every train stream
    eval_step: int = -1            # the step last evaluated: a resumed run must not evaluate or log it twice
    val_loss: float = math.nan
    best_val: float = math.inf
    train_seconds: float = 0.0     # counts against train.max_seconds across resumes
    monitor: dict = field(default_factory=dict)  # Monitor.state_dict() as of the save: smoothed loss, open log interval

    def to_json(self) -> dict:
        """Everything but hidden, which the checkpoint keeps as arrays."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "hidden"}

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, path: Path, dtype: str, state_names: tuple[str, ...]) -> "RunState":
        """The run's progress, its carried state ordered by state_names (the model spec's)."""
        names = [f.name for f in fields(cls) if f.name != "hidden"]
        missing = [k for k in names if k not in ckpt.state]
        if missing:
            raise UserError(f"checkpoint {path} cannot be resumed: its state lacks {', '.join(missing)} "
                            f"(it predates exact resume); sample from it, or train afresh")
        problem = state_problem(ckpt.state, names)
        if problem:
            raise UserError(f"checkpoint {path} cannot be resumed: {problem}")
        lacking = [k for k in state_names if k not in ckpt.hidden]
        if lacking:
            raise UserError(f"checkpoint {path} cannot be resumed: its carried state lacks {', '.join(lacking)}, "
                            f"which its model's cell carries")
        return cls(hidden=tuple(ckpt.hidden[k].astype(dtype) for k in state_names), **{k: ckpt.state[k] for k in names})
