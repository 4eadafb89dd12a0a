"""A run starts here, for train.py and charrnn.train alike: the run's config (run_config: the command
line's, merged with a checkpoint's to resume or fine-tune) and the run itself (start_run), from the config
Hydra composed."""

from pathlib import Path

from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from charrnn.checkpoint import reading_once
from charrnn.cli import run_started
from charrnn.config import Config, to_config
from charrnn.errors import UserError
from charrnn.training.finetune import finetune_config
from charrnn.training.loop import TrainResult, train
from charrnn.training.resume import resumed_config
from charrnn.training.rundir import remove_if_made_and_empty


def run_config(raw: DictConfig, overrides: list[str]) -> Config:
    """The typed config of a training run: to resume (train.resume), the checkpoint's saved config with the
    keys on the command line changed (resumed_config); to fine-tune (train.init_from), the command line's
    with the checkpoint's model (finetune_config); otherwise the command line's. overrides: the command
    line's, as Hydra lists them."""
    resume = OmegaConf.select(raw, "train.resume")
    init_from = OmegaConf.select(raw, "train.init_from")
    if resume is not None and init_from is not None:
        raise UserError("train.init_from and train.resume exclude each other: train.resume continues a run, "
                        "train.init_from starts a new one from a checkpoint's weights; pass one of them")
    if init_from is not None:
        return finetune_config(raw, overrides, init_from)
    if resume is not None:
        return resumed_config(raw, overrides, resume)
    return to_config(raw)


def start_run(task: DictConfig, hydra_cfg: DictConfig, run_dir: Path,
              command: str | None = None) -> tuple[Config, TrainResult]:
    """Train as task (the composed config, without its hydra section) says, into run_dir (hydra.run.dir, or
    a sweep's job directory), with hydra_cfg (Hydra's own section) giving the command line's overrides and
    where the run's record goes. command: the command line, for TensorBoard's config card. Returns the
    run's config and its TrainResult; a run directory made for the run and left empty is removed. The
    checkpoint a run resumes or fine-tunes from is read once, however many places ask for it."""

    def started(started_in: Path) -> None:
        read.clear()   # the run has its own copy of everything it needed from the checkpoint
        run_started(started_in, task, hydra_cfg, run_dir)

    try:
        if OmegaConf.select(hydra_cfg, "mode") != RunMode.MULTIRUN and not str(hydra_cfg.run.dir).strip():
            raise UserError("hydra.run.dir is empty, which would scatter the run's files into the current "
                            "directory; name a directory with hydra.run.dir=PATH")
        with reading_once() as read:
            cfg = run_config(task, list(hydra_cfg.overrides.task))
            return cfg, train(cfg, run_dir, on_start=started, command=command)
    finally:
        remove_if_made_and_empty(run_dir)
