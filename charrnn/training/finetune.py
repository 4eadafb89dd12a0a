"""Fine-tuning: a new run that starts from a trained checkpoint's weights (train.init_from) on a corpus of
its own, with a fresh optimizer and schedule, in a new run directory (char-rnn's init_from, nanoGPT's).

The run's vocabulary is the checkpoint's and the corpus's together, sorted as every vocabulary is, so
the model keeps every row it learned (it can still write a character the new corpus lacks). A character
of the corpus that the checkpoint lacks gets new rows, drawn as a fresh model of that size would draw
them, or is refused, as train.new_chars says. The config's model section is the checkpoint's
(finetune_config).
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from charrnn.checkpoint import load_checkpoint, resolve_checkpoint, saved_config
from charrnn.config import Config, ModelConfig, to_config, typed
from charrnn.data import Vocab
from charrnn.data.corpus import id_dtype
from charrnn.errors import UserError
from charrnn.model import init_params, param_shapes, spec_of


# The model keys that fix the weights' shapes (the vocabulary aside, which fine-tuning may grow).
SHAPE_KEYS = ("cell", "hidden_size", "num_layers")


def finetune_config(raw: DictConfig, overrides: list[str], init_from: str) -> Config:
    """A fine-tuning run's config: the command line's, with the model section of the checkpoint named by
    init_from for every model key the command line does not give (a group override, model=lstm, gives
    them all). Given keys that would change the weights' shapes are refused; dropout, dtype and the
    initialisation (which draws the rows of new characters) may change."""
    path = resolve_checkpoint(init_from)
    saved = typed(ModelConfig, saved_config(load_checkpoint(path)).get("model", {}))
    given = {override.split("=", 1)[0].lstrip("+~") for override in overrides}
    merged = OmegaConf.create(OmegaConf.to_container(raw, resolve=True))
    if "model" not in given:
        for key, value in asdict(saved).items():
            if f"model.{key}" not in given:
                OmegaConf.update(merged, f"model.{key}", value, merge=False)
    cfg = to_config(merged)
    for key in SHAPE_KEYS:
        if getattr(cfg.model, key) != getattr(saved, key):
            raise UserError(f"model.{key}={getattr(cfg.model, key)} does not fit the weights of {path} "
                            f"(model.{key}={getattr(saved, key)}): fine-tuning keeps the checkpoint's model; "
                            f"leave model.{key} out")
    return cfg


@dataclass
class Start:
    params: dict[str, np.ndarray]  # the checkpoint's weights, with rows for the run's vocabulary
    vocab: Vocab                   # the checkpoint's symbols and the corpus's
    ids: np.ndarray                # the corpus in that vocabulary's ids
    origin: dict                   # where the weights came from: {"path", "step", "val_loss"}


def start_from(cfg: Config, vocab: Vocab, ids: np.ndarray) -> Start:
    """The weights of the checkpoint named by train.init_from (a run directory: its ckpt_best.npz) for a
    run on the corpus whose vocabulary and ids are given."""
    path = resolve_checkpoint(cfg.train.init_from)
    ckpt = load_checkpoint(path)
    if (ckpt.config.get("data", {}).get("encoding") == "bytes") != vocab.is_bytes:
        kind = "bytes" if vocab.is_bytes else "characters"
        raise UserError(f"{path} was not trained on {kind}, as data.encoding={cfg.data.encoding} reads this corpus; "
                        f"fine-tune with the data.encoding it was trained with")
    new = np.setdiff1d(vocab.symbols, ckpt.vocab)
    if len(new) and cfg.train.new_chars == "refuse":
        raise UserError(f"the corpus has {len(new)} characters that the checkpoint's vocabulary lacks "
                        f"({vocab.show(new)}); pass train.new_chars=add to give them new rows (drawn as a fresh "
                        f"model's), or train on a corpus without them")
    both, ids = in_vocabulary(np.union1d(ckpt.vocab, vocab.symbols), vocab, ids)
    origin = {"path": str(Path(path).absolute()), "step": ckpt.progress.get("step"),
              "val_loss": ckpt.progress.get("val_loss")}
    return Start(grown_params(cfg, ckpt.params, ckpt.vocab, both, path), both, ids, origin)


def in_vocabulary(symbols: np.ndarray, vocab: Vocab, ids: np.ndarray) -> tuple[Vocab, np.ndarray]:
    """A corpus (its vocab and ids) in the vocabulary of symbols, sorted, which hold all of vocab's: the
    vocabulary a fine-tuned run trains in, and resumes in."""
    if len(symbols) == len(vocab):
        return vocab, ids
    grown = Vocab(np.asarray(symbols, np.int32), vocab.is_bytes)
    return grown, np.searchsorted(grown.symbols, vocab.symbols).astype(id_dtype(len(grown)))[ids]


def grown_params(cfg: Config, params: dict[str, np.ndarray], symbols: np.ndarray, vocab: Vocab,
                 path: Path) -> dict[str, np.ndarray]:
    """A fresh model's weights for vocab, drawn from the run's seed and init, with params (trained on the
    sorted symbols, a subset of vocab's) written over them: along the vocabulary axes at those symbols'
    ids. The vocabulary axes are those whose length differs between the two models' shapes."""
    trained = param_shapes(spec_of(cfg.model, len(symbols)))
    if {k: v.shape for k, v in params.items()} != trained:
        raise UserError(f"the weights of {path} do not fit its own config's model; it is damaged or hand-made")
    spec = spec_of(cfg.model, len(vocab))
    grown = init_params(spec, cfg.model.init, cfg.model.init_std, cfg.seed, cfg.model.dtype, cfg.model.forget_bias)
    kept = np.searchsorted(vocab.symbols, symbols)
    for name, value in params.items():
        rows = tuple(kept if old != new else slice(None) for old, new in zip(trained[name], grown[name].shape))
        grown[name][rows] = value
    return grown
