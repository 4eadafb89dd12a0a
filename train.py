"""Train a character-level RNN: python train.py [backend=numpy|torch] [key=value ...]."""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from charrnn.config import to_config
from charrnn.errors import UserError
from charrnn.trainer import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(raw: DictConfig) -> float:
    try:
        result = train(to_config(raw), Path(HydraConfig.get().runtime.output_dir))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    # Returned so that Hydra sweepers can minimise it.
    return result.best_val_loss


if __name__ == "__main__":
    main()
