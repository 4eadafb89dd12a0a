"""Train a character-level RNN: python train.py [backend=numpy|torch] [key=value ...].

The path of a run, one hop from here:
    where the run starts              charrnn/start.py           start_run, run_config
    where the config is checked       charrnn/config.py          to_config
    the training loop                 charrnn/training/loop.py   train, Trainer.run
    one training step                 charrnn/backends/numpy_backend.py   NumpyBackend.train_step
    the BPTT                          charrnn/backends/numpy_layers/rnn.py (lstm.py, gru.py)   backward
    where a checkpoint is written     charrnn/checkpoint/format.py   save_checkpoint
"""

from charrnn.signals import quiet_keyboard_interrupt

quiet_keyboard_interrupt()  # first: a Ctrl-C during the imports below ends in one line too

import os  # noqa: E402
import shlex  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from charrnn.cli import Command  # noqa: E402
from charrnn.commandline import override  # noqa: E402
from charrnn.config import Config  # noqa: E402
from charrnn.distributed import is_main_process, leave  # noqa: E402
from charrnn.errors import UserError  # noqa: E402
from charrnn.monitor.summary import summary  # noqa: E402
from charrnn.terminal import keep_going  # noqa: E402
from charrnn.start import start_run  # noqa: E402
from charrnn.training.rundir import register_resolvers, remove_if_made_and_empty  # noqa: E402
from charrnn.signals import Stopped  # noqa: E402

command = Command(out_of_memory="out of memory; lower model.hidden_size, model.num_layers, train.batch_size or "
                                "train.seq_length",
                  cannot_write="free some space or name another hydra.run.dir; checkpoints are written whole or "
                               "not at all, so the last one is intact",
                  schema=Config)
register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(raw: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        return run(raw, hydra_cfg, output_dir)
    finally:
        # Hydra makes the run directory before the run starts. A run refused at its start leaves it empty,
        # and so does a resume that continues in its own run's directory, and a rank above 0 under torchrun.
        remove_if_made_and_empty(output_dir)
        leave()


def run(raw: DictConfig, hydra_cfg, output_dir: Path) -> float:
    with command.task():
        if hydra_cfg.job.chdir:
            os.chdir(hydra_cfg.runtime.cwd)  # back where the command was given, which every path is relative to
            raise UserError("hydra.job.chdir=true is not supported: charrnn reads every path (data.path, "
                            "train.resume, data.cache_dir) from where the command runs; leave it false")
        try:
            cfg, result = start_run(raw, hydra_cfg, output_dir, command=shlex.join(["python", *sys.argv]))
        except KeyboardInterrupt:
            print("interrupted without saving; the run's last checkpoint is as it was", file=sys.stderr)
            sys.exit(128 + signal.SIGINT)
        except Stopped as stopped:
            print(f"{signal.Signals(stopped.signum).name}: stopped before training began; nothing was saved, "
                  f"and what was there before is as it was", file=sys.stderr)
            sys.exit(128 + stopped.signum)
    if result.stopped_by is not None:
        if is_main_process():
            print(f"{signal.Signals(result.stopped_by).name}: saved step {result.steps} to "
                  f"{result.run_dir}/ckpt_last.npz; resume with: python train.py "
                  f"{override('train.resume', result.run_dir)}", file=sys.stderr)
        sys.exit(128 + result.stopped_by)
    if is_main_process():
        print(summary(result, cfg))
    # Returned so that Hydra sweepers can minimise it.
    return result.best_val_loss


if __name__ == "__main__":
    keep_going()  # output that fails never stops training (charrnn/terminal.py)
    command.run(main)
