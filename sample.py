"""Sample text from a checkpoint: python sample.py checkpoint=PATH [backend=numpy|torch] [key=value ...]."""

from charrnn.signals import quiet_keyboard_interrupt

quiet_keyboard_interrupt()  # first: a Ctrl-C during the imports below ends in one line too

import errno  # noqa: E402
import sys  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from charrnn.cli import Command  # noqa: E402
from charrnn.config import SampleConfig, to_sample_config  # noqa: E402
from charrnn.errors import UserError  # noqa: E402
from charrnn.sampling import sample  # noqa: E402
from charrnn.terminal import Output, OutputFailed, silence  # noqa: E402

command = Command(out_of_memory="out of memory: the checkpoint's model does not fit in this machine's memory",
                  schema=SampleConfig)


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def main(raw: DictConfig) -> None:
    with command.task():
        if sys.stdout is None:  # started with >&-
            raise UserError("standard output is closed, so there is nowhere to write the sample; "
                            "run sample.py with its output on a terminal, a pipe or a file (> FILE)")
        try:
            sample(to_sample_config(raw), Output(sys.stdout))
        except OutputFailed as e:
            silence(sys.stdout)
            # A reader that stopped early (`| head`) is the end Unix tools expect, not an error.
            if e.__cause__.errno != errno.EPIPE:
                raise UserError(f"cannot write the sample to standard output: {e.__cause__.strerror}") from None


if __name__ == "__main__":
    command.run(main)
