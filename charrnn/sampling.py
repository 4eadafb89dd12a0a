"""Generate text one character at a time from any backend's next-character logits."""

from collections.abc import Iterator

import numpy as np


def next_char_distribution(logits: np.ndarray, temperature: float, top_k: int | None,
                           top_p: float | None) -> np.ndarray:
    """Softmax of logits / temperature (V,), keeping only the top_k most likely characters and
    then the smallest set whose probability reaches top_p, renormalised."""
    z = logits.astype(np.float64) / temperature
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


def generate(backend, prime_ids: np.ndarray, h: np.ndarray, length: int, rng: np.random.Generator,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             greedy: bool = False) -> Iterator[int]:
    """Feed prime_ids (at least one) through the model to warm up h (1, H), then yield `length`
    sampled ids, each fed back in as the next input."""
    logits = None
    for ix in prime_ids:
        logits, h = backend.step_logits(np.array([ix]), h)
    for _ in range(length):
        if greedy:
            ix = int(np.argmax(logits[0]))
        else:
            ix = int(rng.choice(len(logits[0]), p=next_char_distribution(logits[0], temperature, top_k, top_p)))
        yield ix
        logits, h = backend.step_logits(np.array([ix]), h)
