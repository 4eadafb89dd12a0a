import numpy as np
import pytest

from charrnn.batching import StreamBatcher


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
    with pytest.raises(ValueError):
        StreamBatcher(np.arange(5), 3, 4)
