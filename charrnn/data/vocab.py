"""The vocabulary: the sorted set of a corpus's symbols, and text to ids and back (see charrnn.data for
what a symbol is under each data.encoding)."""

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from charrnn.errors import UserError

ENCODINGS = ("utf-8", "utf-8-replace", "bytes")


@dataclass(frozen=True)
class Vocab:
    """The sorted set of the corpus's symbols; a symbol's id is its index."""

    symbols: np.ndarray  # (V,) int32, ascending: code points, or byte values when is_bytes
    is_bytes: bool = False

    @classmethod
    def from_corpus(cls, corpus: np.ndarray, encoding: str) -> "Vocab":
        return cls(np.unique(corpus).astype(np.int32), encoding == "bytes")

    def __len__(self) -> int:
        return len(self.symbols)

    def ids(self, symbols: np.ndarray) -> np.ndarray:
        """The id of each symbol, or a UserError naming those the vocabulary lacks."""
        ids = np.searchsorted(self.symbols, symbols)
        unknown = (ids >= len(self)) | (self.symbols[np.minimum(ids, len(self) - 1)] != symbols)
        if unknown.any():
            raise UserError(f"not in the vocabulary: {self.show(np.unique(symbols[unknown]))}")
        return ids.astype(np.int32)

    def encode(self, text: str) -> np.ndarray:
        return self.ids(self.symbols_of(text))

    def symbols_of(self, text: str) -> np.ndarray:
        """text's code points or, in a byte vocabulary, its UTF-8 bytes. Text from a command line may hold
        bytes that are not UTF-8, which Python keeps as lone surrogates (U+DC80-U+DCFF): a byte vocabulary
        reads them as the bytes they were; in a text vocabulary they are code points no vocabulary has."""
        if self.is_bytes:
            return np.frombuffer(text.encode("utf-8", "surrogateescape"), np.uint8).astype(np.int64)
        return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.int64)

    def unknown(self, text: str) -> list[str]:
        """The characters of text that the vocabulary cannot encode, sorted."""
        return sorted(c for c in set(text) if not np.isin(self.symbols_of(c), self.symbols).all())

    @staticmethod
    def show_char(c: str) -> str:
        """A character for a message: quoted, or a byte that was not UTF-8 as \\xNN."""
        return f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else repr(c)

    def decode_stream(self, ids: Iterable[int]) -> Iterator[str]:
        """Text for ids as they come, each character as soon as it is whole."""
        if not self.is_bytes:
            for i in ids:
                yield chr(self.symbols[i])
            return
        utf8 = codecs.getincrementaldecoder("utf-8")("backslashreplace")
        for i in ids:
            yield utf8.decode(bytes([self.symbols[i]]))
        yield utf8.decode(b"", final=True)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.decode_stream(ids))

    def show(self, symbols: Iterable[int]) -> str:
        """Some symbols, for a message: a quoted string, or a bytes literal in a byte vocabulary."""
        return repr(bytes(map(int, symbols))) if self.is_bytes else repr("".join(map(chr, symbols)))
