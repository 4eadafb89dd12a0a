"""Train a character-level RNN: python train.py [backend=numpy|torch] [key=value ...]."""

import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from charrnn.cli import Entry, fail
from charrnn.distributed import is_main_process
from charrnn.resume import config_for_run
from charrnn.run_name import register_resolvers
from charrnn.trainer import train

entry = Entry()
register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(raw: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    with entry.task():
        try:
            result = train(config_for_run(raw, list(hydra_cfg.overrides.task)), Path(hydra_cfg.runtime.output_dir))
        except KeyboardInterrupt:
            print("interrupted without saving; the run's last checkpoint is as it was", file=sys.stderr)
            sys.exit(128 + signal.SIGINT)
        except MemoryError:
            fail("out of memory; lower model.hidden_size, train.batch_size or train.seq_length")
    if result.stopped_by is not None:
        if is_main_process():
            print(f"{signal.Signals(result.stopped_by).name}: saved step {result.steps} to "
                  f"{result.run_dir}/ckpt_last.npz; resume with: python train.py train.resume={result.run_dir}",
                  file=sys.stderr)
        sys.exit(128 + result.stopped_by)
    # Returned so that Hydra sweepers can minimise it.
    return result.best_val_loss


if __name__ == "__main__":
    entry.run(main)
