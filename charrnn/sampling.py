"""sample.py's command: a checkpoint's model, on either backend, writing text as it is drawn (by
charrnn.generation's continuation, as charrnn.load's Model.sample draws it: both give the same text for the
same seed)."""

import sys
from typing import TextIO

import numpy as np

from charrnn.checkpoint import load_checkpoint, resolve_checkpoint
from charrnn.checkpoint.info import describe
from charrnn.checkpoint.loaded import LoadedModel, load_model
from charrnn.config import SampleConfig
from charrnn.data import Vocab
from charrnn.errors import UserError
from charrnn.generation import continuation, quiet_overflow, start_ids
from charrnn.novelty import NoveltyIndex
from charrnn.signals import raise_if_interrupted
from charrnn.threads import PhaseThreads

SEPARATOR = "\n" + "-" * 40 + "\n"  # between samples, when num_samples > 1

# Control characters (C0 but tab, newline and carriage return; DEL; C1) shown as \xNN, as invalid UTF-8
# already is: a model of raw bytes can draw escape sequences that would drive the terminal.
ESCAPED_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7f, 0xa0)] if chr(c) not in "\t\n\r"}


def sample(cfg: SampleConfig, out: TextIO) -> None:
    """Write cfg.num_samples samples from the checkpoint to out, each character as soon as it is drawn.
    One generator seeded by cfg.seed serves all samples, so the same options give the same text.
    With cfg.novelty, a line on stderr after each says how much of it the training text holds. With
    cfg.info, write what the checkpoint is instead (charrnn.checkpoint.info)."""
    if cfg.info:
        path = resolve_checkpoint(cfg.checkpoint)
        out.write(describe(path, load_checkpoint(path)) + "\n")
        return
    model = load_model(cfg.checkpoint, cfg.backend)
    vocab, dtype = model.vocab, model.config.model.dtype
    novelty = training_text_index(model) if cfg.novelty else None
    prime = known_text(cfg.prime, vocab, cfg.skip_unknown)
    # echoed as the model reads it: a byte vocabulary's bytes that are not UTF-8 show as \xNN
    shown_prime = vocab.decode(start_ids(vocab, prime)) if prime else ""
    rng = np.random.default_rng(cfg.seed)
    with quiet_overflow(), PhaseThreads().phase("sampling"):
        for i in range(cfg.num_samples):
            if i:
                out.write(SEPARATOR)
            out.write(shown_prime if cfg.raw else shown_prime.translate(ESCAPED_CONTROLS))
            drawn = []
            for text in continuation(model.backend, vocab, model.spec, dtype, prime, cfg.length, rng,
                                     cfg.temperature, cfg.top_k, cfg.top_p, cfg.greedy):
                raise_if_interrupted()
                if text:
                    out.write(text if cfg.raw else text.translate(ESCAPED_CONTROLS))
                    out.flush()
                    drawn.append(text)
            if novelty:
                out.flush()
                print(f"\n{novelty.describe(''.join(drawn))}", file=sys.stderr, end="")
    out.write("\n")
    out.flush()


def training_text_index(model: LoadedModel) -> NoveltyIndex:
    """The windows of the corpus the checkpoint was trained on."""
    train_ids, val_ids = model.splits("novelty=true", "sample from the directory the run was trained in, "
                                                      "or leave novelty off")
    return NoveltyIndex(train_ids, val_ids, model.vocab)


def known_text(text: str, vocab: Vocab, skip_unknown: bool, what: str = "prime") -> str:
    """text, or with skip_unknown its characters the vocabulary holds (saying on stderr which were
    dropped); without it, characters the vocabulary lacks are a UserError naming them."""
    unknown = vocab.unknown(text)
    shown = ", ".join(map(vocab.show_char, unknown))
    if any(vocab.show_char(c).startswith("\\x") for c in unknown):
        shown += " (bytes that are not UTF-8 text)"
    if unknown and not skip_unknown:
        raise UserError(f"the {what} has characters the checkpoint's vocabulary lacks: {shown}; "
                        f"remove them, or pass skip_unknown=true to drop them")
    if unknown:
        print(f"skipping {what} characters the checkpoint's vocabulary lacks: {shown}", file=sys.stderr)
    return "".join(c for c in text if c not in unknown)
