"""Sample text from a checkpoint: python sample.py checkpoint=PATH [backend=numpy|torch] [key=value ...]."""

import os
import sys

import hydra
from omegaconf import DictConfig

from charrnn.cli import Entry
from charrnn.config import to_sample_config
from charrnn.sampling import sample

entry = Entry()


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def main(raw: DictConfig) -> None:
    with entry.task():
        try:
            sample(to_sample_config(raw), sys.stdout)
        except BrokenPipeError:
            # The reader stopped early (`| head`): end quietly, as other Unix tools do. Pointing stdout at
            # /dev/null keeps Python's final flush from raising again at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    entry.run(main)
