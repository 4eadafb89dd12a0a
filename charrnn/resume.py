"""Continuing a run from its checkpoint (train.resume): the config it continues with, and the checks
that it can continue at all."""

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from charrnn.backends import Backend
from charrnn.checkpoint import load_checkpoint, resolve_checkpoint, restore_backend
from charrnn.config import Config, lookup, to_config
from charrnn.data import Vocab
from charrnn.errors import UserError
from charrnn.model import spec_of, zero_state
from charrnn.run_state import RunState

# What the data pointer, the carried state and the optimizer state are laid out by. (The model shape
# is checked where the weights are loaded, in restore_backend.)
FIXED = ("train.batch_size", "train.seq_length", "data.val_fraction", "optim.name")

_ABSENT = object()


def resume_path(resume: str) -> Path:
    """train.resume names a checkpoint file or a run directory, whose ckpt_last.npz is where it stopped."""
    return resolve_checkpoint(resume, ("ckpt_last.npz",))


def config_for_run(raw: DictConfig, overrides: list[str]) -> Config:
    """The typed config of a run. To resume, it is the checkpoint's saved config with only the keys
    given on the command line (overrides, as Hydra lists them) changed, so that
    `python train.py train.resume=DIR` continues a run whatever options started it."""
    resume = OmegaConf.select(raw, "train.resume")
    if resume is None:
        return to_config(raw)
    saved = OmegaConf.create(load_checkpoint(resume_path(resume)).config)
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        value = OmegaConf.select(raw, key, default=_ABSENT)
        if value is _ABSENT:
            raise UserError(f"{override} does not name one config key, so it cannot change a resumed run; "
                            f"override the keys themselves (e.g. train.max_iters=...)")
        OmegaConf.update(saved, key, value, merge=False)
    OmegaConf.update(saved, "train.resume", resume)  # however it was given
    return to_config(saved)


def resume(cfg: Config, vocab: Vocab, num_chunks: int) -> tuple[Backend, RunState, Path]:
    """The backend (weights and optimizer state), progress and run directory of the checkpoint named by
    train.resume, checked against cfg and the corpus's vocabulary."""
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
    backend, _ = restore_backend(ckpt, cfg)
    backend.load_optimizer_state(ckpt.optimizer_state)
    spec = spec_of(cfg.model, len(vocab))
    run = RunState.from_checkpoint(ckpt, path, cfg.model.dtype, spec.state_names)
    expected = zero_state(spec, cfg.train.batch_size, cfg.model.dtype)
    shapes = [s.shape for s in run.hidden]
    if shapes != [s.shape for s in expected] or not 0 <= run.chunk < num_chunks:
        raise UserError(f"cannot resume {path}: its data pointer (chunk {run.chunk}) or carried state "
                        f"{', '.join(map(str, shapes))} does not fit this corpus and config")
    done = run.step >= cfg.train.max_iters or (cfg.train.max_seconds is not None
                                               and run.train_seconds >= cfg.train.max_seconds)
    # A run stopped by a signal right at its end still owes its final evaluation.
    if done and run.eval_step == run.step:
        raise UserError(f"nothing to resume: {path} is at step {run.step} after {run.train_seconds:.1f} s, "
                        f"which train.max_iters={cfg.train.max_iters} / train.max_seconds={cfg.train.max_seconds} "
                        f"already reach; raise them to train further")
    return backend, run, path.parent
