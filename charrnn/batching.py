"""Cut a split into parallel streams and read them a chunk at a time, for truncated BPTT.

    split:    a b c d e f g h i j k l m n o p q r s t u v w x      (24 ids, batch_size B = 3)

    streams:  a b c d e f g h        each stream is one contiguous stretch of text, so the
              i j k l m n o p        hidden state carried from one chunk to the next belongs
              q r s t u v w x        to the same stream: the text really does continue there

    chunks (seq_length T = 3):   inputs      targets (the inputs shifted by one: predict the next id)
              chunk 0            a b c       b c d
                                 i j k       j k l
                                 q r s       r s t
              chunk 1            d e f       e f g
              chunk 2            g           h        (the last chunk is shorter, so nothing is dropped)

Every id but a stream's first is a target exactly once per epoch. The split's last len % B ids,
fewer than B, do not fit a stream and are left out.

The streams are stored time-major, (stream_len, B), as the intp ids np.take wants, so that a chunk is
one contiguous block: the (B, T) arrays chunk() returns are transposed views of it.
"""

import numpy as np


class StreamBatcher:
    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int):
        stream_len = len(ids) // batch_size
        if stream_len < 2:
            raise ValueError(f"{len(ids)} ids cannot make {batch_size} streams of at least 2")
        streams = ids[: batch_size * stream_len].reshape(batch_size, stream_len)
        self.time_major = np.ascontiguousarray(streams.T, dtype=np.intp)   # (stream_len, B)
        self.seq_length = seq_length
        self.num_chunks = -(-(stream_len - 1) // seq_length)

    def __len__(self) -> int:
        return self.num_chunks

    @property
    def batch_size(self) -> int:
        return self.time_major.shape[1]

    @property
    def num_targets(self) -> int:
        """How many predictions one pass over all chunks makes."""
        stream_len, batch_size = self.time_major.shape
        return batch_size * (stream_len - 1)

    def chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk k of the epoch: inputs and targets, each (B, T) (T shorter for the last chunk)."""
        start = k * self.seq_length
        stop = min(start + self.seq_length, self.time_major.shape[0] - 1)
        return self.time_major[start:stop].T, self.time_major[start + 1: stop + 1].T
