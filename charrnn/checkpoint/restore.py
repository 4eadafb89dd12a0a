"""A checkpoint's model back on a backend, and which file a path names."""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from charrnn.backends import Backend, make_backend
from charrnn.checkpoint.format import Checkpoint, load_checkpoint
from charrnn.config import BackendConfig, Config, to_config
from charrnn.data import Vocab, load_ids, split
from charrnn.errors import UserError
from charrnn.model import ModelSpec, param_shapes, spec_of


def restore_backend(ckpt: Checkpoint, cfg) -> tuple[Backend, Vocab]:
    """The checkpoint's model on cfg's backend (either backend takes any checkpoint) in cfg's dtype,
    and its vocabulary. The one way a model is loaded: sample.py and a resumed run both come here."""
    spec = spec_of(cfg.model, len(ckpt.vocab))
    expected = param_shapes(spec)
    found = {k: v.shape for k, v in ckpt.params.items()}
    if found != expected:
        differ = sorted(set(found) ^ set(expected)) or [k for k in expected if found[k] != expected[k]]
        shown = ", ".join(f"{k} {found.get(k, 'missing')}" for k in differ[:4])
        raise UserError(f"the checkpoint's weights ({shown}) do not fit model.hidden_size={spec.hidden_size}, "
                        f"model.cell={spec.cell}, model.num_layers={spec.num_layers} and its "
                        f"{spec.vocab_size}-character vocabulary; a model keeps the shape it was trained with")
    vocab = Vocab.from_corpus(ckpt.vocab, cfg.data.encoding)
    if vocab.is_bytes and vocab.symbols[-1] > 255:
        raise UserError("the checkpoint's vocabulary is not one of byte values, as its config data.encoding=bytes says")
    params = {k: v.astype(cfg.model.dtype) for k, v in ckpt.params.items()}
    return make_backend(cfg, spec, params), vocab


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
        cfg = to_config(OmegaConf.create({**ckpt.config, "backend": asdict(backend)}))
    except UserError as e:
        raise UserError(f"checkpoint {path} holds an unusable config ({e})") from None
    model, vocab = restore_backend(ckpt, cfg)
    return LoadedModel(path=path, checkpoint=ckpt, config=cfg, backend=model, vocab=vocab)


BEST_THEN_LAST = ("ckpt_best.npz", "ckpt_last.npz")


def resolve_checkpoint(path_str: str, names: tuple[str, ...] = BEST_THEN_LAST) -> Path:
    """A checkpoint file, or a run directory: the first of names found in it (sampling wants the best
    weights; a resume wants ckpt_last.npz, where the run stopped)."""
    path = Path(path_str).expanduser()
    if path.is_dir():
        for name in names:
            if (path / name).is_file():
                return path / name
        raise UserError(f"no checkpoint ({' or '.join(names)}) in directory {path}")
    return path
