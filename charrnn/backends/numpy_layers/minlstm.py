"""The minLSTM layer (Feng et al., "Were RNNs All We Needed?", 2024), forward and backward through time.

Shapes: B streams, T steps, H hidden units, In inputs (V ids for layer 0), N = T*B. The LSTM without
h_{t-1} in its gates, without Whh, without an output gate, and with its forget and input gates
normalised to sum to one, so that h_t stays a weighted average of h_{t-1} and h~_t (and the cell state
is h_t itself). Three blocks, f, i, h~, in that order: Wxh (3H, In), bh (3H,).

    forward                                          backward (dout_t = dL/dh_t from above)
    u_t = Wxh x_t + bh         (B, 3H), all t at once    dh_t = dout_t + a_{t+1} * dh_{t+1}
    f = sigmoid(u_f),  i = sigmoid(u_i),  h~ = u_h       df' = dh_t * h_{t-1},  di' = dh_t * h~_t
    f' = f / (f + i),  i' = i / (f + i) = 1 - f'         q   = f' i' (df' - di')
       = sigmoid(log f - log i)   (so computed where both gates are near 0: LOW)
    h_t = f' * h_{t-1} + i' * h~_t                       du_f = (1 - f) q,  du_i = -(1 - i) q
        = a_t * h_{t-1} + b_t,  a_t = f', b_t = i' h~    du_h = dh_t * i'
                                                         dWxh, dbh, dx from du_t by projection.py

Where q comes from: f' = f / (f + i) gives df'/df = i' / (f + i) and df'/di = -f' / (f + i), i' the
opposite; times f (1 - f) = (f + i) f' (1 - f) for the sigmoid, the sum f + i cancels. The recurrence is
linear_recurrence.py's, as for minGRU. With activation="g" (model.activation) the candidate is
h~_t = g(u_h), and du_h = dh_t * i' * g'(u_h) (linear_recurrence.g_ has g and g').

Memory per layer, kept between steps (linear_recurrence.LinearCache): hs (T+1, B, H), gates (T, B, 3H)
(u_t, then f, i, h~, then du_t, in place), a (T, B, H) (f', then i' in backward), dh (T, B, H); with g,
slope (T, B, H).
"""

import numpy as np

from charrnn.backends.numpy_layers import linear_recurrence
from charrnn.backends.numpy_layers.lstm import sigmoid_
from charrnn.backends.numpy_layers.linear_recurrence import LinearCache
from charrnn.backends.numpy_layers.projection import project, project_backward


# Where both gates' pre-activations are below this, f / (f + i) is no longer read off f and i: NumPy's sigmoid
# (by tanh, lstm.sigmoid_) rounds to an absolute error (about 6e-8 in float32) and is exactly 0 below about -17,
# so f / (f + i) there would be inexact and then 0/0. f + i is at most 2 sigmoid(-4) = 0.036 below LOW.
LOW = -4.0


def normalised_forget(u_f: np.ndarray, u_i: np.ndarray) -> np.ndarray:
    """f' = f / (f + i) = sigmoid(log f - log i) from the pre-activations, with log sigmoid(u) = -softplus(-u):
    exact however far below 0 both are."""
    log_ratio = np.logaddexp(0, -u_i) - np.logaddexp(0, -u_f)
    sigmoid_(log_ratio)
    return log_ratio


# Each parameter's gradient is a sum over steps of a term read off the cache after backward:
# (the field holding the per-step gradient it multiplies, the gate block of it, the term in words).
GRADIENT_TERMS = {"Wxh": ("gates", None, "du_t x_t^T"), "bh": ("gates", None, "du_t")}


def forward(W: dict, x: np.ndarray, state0: tuple[np.ndarray], reuse: LinearCache | None = None,
            activation: str = "none") -> tuple[np.ndarray, LinearCache]:
    """x (T, B) ids or (T, B, In), state0 (h_prev (B, H),) -> out (T, B, H) every h_t, and the cache.
    activation: "none" (h~ = u_h) or "g" (h~ = g(u_h))."""
    cache = LinearCache.reuse_or_allocate(reuse, W, x, blocks=3, activation=activation)
    hs, gates, a = cache.hs, cache.gates, cache.a
    H = hs.shape[2]
    hs[0] = state0[0]
    project(W["Wxh"], W["bh"], x, out=gates)       # (T, B, 3H) u_t = Wxh x_t + bh
    low = np.maximum(gates[..., :H], gates[..., H:2 * H], out=a) < LOW   # (T, B, H) both gates near 0
    low_gates = (gates[..., :H][low], gates[..., H:2 * H][low]) if low.any() else None
    sigmoid_(gates[..., :2 * H])                   # (T, B, 2H) f, i
    f, i, candidate = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:]
    if cache.slope is not None:
        linear_recurrence.g_(candidate, cache.slope)   # (T, B, H) h~_t = g(u_h), slope = g'(u_h)
    np.add(f, i, out=a)                            # (T, B, H) f + i, for now
    if low_gates is not None:
        a[low] = 1.0                               # no 0/0 where f' is computed below instead
    np.divide(f, a, out=a)                         # a_t = f' = f / (f + i)
    if low_gates is not None:
        a[low] = normalised_forget(*low_gates)
    np.subtract(1, a, out=hs[1:])                  # i' = 1 - f', in h_t's place
    hs[1:] *= candidate                            # (T, B, H) b_t = i' * h~_t
    linear_recurrence.forward_(a, hs, cache.dh_next)
    return hs[1:], cache


def backward(dout: np.ndarray, cache: LinearCache, trace: dict | None = None
             ) -> tuple[dict, np.ndarray | None, tuple[np.ndarray]]:
    """dout (T, B, H) dL/dh_t from above -> grads keyed like the layer's W, dL/dx (T, B, In) or None for
    ids, and (dL/dh_prev (B, H),). trace, if given, maps "h" to a (T, B, H) array that receives every
    dh_t. Consumes the cache (gates becomes du_t)."""
    hs, gates, a, dh = cache.hs, cache.gates, cache.a, cache.dh
    T, B, H = dh.shape
    if dout is not dh:
        dh[...] = dout
    linear_recurrence.backward_(a, dh, cache.dh_next, trace)     # (T, B, H) every dh_t
    f, i, candidate = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:]
    np.subtract(hs[:-1], candidate, out=candidate)
    candidate *= dh                                # (T, B, H) df' - di' = dh_t * (h_{t-1} - h~_t)
    candidate *= a                                 # f' (df' - di')
    np.subtract(1, a, out=a)                       # (T, B, H) i' = 1 - f'
    candidate *= a                                 # q = f' i' (df' - di')
    np.subtract(1, f, out=f)
    f *= candidate                                 # du_f = (1 - f) q
    i -= 1
    i *= candidate                                 # du_i = (i - 1) q
    np.multiply(dh, a, out=candidate)              # du_h = dh_t * i'
    if cache.slope is not None:
        candidate *= cache.slope                   # du_h = dh_t * i' * g'(u_h)
    dWxh, dbh = project_backward(gates.reshape(T * B, 3 * H), cache.x, cache.W["Wxh"], cache.one_hot, cache.dx)
    dx = None if cache.x.ndim == 2 else cache.dx
    return {"Wxh": dWxh, "bh": dbh}, dx, (cache.dh_next.copy(),)


def torch_coefficients(xw, activation: str = "none") -> tuple:
    """The torch backend's a_t and b_t for all T steps at once, on tensors (autograd differentiates them):
    xw (T, B, 3H) or (B, 3H) = Wxh x_t + bh -> a_t = f' = f / (f + i), b_t = i' * h~_t."""
    u_f, u_i, candidate = xw.chunk(3, dim=-1)
    if activation == "g":
        candidate = linear_recurrence.torch_g(candidate)
    from torch.nn.functional import logsigmoid  # this module is NumPy's; only the torch backend calls this

    log_ratio = logsigmoid(u_f) - logsigmoid(u_i)                        # log f - log i, as in forward
    return log_ratio.sigmoid(), (-log_ratio).sigmoid() * candidate     # f / (f + i), i / (f + i) h~


def torch_step(W: dict, xw_t, state: tuple, activation: str = "none") -> tuple:
    """One step on tensors, for what follows the steps one by one (gradcheck's per-step picture):
    h_t = a_t * h_{t-1} + b_t."""
    a_t, b_t = torch_coefficients(xw_t, activation)
    return (b_t.addcmul(a_t, state[0]),)
