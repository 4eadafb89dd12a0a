"""Text in, ids out: find or fetch the corpus, its vocabulary and ids (encoded once, then memory-mapped:
see charrnn.data.cache), split.

A corpus is read as symbols, and data.encoding says what a symbol is:

    utf-8          a Unicode character; a file that is not valid UTF-8 is refused, naming the byte offset
    utf-8-replace  the same, but each invalid byte sequence is read as U+FFFD, the replacement character
    bytes          a byte value, whatever the file holds; text given later (a prime) goes in as its UTF-8
                   bytes, and what the model writes comes out decoded from UTF-8 (a character of several
                   bytes takes several steps; bytes that are not UTF-8 print as \\xNN)
"""

import numpy as np

from charrnn.data.batching import StreamBatcher
from charrnn.data.cache import load_encoded
from charrnn.data.corpus import corpus_path
from charrnn.data.vocab import ENCODINGS, Vocab


def load_ids(cfg) -> tuple[Vocab, np.ndarray]:
    """The corpus named by a DataConfig as ids (n,), memory-mapped from its encoded copy in the cache
    (charrnn.data.cache), and its vocabulary."""
    symbols, ids = load_encoded(corpus_path(cfg), cfg.encoding, cfg.cache_dir)
    return Vocab(symbols, cfg.encoding == "bytes"), ids


def split(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous split, validation last (nanoGPT's: 1,003,854 / 111,540 chars of Tiny Shakespeare)."""
    n_train = int(len(ids) * (1 - val_fraction))
    return ids[:n_train], ids[n_train:]


__all__ = ["ENCODINGS", "StreamBatcher", "Vocab", "corpus_path", "load_ids", "split"]
