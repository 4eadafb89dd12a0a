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

The streams are views of the ids, which are usually a memory map of the encoded corpus
(charrnn.data.cache): nothing is read or copied until a chunk asks for it. chunk() copies just its
(T+1, B) block out of the streams, time-major as the intp ids np.take wants, so that the (B, T) arrays it
returns are transposed views of one contiguous block.
"""

import numpy as np


class StreamBatcher:
    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int):
        stream_len = len(ids) // batch_size
        if stream_len < 2:
            raise ValueError(f"{len(ids)} ids cannot make {batch_size} streams of at least 2")
        self.ids = ids
        self.streams = ids[: batch_size * stream_len].reshape(batch_size, stream_len)  # (B, stream_len), a view
        self.seq_length = seq_length
        self.num_chunks = -(-(stream_len - 1) // seq_length)

    def __len__(self) -> int:
        return self.num_chunks

    @property
    def batch_size(self) -> int:
        return self.streams.shape[0]

    @property
    def num_targets(self) -> int:
        """How many predictions one pass over all chunks makes."""
        batch_size, stream_len = self.streams.shape
        return batch_size * (stream_len - 1)

    def chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk k of the epoch: inputs and targets, each (B, T) (T shorter for the last chunk)."""
        start = k * self.seq_length
        stop = min(start + self.seq_length, self.streams.shape[1] - 1)
        block = np.empty((stop + 1 - start, self.batch_size), np.intp)  # (T+1, B)
        block.T[...] = self.streams[:, start: stop + 1]
        return block[:-1].T, block[1:].T

    def head(self, num_ids: int | None) -> "StreamBatcher":
        """The same batching of only the first num_ids ids (at least 2; None or more than there are: all),
        with as many streams as fit, up to this one's."""
        if num_ids is None or num_ids >= len(self.ids):
            return self
        num_ids = max(num_ids, 2)
        return StreamBatcher(self.ids[:num_ids], min(self.batch_size, num_ids // 2), self.seq_length)
