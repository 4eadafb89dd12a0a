"""The minGRU layer (Feng et al., "Were RNNs All We Needed?", 2024), forward and backward through time.

Shapes: B streams, T steps, H hidden units, In inputs (V ids for layer 0), N = T*B. The GRU without
h_{t-1} in its gates, and so without Whh: the two blocks z (update gate) and h~ (candidate) are stacked
in that order, Wxh (2H, In), bh (2H,).

    forward                                          backward (dout_t = dL/dh_t from above)
    u_t = Wxh x_t + bh          (B, 2H), all t at once   dh_t = dout_t + a_{t+1} * dh_{t+1}
    z_t = sigmoid(u_z),  h~_t = u_h                      dz_t  = dh_t * (h~_t - h_{t-1})
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t               dh~_t = dh_t * z_t               = dL/du_h
        = a_t * h_{t-1} + b_t,                           du_z  = dz_t * z_t (1 - z_t)
          a_t = 1 - z_t,  b_t = z_t * h~_t               dWxh, dbh, dx from du_t by projection.py

With activation="g" (model.activation) the candidate is h~_t = g(u_h), the paper's positive one, and
du_h = dh_t * z_t * g'(u_h) (linear_recurrence.g_ has g and g').

The recurrence is linear_recurrence.py's: a_t and b_t need no h_{t-1}, so everything but one multiply
and one add per step runs over all T steps at once, and the backward's time loop is dh_next = a_t * dh_t.

Memory per layer, kept between steps (linear_recurrence.LinearCache): hs (T+1, B, H), gates (T, B, 2H)
(u_t, then z, h~, then du_t, in place), a (T, B, H), dh (T, B, H); with g, slope (T, B, H).
"""

import numpy as np

from charrnn.backends.numpy_layers import linear_recurrence
from charrnn.backends.numpy_layers.lstm import sigmoid_
from charrnn.backends.numpy_layers.linear_recurrence import LinearCache
from charrnn.backends.numpy_layers.projection import project, project_backward


# Each parameter's gradient is a sum over steps of a term read off the cache after backward:
# (the field holding the per-step gradient it multiplies, the gate block of it, the term in words).
GRADIENT_TERMS = {"Wxh": ("gates", None, "du_t x_t^T"), "bh": ("gates", None, "du_t")}


def forward(W: dict, x: np.ndarray, state0: tuple[np.ndarray], reuse: LinearCache | None = None,
            activation: str = "none") -> tuple[np.ndarray, LinearCache]:
    """x (T, B) ids or (T, B, In), state0 (h_prev (B, H),) -> out (T, B, H) every h_t, and the cache.
    activation: "none" (h~ = u_h) or "g" (h~ = g(u_h))."""
    cache = LinearCache.reuse_or_allocate(reuse, W, x, blocks=2, activation=activation)
    hs, gates, a = cache.hs, cache.gates, cache.a
    H = hs.shape[2]
    hs[0] = state0[0]
    project(W["Wxh"], W["bh"], x, out=gates)       # (T, B, 2H) u_t = Wxh x_t + bh
    z, candidate = gates[..., :H], gates[..., H:]
    sigmoid_(z)                                    # (T, B, H) z_t
    if cache.slope is not None:
        linear_recurrence.g_(candidate, cache.slope)   # (T, B, H) h~_t = g(u_h), slope = g'(u_h)
    np.subtract(1, z, out=a)                       # (T, B, H) a_t = 1 - z_t
    np.multiply(z, candidate, out=hs[1:])          # (T, B, H) b_t = z_t * h~_t, in h_t's place
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
    z, candidate = gates[..., :H], gates[..., H:]
    a *= z                                         # (T, B, H) z (1 - z)
    candidate -= hs[:-1]
    candidate *= dh                                # (T, B, H) dz = dh_t * (h~_t - h_{t-1})
    a *= candidate                                 # du_z = dz * z (1 - z)
    np.multiply(dh, z, out=candidate)              # du_h = dh_t * z_t
    if cache.slope is not None:
        candidate *= cache.slope                   # du_h = dh_t * z_t * g'(u_h)
    z[...] = a
    dWxh, dbh = project_backward(gates.reshape(T * B, 2 * H), cache.x, cache.W["Wxh"], cache.one_hot, cache.dx)
    dx = None if cache.x.ndim == 2 else cache.dx
    return {"Wxh": dWxh, "bh": dbh}, dx, (cache.dh_next.copy(),)


def torch_coefficients(xw, activation: str = "none") -> tuple:
    """The torch backend's a_t and b_t for all T steps at once, on tensors (autograd differentiates them):
    xw (T, B, 2H) or (B, 2H) = Wxh x_t + bh -> a_t = 1 - z_t, b_t = z_t * h~_t."""
    u_z, candidate = xw.chunk(2, dim=-1)
    if activation == "g":
        candidate = linear_recurrence.torch_g(candidate)
    z = u_z.sigmoid()
    return 1 - z, z * candidate


def torch_step(W: dict, xw_t, state: tuple, activation: str = "none") -> tuple:
    """One step on tensors, for what follows the steps one by one (gradcheck's per-step picture):
    h_t = a_t * h_{t-1} + b_t."""
    a_t, b_t = torch_coefficients(xw_t, activation)
    return (b_t.addcmul(a_t, state[0]),)
