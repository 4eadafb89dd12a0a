"""Generating text one character at a time from any backend's next-character logits (step_logits): the
distribution a character is drawn from, the drawing, and the text it makes. The trainer's samples, sample.py
and charrnn.load's Model.sample all draw here."""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from charrnn.data import Vocab
from charrnn.errors import UserError
from charrnn.model import ModelSpec, zero_state


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


def continuation(backend, vocab: Vocab, spec: ModelSpec, dtype: str, prime: str, length: int,
                 rng: np.random.Generator, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, greedy: bool = False) -> Iterator[str]:
    """The text drawn after prime (whose characters the vocabulary must hold), from a fresh state: each
    character as soon as it is whole (a byte vocabulary's character of several bytes comes out with its
    last byte; the pieces before it are empty strings)."""
    ids = generate(backend, start_ids(vocab, prime), zero_state(spec, 1, dtype), length, rng, temperature,
                   top_k, top_p, greedy)
    return vocab.decode_stream(ids)


@contextmanager
def quiet_overflow() -> Iterator[None]:
    """NumPy's overflow warnings silenced: scores that overflow end in one line from generate, a model that
    blows up in training in one line from the trainer, and a temperature that underflows is greedy by
    design; the warnings on the way would only bury them. (A filter costs nothing until a warning is
    raised; np.errstate slowed every training step by ~3%.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"(overflow|invalid value) encountered", RuntimeWarning)
        yield
