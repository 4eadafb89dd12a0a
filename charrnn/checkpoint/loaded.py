"""A trained model loaded for use: the one loader of sample.py, python -m charrnn.explore and charrnn.load."""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from charrnn.backends import Backend
from charrnn.checkpoint.format import Checkpoint, load_checkpoint
from charrnn.checkpoint.restore import resolve_checkpoint, restore_backend, saved_config
from charrnn.config import BackendConfig, Config, to_config
from charrnn.data import Vocab, load_ids, split
from charrnn.errors import UserError
from charrnn.model import ModelSpec, spec_of


@dataclass
class LoadedModel:
    path: Path          # the checkpoint file
    checkpoint: Checkpoint
    config: Config      # the run's, with the backend asked for
    backend: Backend
    vocab: Vocab

    @property
    def spec(self) -> ModelSpec:
        return spec_of(self.config.model, len(self.vocab))

    def splits(self, needed_by: str, otherwise: str) -> tuple[np.ndarray, np.ndarray]:
        """The train and val ids of the corpus the run trained on (its config's data section), split as
        the run split them; a UserError if that corpus is not at hand or has changed."""
        data = self.config.data
        if data.path is not None and not Path(data.path).expanduser().is_file():
            raise UserError(f"{needed_by} reads the corpus the checkpoint was trained on, {data.path}, which is "
                            f"not there from here; {otherwise}")
        vocab, ids = load_ids(data)
        if not np.array_equal(vocab.symbols, self.vocab.symbols):
            raise UserError(f"{needed_by} reads the corpus the checkpoint was trained on, but its vocabulary differs "
                            f"from the checkpoint's (the file changed?); {otherwise}")
        return split(ids, data.val_fraction)


def load_model(path_str: str, backend: BackendConfig) -> LoadedModel:
    """The model of a checkpoint, or of a run directory's best checkpoint, on the backend asked for:
    the one loader of sample.py, python -m charrnn.explore and charrnn.load."""
    path = resolve_checkpoint(path_str)
    ckpt = load_checkpoint(path)
    try:
        cfg = to_config(OmegaConf.merge(saved_config(ckpt), {"backend": asdict(backend)}))
    except UserError as e:
        raise UserError(f"checkpoint {path} holds an unusable config ({e})") from None
    model, vocab = restore_backend(ckpt, cfg)
    return LoadedModel(path=path, checkpoint=ckpt, config=cfg, backend=model, vocab=vocab)
