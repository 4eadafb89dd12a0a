import numpy as np
import pytest

from charrnn.data.batching import StreamBatcher


@pytest.mark.parametrize("n,B,T", [(24, 3, 3), (100, 4, 5), (101, 1, 7), (50, 5, 9)])
def test_streams_are_contiguous_and_every_target_appears_once(n, B, T):
    ids = np.arange(n)
    batcher = StreamBatcher(ids, B, T)
    stream_len = n // B
    seen = []
    for k in range(len(batcher)):
        inputs, targets = batcher.chunk(k)
        assert inputs.shape == targets.shape and inputs.shape[0] == B and 1 <= inputs.shape[1] <= T
        assert np.array_equal(targets, inputs + 1)  # ids are positions: targets are inputs shifted by one
        seen.append(targets)
    targets = np.concatenate(seen, axis=1)
    expected = np.arange(B * stream_len).reshape(B, stream_len)[:, 1:]
    assert np.array_equal(targets, expected)        # in order, none lost, none repeated
    assert batcher.num_targets == expected.size


def test_chunk_k_continues_where_chunk_k_minus_1_ended():
    batcher = StreamBatcher(np.arange(60), 3, 4)
    first, _ = batcher.chunk(0)
    second, _ = batcher.chunk(1)
    assert np.array_equal(second[:, 0], first[:, -1] + 1)


def test_too_short_for_streams():
    with pytest.raises(ValueError, match="5 ids cannot make 3 streams of at least 2"):
        StreamBatcher(np.arange(5), 3, 4)


def previous_batches(ids, B, T):
    """The batches as the batcher made them before it read from a memory map: one time-major intp copy of
    all the streams, chunks as transposed views of it."""
    stream_len = len(ids) // B
    time_major = np.ascontiguousarray(ids[: B * stream_len].reshape(B, stream_len).T, dtype=np.intp)
    for start in range(0, stream_len - 1, T):
        stop = min(start + T, stream_len - 1)
        yield time_major[start:stop].T, time_major[start + 1: stop + 1].T


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_chunks_from_a_memory_map_equal_the_previous_batches(tmp_path, dtype):
    ids = np.random.default_rng(0).integers(0, 250, 1003).astype(dtype)
    ids.tofile(tmp_path / "ids")
    mapped = np.memmap(tmp_path / "ids", dtype, mode="r", shape=(len(ids),))
    batcher = StreamBatcher(mapped, 7, 10)
    previous = list(previous_batches(ids, 7, 10))
    assert len(batcher) == len(previous)
    for k, (inputs, targets) in enumerate(previous):
        got_inputs, got_targets = batcher.chunk(k)
        for got, expected in ((got_inputs, inputs), (got_targets, targets)):
            assert got.dtype == np.intp and np.array_equal(got, expected)
            assert got.T.flags.c_contiguous  # time-major, as the backends' np.take wants


def test_head_batches_the_first_ids_only():
    batcher = StreamBatcher(np.arange(1000), 8, 5)
    assert batcher.head(None) is batcher and batcher.head(1000) is batcher
    head = batcher.head(100)
    assert (head.batch_size, head.seq_length, head.num_targets) == (8, 5, 8 * 11)
    assert np.array_equal(head.streams, np.arange(96).reshape(8, 12))
    assert batcher.head(6).batch_size == 3 and batcher.head(1).batch_size == 1  # streams of at least 2 ids
