"""The output layer and the loss, a forward/backward pair of their own (CS231n's temporal softmax loss),
so that any stack of recurrent layers ends in the same head.

Shapes: T steps, B streams, H hidden units, V characters, N = T*B, time-major.

    forward                                      backward (loss = mean over the N predictions)
    y_t = Why h_t + by                           dy_t = (p_t - onehot(target_t)) / N   (softmax + cross-entropy)
    p_t = softmax(y_t)                           dWhy = sum_t dy_t h_t^T,  dby = sum_t dy_t
    L   = -1/N sum_t log p_t[target_t]          dh_t = Why^T dy_t                     (into the top layer)

Memory: probs (N, V), kept between steps (logits, then p_t, then dy_t, in place).
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class HeadCache:
    W: dict              # Why (V, H), by (V,)
    h: np.ndarray        # (T, B, H) the top layer's outputs (after dropout)
    y: np.ndarray        # (N,) target ids, time-major, flattened
    probs: np.ndarray    # (N, V) logits, then p_t, then dL/dy_t (in place)


def logits_of(W: dict, h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """h (N, H) -> the logits y = Why h + by (N, V), into out if given."""
    logits = np.matmul(h, W["Why"].T, out=out)
    logits += W["by"]
    return logits


def forward(W: dict, h: np.ndarray, targets: np.ndarray, reuse: HeadCache | None = None
            ) -> tuple[float, HeadCache]:
    """h (T, B, H), targets (T, B) ids -> the mean cross-entropy in nats over the N predictions, and the cache."""
    Why = W["Why"]
    T, B, H = h.shape
    N = T * B
    V = Why.shape[0]
    if reuse is not None and reuse.probs.shape == (N, V) and reuse.probs.dtype == Why.dtype:
        probs = reuse.probs
    else:
        probs = np.empty((N, V), Why.dtype)
    y = targets.reshape(N)
    logits = logits_of(W, h.reshape(N, H), out=probs)   # (N, V) y_t = Why h_t + by
    logits -= logits.max(axis=1, keepdims=True)    # softmax is shift-invariant; this keeps exp finite
    target_logit = logits[np.arange(N), y]         # (N,)
    np.exp(logits, out=logits)
    total = logits.sum(axis=1, keepdims=True)      # (N, 1)
    loss = float(np.mean(np.log(total[:, 0]) - target_logit, dtype=np.float64))  # -log p_t[target]
    logits /= total                                # (N, V) p_t
    return loss, HeadCache(W=W, h=h, y=y, probs=probs)


def backward(cache: HeadCache, dh: np.ndarray, loss_scale: float = 1.0) -> dict:
    """Writes dL/dh_t into dh (T, B, H) (the top layer's own buffer, which its backward accumulates in,
    so nothing is copied) and returns the grads {Why, by}. loss_scale multiplies the loss being
    differentiated: 1 for the mean over the N predictions, N for min-char-rnn's sum. Consumes the cache
    (probs becomes dy)."""
    T, B, H = cache.h.shape
    N = T * B
    dy = cache.probs
    dy[np.arange(N), cache.y] -= 1                 # (N, V) dL/dy_t = p_t - onehot(target_t), softmax+CE
    dy *= loss_scale / N
    dWhy = dy.T @ cache.h.reshape(N, H)            # (V, H) sum_t dy_t h_t^T
    dby = dy.sum(axis=0)                           # (V,)
    np.matmul(dy, cache.W["Why"], out=dh.reshape(N, H))   # (T, B, H) Why^T dy_t
    return {"Why": dWhy, "by": dby}
