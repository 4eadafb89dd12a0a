"""Dropout masks, drawn in NumPy so that both backends apply the same ones.

model.dropout = p zeroes each layer's output h_t (before the next layer, and the top layer's before
the head) with probability p and scales what is kept by 1/(1-p) (inverted dropout: evaluation and
sampling use the weights as they are, with no mask). A step's masks depend on (seed, step, layer)
alone, so a resumed run draws the same masks as an unbroken one and needs no generator saved.
"""

import numpy as np

from charrnn.model import ModelSpec


def dropout_masks(p: float, spec: ModelSpec, batch_size: int, seq_length: int, seed: int, step: int,
                  dtype) -> tuple[np.ndarray, ...] | None:
    """L masks (T, B, H), each entry 0 or 1/(1-p), for training step `step`; None when p is 0."""
    if p == 0:
        return None
    shape = (seq_length, batch_size, spec.hidden_size)
    # float32 draws whatever the model's dtype: half the cost, and float32 and float64 runs share masks.
    return tuple(np.multiply(np.random.default_rng([seed, step, layer]).random(shape, np.float32) >= p,
                             1.0 / (1.0 - p), dtype=dtype)
                 for layer in range(spec.num_layers))
