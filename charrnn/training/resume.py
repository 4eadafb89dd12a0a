"""Continuing a run: the config it continues with (resumed_config), its progress between two steps (what a
checkpoint holds beyond the weights and the optimizer state), the directory it continues in, and the
checks that it can continue at all.

No random generator needs saving: initial weights come from the seed, batching is deterministic, and
each evaluation draws its sample from a generator seeded by (seed, step) (see loop.py).
"""

import json
import math
import stat
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from charrnn.backends import Backend
from charrnn.checkpoint import Checkpoint, load_checkpoint, restore_backend, resume_path, saved_config
from charrnn.checkpoint.fields import OPTIONAL, optimizer_problem, progress_problem
from charrnn.config import Config, lookup, to_config
from charrnn.data import Vocab
from charrnn.distributed import SOLO, Ranks
from charrnn.errors import UserError
from charrnn.model import spec_of, zero_state
from charrnn.optim import OPTIMIZERS
from charrnn.training.schedule import epoch_budget


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
    # The run's identity, drawn when it starts, kept by a resume in place, drawn anew by a fork: the files
    # of a run directory that carry it are that run's own (see resume_dir)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    init_from: dict | None = None  # a fine-tuned run's origin: {"path", "step", "val_loss"} (charrnn.training.finetune)
    # Each start of the run, fresh or resumed: {"from_step", "max_iters", "max_seconds"}, for sample.py info=true
    segments: list = field(default_factory=list)
    schedule: dict = field(default_factory=dict)  # Schedule.state_dict() as of the save (charrnn.training.schedule)

    def finished(self, tc) -> bool:
        """Whether the run has spent its budget (tc: the config's train section): train.max_iters steps, or
        train.max_seconds of training."""
        return self.step >= tc.max_iters or (tc.max_seconds is not None and self.train_seconds >= tc.max_seconds)

    def to_json(self) -> dict:
        """Everything but the recurrent state, which the checkpoint keeps as arrays."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "state"}

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, path: Path, dtype: str, state_names: tuple[str, ...]) -> "Progress":
        """The run's progress, its carried state ordered by state_names (the model spec's)."""
        # an optional field a checkpoint predates takes Progress's default (a run_id drawn now, no init_from)
        names = [f.name for f in fields(cls)
                 if f.name != "state" and (f.name in ckpt.progress or f.name not in OPTIONAL)]
        missing = [k for k in names if k not in ckpt.progress]
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


def resumed_config(raw: DictConfig, overrides: list[str], resume: str) -> Config:
    """The config a run continues with (train.resume): the checkpoint's saved config with only the keys
    given on the command line (overrides, as Hydra lists them) changed, so that `python train.py
    train.resume=DIR` continues a run whatever options started it."""
    path = resume_path(resume)
    saved = saved_config(load_checkpoint(path))  # its strings are text: ${...} in a file is never resolved
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        value = OmegaConf.select(raw, key, default=_ABSENT)
        if value is _ABSENT:
            raise UserError(f"{override} does not name one config key, so it cannot change a resumed run; "
                            f"override the keys themselves (e.g. train.max_iters=...)")
        OmegaConf.update(saved, key, value, merge=False)
    OmegaConf.update(saved, "train.resume", resume)  # however it was given
    try:
        return to_config(saved)
    except UserError as e:
        raise UserError(f"cannot resume {path}: its saved config, with your overrides, "
                        f"does not validate ({e})") from None


_ABSENT = object()
# What the data pointer, the carried state and the optimizer state are laid out by. (The model shape
# is checked where the weights are loaded, in restore_backend.)
FIXED = ("train.batch_size", "train.seq_length", "data.val_fraction", "optim.name")


def resume_dir(resume: str, new_dir: Path) -> tuple[Path, str | None]:
    """Where a resumed run writes, and a note when that is not the checkpoint's own directory. A run
    continues in place only in its own directory, from where it stopped: the directory's ckpt_last.npz
    is the same run (its run_id) at the same step, and every other file the run writes there
    (ckpt_best.npz, result.json, config.yaml) is absent or that run's own. From any other point (the
    ckpt_best.npz of a run that went on, an older copy) or place (another run's directory, a folder the
    checkpoint was downloaded into) it forks into new_dir, hydra.run.dir's directory: continuing in place
    would overwrite later work, or files that are not the run's, that cannot be had back."""
    path = resume_path(resume)
    run_dir = path.parent.resolve()
    progress = load_checkpoint(path).progress
    identity, step = progress.get("run_id"), progress.get("step")
    last = run_dir / "ckpt_last.npz"
    why = _not_in_place(path, run_dir, identity, step)
    if why is None:
        return run_dir, None
    if new_dir.resolve() == run_dir:
        raise UserError(f"cannot resume {path} (step {step}) in its own directory: {why} and would be "
                        f"overwritten; name a new directory with hydra.run.dir=PATH")
    return new_dir, (f"resuming from {path} (step {step}), but {why}: continuing in a new run directory, "
                     f"{new_dir}, so that nothing there is overwritten")


def _not_in_place(path: Path, run_dir: Path, identity: str | None, step) -> str | None:
    """Why the run of the checkpoint at path, with this identity and step, cannot continue in run_dir;
    None if it can. A checkpoint from before run identities continues in place only as its directory's
    ckpt_last.npz itself, among files that are plain files."""
    last = run_dir / "ckpt_last.npz"
    if not _is_plain_file(last):
        return f"{last} is not its run's checkpoint"
    if identity is None:
        if path.resolve() != last:
            return "it predates run identities and is not its directory's ckpt_last.npz"
    else:
        try:
            there = load_checkpoint(last).progress
        except UserError:
            there = {}  # unreadable: all the more reason to leave it alone
        if there.get("run_id") != identity:
            return f"{last} is another run's"
        if there.get("step") != step:
            return f"its ckpt_last.npz is at step {there.get('step')}"
    for name in ("ckpt_best.npz", "result.json", "config.yaml"):
        if not _is_own_file(run_dir / name, identity):
            return f"{run_dir / name} is not its run's own file"
    return None


def _is_plain_file(path: Path) -> bool:
    """A regular file, not a link to one."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _is_own_file(path: Path, identity: str | None) -> bool:
    """Whether a file a run writes is absent, or a plain file that the run with this identity wrote (a run
    from before identities: any plain file)."""
    if not path.exists() and not path.is_symlink():
        return True
    if not _is_plain_file(path):
        return False
    if identity is None:
        return True
    try:
        if path.suffix == ".npz":
            return load_checkpoint(path).progress.get("run_id") == identity
        if path.suffix == ".json":
            return json.loads(path.read_text()).get("run_id") == identity
        with open(path) as f:
            return f.readline().strip() == config_header(identity)
    except (UserError, OSError, ValueError, AttributeError):
        return False


def config_header(identity: str) -> str:
    """The first line of a run's config.yaml: its identity, as a YAML comment."""
    return f"# charrnn run {identity}"


def resume(cfg: Config, vocab: Vocab, num_chunks: int, run_dir: Path, replicas: Ranks = SOLO
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
    saved_cfg = saved_config(ckpt)
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
    if not progress.schedule:  # a checkpoint from before the schedule was saved: planned over its config's budget
        progress.schedule = {"budget": {key: OmegaConf.select(saved_cfg, f"train.{key}")
                                        for key in ("lr_decay_iters", "max_seconds")}}
    progress.best_val = best_val_loss(run_dir)
    expected = zero_state(spec, cfg.train.batch_size, cfg.model.dtype)
    shapes = [s.shape for s in progress.state]
    if shapes != [s.shape for s in expected] or not 0 <= progress.chunk < num_chunks:
        raise UserError(f"cannot resume {path}: its data pointer (chunk {progress.chunk}) or carried state "
                        f"{', '.join(map(str, shapes))} does not fit this corpus and config")
    # A run stopped by a signal right at its end still owes its final evaluation.
    if progress.finished(epoch_budget(cfg.train, num_chunks)) and progress.eval_step == progress.step:
        epochs = "" if cfg.train.max_epochs is None else f" / train.max_epochs={cfg.train.max_epochs:g}"
        raise UserError(f"nothing to resume: {path} is at step {progress.step} after {progress.train_seconds:.1f} s, "
                        f"which train.max_iters={cfg.train.max_iters} / train.max_seconds={cfg.train.max_seconds}"
                        f"{epochs} already reach; raise them to train further")
    progress.state = replicas.shard(progress.state)
    return backend, progress


def best_val_loss(run_dir: Path) -> float:
    """The validation loss of the weights in run_dir's ckpt_best.npz; infinity if it has none."""
    best = run_dir / "ckpt_best.npz"
    if not best.is_file():
        return math.inf
    value = load_checkpoint(best).progress.get("val_loss")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf
