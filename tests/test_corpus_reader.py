import numpy as np
import pytest

from charrnn.data import corpus as corpus_reader
from charrnn.data.corpus import id_dtype, scan, symbol_blocks, write_ids
from charrnn.errors import UserError

ENCODING_ERRORS = {"utf-8": "strict", "utf-8-replace": "replace"}


def whole_file_symbols(raw: bytes, encoding: str) -> np.ndarray:
    """What decoding the whole file at once gives: the reference the streaming reader must equal."""
    if encoding == "bytes":
        return np.frombuffer(raw, np.uint8).astype(np.int64)
    text = raw.decode("utf-8", ENCODING_ERRORS[encoding])
    return np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)


# "é" is c3 a9 and "✓" e2 9c 93: with 4-byte blocks each is cut by a boundary somewhere, and the invalid
# bytes (a lone ff, a truncated e2 9c) fall at a boundary and inside a block.
RAW = "abé✓".encode() + b"\xff" + "xé".encode() + b"\xe2\x9c" + b"z" + "✓✓é\n".encode() + b"\xc3"


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 4, 5, 7, 1 << 22])
@pytest.mark.parametrize("encoding", ["utf-8-replace", "bytes"])
def test_streaming_equals_decoding_the_whole_file(tmp_path, monkeypatch, block_bytes, encoding):
    monkeypatch.setattr(corpus_reader, "BLOCK_BYTES", block_bytes)
    path = tmp_path / "c.txt"
    path.write_bytes(RAW)
    expected = whole_file_symbols(RAW, encoding)
    streamed = np.concatenate([block.astype(np.int64) for block in symbol_blocks(path, encoding)])
    assert np.array_equal(streamed, expected)
    found = scan(path, encoding)
    assert np.array_equal(found.symbols, np.unique(expected)) and found.length == len(expected)
    with open(tmp_path / "ids", "wb") as out:
        assert write_ids(path, encoding, found.symbols, out) == len(expected)
    ids = np.fromfile(tmp_path / "ids", id_dtype(len(found.symbols)))
    assert np.array_equal(found.symbols[ids], expected)


@pytest.mark.parametrize("block_bytes", [1, 3, 4, 1 << 22])
@pytest.mark.parametrize("raw,offset", [("abé✓".encode() + b"\xff", 7), (b"ab" + "é".encode()[:1], 2),
                                        ("é".encode() + b"\xe2\x9cz", 2)])
def test_invalid_utf8_is_named_at_its_file_offset_whatever_the_blocks(tmp_path, monkeypatch, block_bytes, raw, offset):
    monkeypatch.setattr(corpus_reader, "BLOCK_BYTES", block_bytes)
    path = tmp_path / "c.txt"
    path.write_bytes(raw)
    with pytest.raises(UserError, match=rf"is not valid UTF-8 \(byte offset {offset}\); convert it"):
        scan(path, "utf-8")


def test_ascii_blocks_come_as_bytes_and_others_as_code_points(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("plain\n", encoding="utf-8")
    assert [b.dtype for b in symbol_blocks(path, "utf-8")] == [np.uint8]
    path.write_text("naïve\n", encoding="utf-8")
    assert [b.dtype for b in symbol_blocks(path, "utf-8")] == [np.uint32]


@pytest.mark.parametrize("size,dtype", [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16),
                                        (65537, np.uint32), (0x110000, np.uint32)])
def test_id_dtype_is_the_smallest_that_holds_every_id(size, dtype):
    assert id_dtype(size) == dtype
