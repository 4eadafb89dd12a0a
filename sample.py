"""Sample text from a checkpoint: python sample.py checkpoint=PATH [backend=numpy|torch] [key=value ...]."""

from charrnn.training.signals import quiet_keyboard_interrupt

quiet_keyboard_interrupt()  # first: a Ctrl-C during the imports below ends in one line too

import os  # noqa: E402
import sys  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from charrnn.cli import Command  # noqa: E402
from charrnn.config import to_sample_config  # noqa: E402
from charrnn.sampling import sample  # noqa: E402

command = Command(out_of_memory="out of memory: the checkpoint's model does not fit in this machine's memory")


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def main(raw: DictConfig) -> None:
    with command.task():
        try:
            sample(to_sample_config(raw), sys.stdout)
        except BrokenPipeError:
            # The reader stopped early (`| head`): end quietly, as other Unix tools do. Pointing stdout at
            # /dev/null keeps Python's final flush from raising again at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    command.run(main)
