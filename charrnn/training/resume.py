"""Continuing a run: its progress between two steps (what a checkpoint holds beyond the weights and the
optimizer state), the directory it continues in, and the checks that it can continue at all (the
config it continues with is charrnn.config.run_config's).

No random generator needs saving: initial weights come from the seed, batching is deterministic, and
each evaluation draws its sample from a generator seeded by (seed, step) (see loop.py).
"""

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from charrnn.backends import Backend
from charrnn.checkpoint import Checkpoint, load_checkpoint, restore_backend, resume_path
from charrnn.checkpoint.fields import OPTIONAL, optimizer_problem, progress_problem
from charrnn.config import Config, lookup
from charrnn.data import Vocab
from charrnn.distributed import SOLO, Solo
from charrnn.errors import UserError
from charrnn.model import spec_of, zero_state
from charrnn.optim import OPTIMIZERS


@dataclass
class Progress:
    state: tuple                   # (L, B, H) arrays: the recurrent state carried into the next chunk
    step: int = 0                  # training steps done
    epoch: int = 0
    chunk: int = 0                 # the next chunk of every train stream
    eval_step: int = -1            # the step last evaluated: a resumed run must not evaluate or log it twice
    val_loss: float = math.nan
    best_val: float = math.inf
    train_seconds: float = 0.0     # counts against train.max_seconds across resumes
    monitor: dict = field(default_factory=dict)  # Monitor.state_dict() as of the save: smoothed loss, open log interval
    init_from: dict | None = None  # a fine-tuned run's origin: {"path", "step", "val_loss"} (charrnn.training.finetune)

    def to_json(self) -> dict:
        """Everything but the recurrent state, which the checkpoint keeps as arrays."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "state"}

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, path: Path, dtype: str, state_names: tuple[str, ...]) -> "Progress":
        """The run's progress, its carried state ordered by state_names (the model spec's)."""
        names = [f.name for f in fields(cls) if f.name != "state"]
        missing = [k for k in names if k not in ckpt.progress and k not in OPTIONAL]
        if missing:
            raise UserError(f"checkpoint {path} cannot be resumed: its progress lacks {', '.join(missing)} "
                            f"(it predates exact resume); sample from it, or train afresh")
        problem = progress_problem(ckpt.progress, names)
        if problem:
            raise UserError(f"checkpoint {path} cannot be resumed: {problem}")
        lacking = [k for k in state_names if k not in ckpt.state]
        if lacking:
            raise UserError(f"checkpoint {path} cannot be resumed: its carried state lacks {', '.join(lacking)}, "
                            f"which its model's cell carries")
        return cls(state=tuple(ckpt.state[k].astype(dtype) for k in state_names),
                   **{k: ckpt.progress[k] for k in names if k in ckpt.progress})


# What the data pointer, the carried state and the optimizer state are laid out by. (The model shape
# is checked where the weights are loaded, in restore_backend.)
FIXED = ("train.batch_size", "train.seq_length", "data.val_fraction", "optim.name")

def resume_dir(resume: str, new_dir: Path) -> tuple[Path, str | None]:
    """Where a resumed run writes, and a note when that is not the checkpoint's own directory. A run
    continues in place from where it stopped (its directory's ckpt_last.npz, or a checkpoint at the
    same step). From any other point (ckpt_best.npz of a run that went on, an older copy) it forks
    into new_dir, hydra.run.dir's directory: continuing in place would overwrite the later ckpt_last.npz,
    result.json and curves, work that cannot be had back."""
    path = resume_path(resume)
    last = path.parent / "ckpt_last.npz"
    if path.name == last.name or not last.is_file():
        return path.parent, None
    step = load_checkpoint(path).progress.get("step")
    try:
        last_step = load_checkpoint(last).progress.get("step")
    except UserError:
        last_step = None  # unreadable: all the more reason to leave it alone
    if last_step == step:
        return path.parent, None
    if new_dir.resolve() == path.parent.resolve():
        raise UserError(f"cannot resume {path} (step {step}) in its own directory: its ckpt_last.npz is at step "
                        f"{last_step} and would be overwritten; name a new directory with hydra.run.dir=PATH")
    return new_dir, (f"resuming from {path} (step {step}), not where its run stopped ({last}, step {last_step}): "
                     f"continuing in a new run directory, {new_dir}, so that the later work stays")


def resume(cfg: Config, vocab: Vocab, num_chunks: int, run_dir: Path, replicas: Solo = SOLO
           ) -> tuple[Backend, Progress]:
    """The backend (weights and optimizer state) and progress of the checkpoint named by train.resume,
    checked against cfg and the corpus's vocabulary, to continue in run_dir (see resume_dir). The best
    validation loss is that of the weights run_dir's ckpt_best.npz holds (none in a new directory), so
    that "best" stays true to its file even if a kill interrupted its write."""
    path = resume_path(cfg.train.resume)
    ckpt = load_checkpoint(path)
    if not np.array_equal(ckpt.vocab, vocab.symbols):
        raise UserError(f"cannot resume {path}: the corpus's vocabulary differs from the checkpoint's "
                        f"(new: {vocab.show(np.setdiff1d(vocab.symbols, ckpt.vocab))}, "
                        f"gone: {vocab.show(np.setdiff1d(ckpt.vocab, vocab.symbols))}); "
                        f"resume on the corpus it was trained on")
    saved_cfg = OmegaConf.create(ckpt.config)
    changed = [f"{key}={lookup(cfg, key)} (checkpoint: {OmegaConf.select(saved_cfg, key)})"
               for key in FIXED if lookup(cfg, key) != OmegaConf.select(saved_cfg, key)]
    if changed:
        raise UserError(f"cannot resume {path} with {', '.join(changed)}: the data pointer, carried state "
                        f"and optimizer state only fit the values the run started with")
    backend, _ = restore_backend(ckpt, cfg, replicas)
    problem = optimizer_problem(ckpt.optimizer_state, OPTIMIZERS[cfg.optim.name].state_names, ckpt.params)
    if problem:
        raise UserError(f"cannot resume {path}: {problem}")
    backend.load_optimizer_state(ckpt.optimizer_state)
    spec = spec_of(cfg.model, len(vocab))
    progress = Progress.from_checkpoint(ckpt, path, cfg.model.dtype, spec.state_names)
    progress.best_val = best_val_loss(run_dir)
    expected = zero_state(spec, cfg.train.batch_size, cfg.model.dtype)
    shapes = [s.shape for s in progress.state]
    if shapes != [s.shape for s in expected] or not 0 <= progress.chunk < num_chunks:
        raise UserError(f"cannot resume {path}: its data pointer (chunk {progress.chunk}) or carried state "
                        f"{', '.join(map(str, shapes))} does not fit this corpus and config")
    done = progress.step >= cfg.train.max_iters or (cfg.train.max_seconds is not None
                                                    and progress.train_seconds >= cfg.train.max_seconds)
    # A run stopped by a signal right at its end still owes its final evaluation.
    if done and progress.eval_step == progress.step:
        raise UserError(f"nothing to resume: {path} is at step {progress.step} after {progress.train_seconds:.1f} s, "
                        f"which train.max_iters={cfg.train.max_iters} / train.max_seconds={cfg.train.max_seconds} "
                        f"already reach; raise them to train further")
    progress.state = replicas.shard(progress.state)
    return backend, progress


def best_val_loss(run_dir: Path) -> float:
    """The validation loss of the weights in run_dir's ckpt_best.npz; infinity if it has none."""
    best = run_dir / "ckpt_best.npz"
    if not best.is_file():
        return math.inf
    value = load_checkpoint(best).progress.get("val_loss")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf
