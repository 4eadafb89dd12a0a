"""The GRU layer (torch.nn.GRU's), forward and backward through time.

Shapes: B streams, T steps, H hidden units, In inputs (V ids for layer 0), N = T*B. The three gates
are stacked in torch's order r, z, n: Wxh (3H, In), Whh (3H, H), bh (3H,) (torch's b_ir + b_hr,
b_iz + b_hz, b_in), and bhn (H,) (torch's b_hn: the reset gate multiplies it too, so it stays apart).

    forward                                          backward (dout_t = dL/dh_t from above)
    u_t = Wxh x_t + bh                  (B, 3H)       dh_t  = dout_t + dh_next
    w_t = Whh h_{t-1} + [0, 0, bhn]     (B, 3H)       dn    = dh_t * (1 - z)
    r = sigmoid(u_r + w_r)                            dz    = dh_t * (h_{t-1} - n)
    z = sigmoid(u_z + w_z)                            da_n  = dn * (1 - n^2)           = dL/du_n
    n = tanh(u_n + r * w_n)                           dw_n  = da_n * r                 = dL/dw_n
    h_t = (1 - z) * n + z * h_{t-1}                   da_r  = da_n * w_n * r (1 - r)  = dL/du_r = dL/dw_r
        = n + z * (h_{t-1} - n)                       da_z  = dz * z (1 - z)          = dL/du_z = dL/dw_z
                                                      dh_next = z * dh_t + Whh^T dw_t  (into h_{t-1})
                                                      dWhh = sum_t dw_t h_{t-1}^T, dbhn = sum_t dw_n;
                                                      dWxh, dbh, dx from du_t by projection.py

The input side u and the recurrent side w get the same gradient for r and z, and different ones
for n, where r sits between w_n and the sum: so the backward keeps both, dw in a buffer of its own.
Memory per layer, kept between steps: hs (T+1, B, H), gates (T, B, 3H) (u_t, then r, z, n, then
du_t, in place), w (T, B, 3H) (w_t, then dw_t), dh (T, B, H).
"""

from dataclasses import dataclass

import numpy as np

from charrnn.backends.numpy_layers.lstm import sigmoid_, sigmoid_backward_, tanh_backward_
from charrnn.backends.numpy_layers.projection import one_hot_buffer, project, project_backward


# Each parameter's gradient is a sum over steps of a term read off the cache after backward:
# (the field holding the per-step gradient it multiplies, the gate block of it, the term in words).
GRADIENT_TERMS = {"Wxh": ("gates", None, "du_t x_t^T"), "Whh": ("w", None, "dw_t h_{t-1}^T"),
                  "bh": ("gates", None, "du_t"), "bhn": ("w", 2, "dw_n,t")}


@dataclass
class GRUCache:
    """What backward needs from forward; its buffers are reused by the next forward of the same shape."""

    W: dict              # the layer's weights: Wxh (3H, In), Whh (3H, H), bh (3H,), bhn (H,)
    x: np.ndarray        # (T, B) ids or (T, B, In) the layer's input
    hs: np.ndarray       # (T+1, B, H) hs[0] = h_prev, hs[t+1] = h_t
    gates: np.ndarray    # (T, B, 3H) u_t, then r, z, n; in backward du_t
    w: np.ndarray        # (T, B, 3H) w_t; in backward dw_t
    dh: np.ndarray       # (T, B, H) backward: dh_t
    dh_next: np.ndarray  # (B, H)
    tmp: np.ndarray      # (3, B, H) scratch for the elementwise products of one step
    one_hot: np.ndarray  # (N, V) for dWxh of an id input (see projection.one_hot_buffer)
    dx: np.ndarray       # (T, B, In) dL/dx_t of a float input

    @classmethod
    def allocate(cls, W: dict, x: np.ndarray) -> "GRUCache":
        T, B = x.shape[:2]
        G, In = W["Wxh"].shape
        H = G // 3
        dtype = W["Wxh"].dtype
        return cls(W=W, x=x, hs=np.empty((T + 1, B, H), dtype), gates=np.empty((T, B, G), dtype),
                   w=np.empty((T, B, G), dtype), dh=np.empty((T, B, H), dtype), dh_next=np.empty((B, H), dtype),
                   tmp=np.empty((3, B, H), dtype), one_hot=one_hot_buffer(x, In, dtype),
                   dx=np.empty((0,) if x.ndim == 2 else x.shape, dtype))

    def fits(self, W: dict, x: np.ndarray) -> bool:
        return (self.gates.shape == (x.shape[0], x.shape[1], W["Whh"].shape[0]) and self.x.shape == x.shape
                and self.x.dtype.kind == x.dtype.kind and self.gates.dtype == W["Whh"].dtype)

    @property
    def state_last(self) -> tuple[np.ndarray]:
        return (self.hs[-1],)


def forward(W: dict, x: np.ndarray, state0: tuple[np.ndarray], reuse: GRUCache | None = None
            ) -> tuple[np.ndarray, GRUCache]:
    """x (T, B) ids or (T, B, In), state0 (h_prev (B, H),) -> out (T, B, H) every h_t, and the cache."""
    cache = reuse if reuse is not None and reuse.fits(W, x) else GRUCache.allocate(W, x)
    cache.W, cache.x = W, x
    hs, gates, w, rw = cache.hs, cache.gates, cache.w, cache.tmp[0]
    H = hs.shape[2]
    hs[0] = state0[0]
    project(W["Wxh"], W["bh"], x, out=gates)       # (T, B, 3H) u_t = Wxh x_t + bh
    WhhT = np.ascontiguousarray(W["Whh"].T)        # (H, 3H): the three gates' products fused in one
    bhn = W["bhn"]
    for t in range(len(x)):
        u, w_t = gates[t], w[t]                    # (B, 3H) each
        np.matmul(hs[t], WhhT, out=w_t)            # (B, 3H) Whh h_{t-1}
        w_t[:, 2 * H:] += bhn                      # w_t
        u[:, :2 * H] += w_t[:, :2 * H]
        sigmoid_(u[:, :2 * H])                     # (B, 2H) r, z
        r, z, n = u[:, :H], u[:, H:2 * H], u[:, 2 * H:]
        np.multiply(r, w_t[:, 2 * H:], out=rw)     # (B, H) r * w_n
        n += rw
        np.tanh(n, out=n)                          # (B, H) n
        np.subtract(hs[t], n, out=hs[t + 1])
        hs[t + 1] *= z
        hs[t + 1] += n                             # h_t = n + z * (h_{t-1} - n)
    return hs[1:], cache


def backward(dout: np.ndarray, cache: GRUCache, trace: dict | None = None
             ) -> tuple[dict, np.ndarray | None, tuple[np.ndarray]]:
    """dout (T, B, H) dL/dh_t from above -> grads keyed like the layer's W, dL/dx (T, B, In) or None for
    ids, and (dL/dh_prev (B, H),). trace, if given, maps "h" to a (T, B, H) array that receives every
    dh_t. Consumes the cache (gates becomes du_t, w becomes dw_t)."""
    Whh, hs, gates, w = cache.W["Whh"], cache.hs, cache.gates, cache.w
    T, B, H = cache.dh.shape
    N = T * B
    dh = cache.dh
    if dout is not dh:
        dh[...] = dout
    dh_next = cache.dh_next
    dh_next.fill(0)                                # nothing flows back from beyond the chunk
    tmp, dn, dz = cache.tmp                        # (B, H) each
    for t in reversed(range(T)):
        u, w_t = gates[t], w[t]                    # (B, 3H) the gates, becoming du_t; w_t, becoming dw_t
        r, z, n = u[:, :H], u[:, H:2 * H], u[:, 2 * H:]
        dh_t = dh[t]
        dh_t += dh_next                            # (B, H) dh_t: from above and from step t+1
        if trace:
            trace["h"][t] = dh_t
        np.subtract(hs[t], n, out=dz)
        dz *= dh_t                                 # dL/dz = dh_t * (h_{t-1} - n)
        np.multiply(dh_t, z, out=dn)
        np.subtract(dh_t, dn, out=dn)              # dL/dn = dh_t * (1 - z)
        np.multiply(dh_t, z, out=dh_next)          # z * dh_t: the path that skips every weight
        tanh_backward_(n, dn, tmp)                 # da_n
        np.multiply(n, w_t[:, 2 * H:], out=tmp)    # dL/dr = da_n * w_n
        np.multiply(n, r, out=w_t[:, 2 * H:])      # dw_n = da_n * r
        sigmoid_backward_(r, tmp, dn)              # da_r (dn is free again: scratch)
        sigmoid_backward_(z, dz, dn)               # da_z
        w_t[:, :2 * H] = u[:, :2 * H]              # dw_r, dw_z = da_r, da_z
        np.matmul(w_t, Whh, out=tmp)               # (B, H) Whh^T dw_t
        dh_next += tmp                             # dh_next, into step t-1
    h_prev = hs[:-1].reshape(N, H)
    dw = w.reshape(N, 3 * H)
    dWhh = dw.T @ h_prev                           # (3H, H) sum_t dw_t h_{t-1}^T
    dbhn = dw[:, 2 * H:].sum(axis=0)               # (H,) sum_t dw_n
    dWxh, dbh = project_backward(gates.reshape(N, 3 * H), cache.x, cache.W["Wxh"], cache.one_hot, cache.dx)
    dx = None if cache.x.ndim == 2 else cache.dx
    return {"Wxh": dWxh, "Whh": dWhh, "bh": dbh, "bhn": dbhn}, dx, (dh_next.copy(),)


def torch_step(W: dict, xw_t, state: tuple) -> tuple:
    """The torch backend's step, on tensors (autograd differentiates it): u_t = xw_t = Wxh x_t + bh and
    w_t = Whh h_{t-1} + [0, 0, bhn], each (B, 3H); W["WhhT"] (H, 3H), W["bhh"] (3H,) the recurrent bias."""
    h = state[0]
    u_r, u_z, u_n = xw_t.chunk(3, dim=1)
    w_r, w_z, w_n = W["bhh"].addmm(h, W["WhhT"]).chunk(3, dim=1)
    r, z = (u_r + w_r).sigmoid(), (u_z + w_z).sigmoid()
    n = (u_n + r * w_n).tanh()
    return (n + z * (h - n),)
