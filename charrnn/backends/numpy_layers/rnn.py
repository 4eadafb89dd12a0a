"""The vanilla tanh RNN layer (min-char-rnn's, torch.nn.RNN's), forward and backward through time.

Shapes: B streams, T steps, H hidden units, In inputs (V ids for layer 0), N = T*B. Arrays are
time-major: the recurrence reads and writes one contiguous (B, H) block per step.

    forward                                 backward (dout_t = dL/dh_t from above: head or next layer)
    a_t = Wxh x_t + bh + Whh h_{t-1}        dh_t     = dout_t + dh_next          (two paths into h_t)
    h_t = tanh(a_t)                         dh_raw_t = (1 - h_t^2) * dh_t         (tanh' = 1 - tanh^2)
                                            dh_next  = Whh^T dh_raw_t             (becomes dh_{t-1}'s second path)
                                            dWhh = sum_t dh_raw_t h_{t-1}^T, and dWxh, dbh, dx from
                                            dh_raw_t = dL/da_t by projection.py

Memory: hs (T+1, B, H) and dh (T, B, H) per layer, kept between steps.
The equations are for one stream with column vectors; the code keeps the B streams as rows, so
`Whh h` is written `h @ Whh.T` and `Whh^T dh_raw` is written `dh_raw @ Whh`.
"""

from dataclasses import dataclass

import numpy as np

from charrnn.backends.numpy_layers.projection import one_hot_buffer, project, project_backward


# Each parameter's gradient is a sum over steps of a term read off the cache after backward:
# (the field holding the per-step gradient it multiplies, the gate block of it, the term in words).
GRADIENT_TERMS = {"Wxh": ("dh", None, "dh_raw_t x_t^T"), "Whh": ("dh", None, "dh_raw_t h_{t-1}^T"),
                  "bh": ("dh", None, "dh_raw_t")}


@dataclass
class RNNCache:
    """What backward needs from forward; its buffers are reused by the next forward of the same shape."""

    W: dict              # the layer's weights: Wxh (H, In), Whh (H, H), bh (H,)
    x: np.ndarray        # (T, B) ids or (T, B, In) the layer's input
    hs: np.ndarray       # (T+1, B, H) hs[0] = h_prev, hs[t+1] = h_t
    dh: np.ndarray       # (T, B, H) backward: dh_t, then dh_raw_t (in place)
    step: np.ndarray     # (B, H) Whh h_{t-1} in the forward loop, dh_next in the backward loop
    dtanh: np.ndarray    # (B, H) 1 - h_t^2 in the backward loop
    one_hot: np.ndarray  # (N, V) for dWxh of an id input (see projection.one_hot_buffer)
    dx: np.ndarray       # (T, B, In) dL/dx_t of a float input

    @classmethod
    def allocate(cls, W: dict, x: np.ndarray) -> "RNNCache":
        T, B = x.shape[:2]
        H, In = W["Wxh"].shape
        dtype = W["Wxh"].dtype
        return cls(W=W, x=x, hs=np.empty((T + 1, B, H), dtype), dh=np.empty((T, B, H), dtype),
                   step=np.empty((B, H), dtype), dtanh=np.empty((B, H), dtype),
                   one_hot=one_hot_buffer(x, In, dtype), dx=np.empty((0,) if x.ndim == 2 else x.shape, dtype))

    def fits(self, W: dict, x: np.ndarray) -> bool:
        return (self.hs.shape[:2] == (x.shape[0] + 1, x.shape[1]) and self.hs.shape[2] == W["Whh"].shape[0]
                and self.x.shape == x.shape and self.x.dtype.kind == x.dtype.kind and self.hs.dtype == W["Whh"].dtype)

    @property
    def state_last(self) -> tuple[np.ndarray]:
        return (self.hs[-1],)


def forward(W: dict, x: np.ndarray, state0: tuple[np.ndarray], reuse: RNNCache | None = None
            ) -> tuple[np.ndarray, RNNCache]:
    """x (T, B) ids or (T, B, In), state0 (h_prev (B, H),) -> out (T, B, H) every h_t, and the cache."""
    cache = reuse if reuse is not None and reuse.fits(W, x) else RNNCache.allocate(W, x)
    cache.W, cache.x = W, x
    hs, step = cache.hs, cache.step
    hs[0] = state0[0]
    project(W["Wxh"], W["bh"], x, out=hs[1:])     # (T, B, H) Wxh x_t + bh, for now in h_t's place
    # A contiguous copy of Whh^T: OpenBLAS multiplies by it ~20% faster than by the transposed view.
    WhhT = np.ascontiguousarray(W["Whh"].T)        # (H, H)
    for t in range(len(x)):
        np.matmul(hs[t], WhhT, out=step)           # (B, H) Whh h_{t-1}
        step += hs[t + 1]                          # a_t = Wxh x_t + bh + Whh h_{t-1}
        np.tanh(step, out=hs[t + 1])               # h_t = tanh(a_t)
    return hs[1:], cache


def backward(dout: np.ndarray, cache: RNNCache, trace: dict | None = None
             ) -> tuple[dict, np.ndarray | None, tuple[np.ndarray]]:
    """dout (T, B, H) dL/dh_t from above -> grads keyed like the layer's W, dL/dx (T, B, In) or None for
    ids, and (dL/dh_prev (B, H),). trace, if given, maps "h" to a (T, B, H) array that receives every
    dh_t. Consumes the cache (dh becomes dh_raw_t)."""
    Whh, hs = cache.W["Whh"], cache.hs
    T, B, H = cache.dh.shape
    N = T * B
    dh = cache.dh
    if dout is not dh:
        dh[...] = dout
    dtanh = cache.dtanh
    dh_next = cache.step
    dh_next.fill(0)                                # nothing flows back from beyond the chunk
    for t in reversed(range(T)):
        # The subtle point of BPTT: h_t feeds both the layer above (or y_t) and h_{t+1}, so its gradient is
        # the sum of the one from above (already in dh[t]) and the one flowing back from step t+1 (dh_next).
        dh[t] += dh_next                           # (B, H) dh_t
        if trace:
            trace["h"][t] = dh[t]
        np.multiply(hs[t + 1], hs[t + 1], out=dtanh)
        np.subtract(1, dtanh, out=dtanh)           # (B, H) 1 - h_t^2, computed while h_t is in cache
        dh[t] *= dtanh                             # (B, H) dh_raw_t
        np.matmul(dh[t], Whh, out=dh_next)         # (B, H) Whh^T dh_raw_t, into step t-1
    dh_raw = dh.reshape(N, H)
    dWhh = dh_raw.T @ hs[:-1].reshape(N, H)        # (H, H) sum_t dh_raw_t h_{t-1}^T
    dWxh, dbh = project_backward(dh_raw, cache.x, cache.W["Wxh"], cache.one_hot, cache.dx)
    dx = None if cache.x.ndim == 2 else cache.dx
    return {"Wxh": dWxh, "Whh": dWhh, "bh": dbh}, dx, (dh_next.copy(),)


def torch_step(W: dict, xw_t, state: tuple) -> tuple:
    """The torch backend's step, on tensors (autograd differentiates it): h_t = tanh(Wxh x_t + bh + Whh h_{t-1}),
    xw_t (B, H) = Wxh x_t + bh, W["WhhT"] (H, H)."""
    # tanh in place is safe: addmm's backward needs its inputs, not its output.
    return (xw_t.addmm(state[0], W["WhhT"]).tanh_(),)
