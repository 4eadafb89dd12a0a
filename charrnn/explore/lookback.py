"""How far back the model looks: for symbol j's loss, the size of its gradient with respect to each
earlier input symbol,

    G[j, k] = | d loss_j / d x_{j-k} |      k = 1 .. K,  x one-hot (V,),  L2 over its V entries,

where loss_j = -log p(symbol j | symbols 0..j-1) is read at step j-1. Training never sees this
gradient past train.seq_length: truncated BPTT cuts it there, while the forward pass keeps the whole
past. So the strip shows both what the model uses and what its training could not teach it to use.

loss_j depends on x_{j-k} only through steps j-k .. j-1, so a window of K steps, started from the state
the full forward pass had there (the trace's), gives every G[j, k] for k <= K exactly. Many j at once:
each is one stream of a batch, its input one-hot floats (so the layers' backward returns dL/dx), its
window's last step (or, near the start, its own step) the only one with a loss.
"""

import numpy as np

from charrnn.backends.numpy_backend import layers_backward, layers_forward
from charrnn.explore.trace import Trace
from charrnn.model import ModelSpec

BATCH = 64    # streams per pass: the LSTM's gates alone are (K, B, 4H) float32 per layer, 67 MB at K=128, H=512


def lookback(params: dict[str, np.ndarray], spec: ModelSpec, traced: Trace, targets: np.ndarray,
             lags: int) -> np.ndarray:
    """(P, lags) G[j, k] for each j in targets (1 <= j < T) and k = 1 .. lags (column k-1); NaN where
    j-k < 0. Computed in float32: these are sizes on a log scale, not weights."""
    params = {k: v.astype(np.float32) for k, v in params.items()}
    out = np.full((len(targets), lags), np.nan, np.float32)
    for start in range(0, len(targets), BATCH):
        js = np.asarray(targets[start:start + BATCH])
        out[start:start + len(js)] = _window_gradients(params, spec, traced, js, lags)
    return out


def _window_gradients(params: dict, spec: ModelSpec, traced: Trace, js: np.ndarray, lags: int) -> np.ndarray:
    ids, V, B = traced.ids, spec.vocab_size, len(js)
    K = min(lags, len(ids))                        # window length
    steps = js - 1                                 # the step whose output scores symbol j
    starts = np.maximum(0, steps - K + 1)          # (B,) each window's first step
    local = steps - starts                         # (B,) where in its window the loss is read
    streams = np.arange(B)
    window = ids[starts[None, :] + np.arange(K)[:, None]]              # (K, B) ids
    x = np.zeros((K, B, V), np.float32)
    x[np.arange(K)[:, None], streams[None, :], window] = 1             # (K, B, V) one-hot inputs
    names = spec.state_names
    state0 = [traced.state_after(s - 1, names) for s in starts]        # B tuples of (L, H) arrays
    state = tuple(np.stack([s[n] for s in state0], axis=1).astype(np.float32) for n in range(len(names)))  # (L, B, H)
    top, cache = layers_forward(params, spec, x, state)                # (K, B, H)
    h = top[local, streams]                                            # (B, H) what the head reads at each loss
    logits = h @ params["Why"].T + params["by"]                        # (B, V)
    dy = np.exp(logits - logits.max(axis=1, keepdims=True))
    dy /= dy.sum(axis=1, keepdims=True)
    dy[streams, ids[js]] -= 1                                          # d loss_j / d logits
    dout = np.zeros((K, B, spec.hidden_size), np.float32)
    dout[local, streams] = dy @ params["Why"]                          # (B, H) d loss_j / d h_top
    _, dout, _ = layers_backward(spec, cache, dout)                    # (K, B, V) d loss / d x
    sizes = np.sqrt(np.einsum("kbv,kbv->kb", dout, dout))              # (K, B)
    # lag k reads symbol j-k, at local step local - k + 1
    at = local[:, None] - np.arange(lags)[None, :]                     # (B, lags)
    result = np.full((B, lags), np.nan, np.float32)
    valid = at >= 0
    result[valid] = sizes[at[valid], np.nonzero(valid)[0]]
    return result
