"""Generate text one character at a time from any backend's next-character logits, and sample.py's
command: a checkpoint's model, on either backend, writing text as it is drawn."""

import sys
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from typing import TextIO

import numpy as np
from omegaconf import OmegaConf

from charrnn.checkpoint import load_checkpoint, resolve_checkpoint, restore_backend, saved_config
from charrnn.config import SampleConfig, to_config
from charrnn.data import Vocab
from charrnn.errors import UserError
from charrnn.model import spec_of, zero_state

SEPARATOR = "\n" + "-" * 40 + "\n"  # between samples, when num_samples > 1

# Control characters (C0 but tab, newline and carriage return; DEL; C1) shown as \xNN, as invalid UTF-8
# already is: a model of raw bytes can draw escape sequences that would drive the terminal.
ESCAPED_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7f, 0xa0)] if chr(c) not in "\t\n\r"}


def next_char_distribution(logits: np.ndarray, temperature: float, top_k: int | None,
                           top_p: float | None) -> np.ndarray:
    """Softmax of logits / temperature (V,), keeping only the top_k most likely characters and
    then the smallest set whose probability reaches top_p, renormalised. The logits are shifted to a
    maximum of 0 before dividing, so that however small the temperature the most likely character keeps
    a finite 0 and the rest fall to -inf at worst: greedy in the limit, never NaN."""
    z = logits.astype(np.float64)
    z = (z - z.max()) / temperature
    if top_k is not None and top_k < len(z):
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cumulative = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]
        kept = np.zeros_like(p)
        kept[keep] = p[keep]
        p = kept / kept.sum()
    return p


def generate(backend, prime_ids: np.ndarray, state: tuple, length: int, rng: np.random.Generator,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             greedy: bool = False) -> Iterator[int]:
    """Feed prime_ids (at least one) through the model to warm up the state (one stream: (L, 1, H)
    arrays, charrnn.model.zero_state's), then yield `length` sampled ids, each fed back in as the next input."""
    logits = None
    for ix in prime_ids:
        logits, state = backend.step_logits(np.array([ix]), state)
    for _ in range(length):
        if not np.isfinite(logits).all():
            raise UserError("the model's scores for the next character are not finite (its state overflowed); "
                            "sample from an earlier checkpoint of the run")
        if greedy:
            ix = int(np.argmax(logits[0]))
        else:
            ix = int(rng.choice(len(logits[0]), p=next_char_distribution(logits[0], temperature, top_k, top_p)))
        yield ix
        logits, state = backend.step_logits(np.array([ix]), state)


def start_ids(vocab: Vocab, prime: str) -> np.ndarray:
    """The ids that warm the state up: the prime's or, with no prime, a newline (so the text starts
    as a fresh line would), else the first symbol."""
    if prime:
        return vocab.encode(prime)
    return np.array([0]) if vocab.unknown("\n") else vocab.encode("\n")


def sample(cfg: SampleConfig, out: TextIO) -> None:
    """Write cfg.num_samples samples from the checkpoint to out, each character as soon as it is drawn.
    One generator seeded by cfg.seed serves all samples, so the same options give the same text."""
    path = resolve_checkpoint(cfg.checkpoint)
    ckpt = load_checkpoint(path)
    try:
        model_cfg = to_config(OmegaConf.merge(saved_config(ckpt), {"backend": asdict(cfg.backend)}))
    except UserError as e:
        raise UserError(f"checkpoint {path} holds an unusable config ({e})") from None
    backend, vocab = restore_backend(ckpt, model_cfg)
    prime = _known_prime(cfg.prime, vocab, cfg.skip_unknown)
    prime_ids = start_ids(vocab, prime)
    # echoed as the model reads it: a byte vocabulary's bytes that are not UTF-8 show as \xNN
    shown_prime = vocab.decode(prime_ids) if prime else ""
    rng = np.random.default_rng(cfg.seed)
    with warnings.catch_warnings():
        # Scores that overflow end in one line from generate, and a temperature that underflows is greedy
        # by design: NumPy's warnings on the way would only bury them.
        warnings.filterwarnings("ignore", r"(overflow|invalid value) encountered", RuntimeWarning)
        for i in range(cfg.num_samples):
            if i:
                out.write(SEPARATOR)
            out.write(shown_prime if cfg.raw else shown_prime.translate(ESCAPED_CONTROLS))
            state = zero_state(spec_of(model_cfg.model, len(vocab)), 1, model_cfg.model.dtype)
            ids = generate(backend, prime_ids, state, cfg.length, rng, cfg.temperature, cfg.top_k, cfg.top_p,
                           cfg.greedy)
            for text in vocab.decode_stream(ids):
                if text:  # a byte vocabulary's character of several bytes comes out with its last one
                    out.write(text if cfg.raw else text.translate(ESCAPED_CONTROLS))
                    out.flush()
    out.write("\n")
    out.flush()


def _known_prime(prime: str, vocab: Vocab, skip_unknown: bool) -> str:
    unknown = vocab.unknown(prime)
    shown = ", ".join(map(vocab.show_char, unknown))
    if any(vocab.show_char(c).startswith("\\x") for c in unknown):
        shown += " (bytes that are not UTF-8 text)"
    if unknown and not skip_unknown:
        raise UserError(f"the prime has characters the checkpoint's vocabulary lacks: {shown}; "
                        f"remove them, or pass skip_unknown=true to drop them")
    if unknown:
        print(f"skipping prime characters the checkpoint's vocabulary lacks: {shown}", file=sys.stderr)
    return "".join(c for c in prime if c not in unknown)
