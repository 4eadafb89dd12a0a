"""A checkpoint's model back on a backend, its config as data, and which file a path names."""

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from charrnn.backends import Backend, StepSettings, make_backend
from charrnn.checkpoint.format import Checkpoint
from charrnn.data import Vocab
from charrnn.distributed import SOLO, Ranks
from charrnn.errors import UserError
from charrnn.model import param_shapes, spec_of


def restore_backend(ckpt: Checkpoint, cfg, replicas: Ranks = SOLO) -> tuple[Backend, Vocab]:
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
    settings = StepSettings.from_config(cfg, spec.vocab_size)
    return make_backend(cfg.backend.name, spec, params, settings, cfg.backend.device, replicas), vocab


def saved_config(ckpt: Checkpoint) -> DictConfig:
    """The checkpoint's config as an OmegaConf node in which every string is text: an interpolation
    (${oc.env:...}, ${unique_dir:...}) that a file holds is data, never resolved."""
    return OmegaConf.create(_as_text(ckpt.config))


def _as_text(value):
    """value with each string escaped for OmegaConf: the backslashes before a ${ doubled, the ${ escaped."""
    if isinstance(value, dict):
        return {k: _as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    return value


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


def resume_path(resume: str) -> Path:
    """train.resume names a checkpoint file or a run directory, whose ckpt_last.npz is where it stopped."""
    return resolve_checkpoint(resume, ("ckpt_last.npz",))
