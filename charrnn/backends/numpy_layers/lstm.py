"""The LSTM layer (torch.nn.LSTM's), forward and backward through time.

Shapes: B streams, T steps, H hidden units, In inputs (V ids for layer 0), N = T*B. The four gates
are stacked in torch's order i, f, g, o: Wxh (4H, In), Whh (4H, H), bh (4H,).

    forward                                          backward (dout_t = dL/dh_t from above)
    a_t = Wxh x_t + bh + Whh h_{t-1}   (B, 4H)        dh_t  = dout_t + dh_next
    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o) dc_t  = dc_next + dh_t * o * (1 - tanh(c_t)^2)
    g = tanh(a_g)                                     da_o = dh_t * tanh(c_t) * o (1 - o)
    c_t = f * c_{t-1} + i * g                         da_i = dc_t * g * i (1 - i)
    h_t = o * tanh(c_t)                               da_g = dc_t * i * (1 - g^2)
                                                      da_f = dc_t * c_{t-1} * f (1 - f)
                                                      dc_next = dc_t * f            (into c_{t-1})
                                                      dh_next = Whh^T da_t          (into h_{t-1})
                                                      dWhh = sum_t da_t h_{t-1}^T; dWxh, dbh, dx from
                                                      da_t by projection.py

Two paths carry the gradient back through time: dh_next through Whh and the gates, and dc_next
through the cell state alone, scaled by f at each step (the LSTM's reason to exist).

Speed: a step is one (B, H) @ (H, 4H) product and a few elementwise passes, each over all four gates
where it can be; exp costs half of tanh in NumPy (a sixteenth in float64). i, f, o = 1 / (1 + exp(-a)) and
g = tanh(a_g) = 2 / (1 + exp(-2 a_g)) - 1, so with the pre-activations scaled by -1 (i, f, o) and
-2 (g), exact in floating point, one exp serves the four gates. In backward, both gate derivatives
are base + s * (slope - s) in the gate's value s: s (1 - s) for a sigmoid (slope 1, base 0) and
1 - g^2 for tanh (slope 0, base 1), one expression over the whole (B, 4H) block.

Memory per layer, kept between steps: hs, cs (T+1, B, H), tanh_c (T, B, H), gates (T, B, 4H)
(a_t, then the gates, then da_t, in place), dh (T, B, H).
"""

from dataclasses import dataclass

import numpy as np

from charrnn.backends.numpy_layers.projection import one_hot_buffer, project, project_backward


def sigmoid_(a: np.ndarray) -> None:
    """a <- sigmoid(a) in place, as 1/2 + tanh(a/2)/2 (no overflow for large |a|)."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5


def sigmoid_backward_(s: np.ndarray, ds: np.ndarray, scratch: np.ndarray) -> None:
    """s <- ds * s (1 - s) in place: from a gate's value to the gradient of its pre-activation."""
    np.multiply(s, s, out=scratch)
    np.subtract(s, scratch, out=s)
    s *= ds


def tanh_backward_(y: np.ndarray, dy: np.ndarray, scratch: np.ndarray) -> None:
    """y <- dy * (1 - y^2) in place."""
    np.multiply(y, y, out=scratch)
    np.subtract(1, scratch, out=y)
    y *= dy


# Each parameter's gradient is a sum over steps of a term read off the cache after backward:
# (the field holding the per-step gradient it multiplies, the gate block of it, the term in words).
GRADIENT_TERMS = {"Wxh": ("gates", None, "da_t x_t^T"), "Whh": ("gates", None, "da_t h_{t-1}^T"),
                  "bh": ("gates", None, "da_t")}


@dataclass
class LSTMCache:
    """What backward needs from forward; its buffers are reused by the next forward of the same shape."""

    W: dict              # the layer's weights: Wxh (4H, In), Whh (4H, H), bh (4H,)
    x: np.ndarray        # (T, B) ids or (T, B, In) the layer's input
    hs: np.ndarray       # (T+1, B, H) hs[0] = h_prev, hs[t+1] = h_t
    cs: np.ndarray       # (T+1, B, H) cs[0] = c_prev, cs[t+1] = c_t
    tanh_c: np.ndarray   # (T, B, H) tanh(c_t)
    gates: np.ndarray    # (T, B, 4H) a_t, then i, f, g, o; in backward da_t
    dh: np.ndarray       # (T, B, H) backward: dh_t
    step: np.ndarray     # (B, 4H) Whh h_{t-1}
    dh_next: np.ndarray  # (B, H)
    dc: np.ndarray       # (B, H) dc_t, then dc_next
    dgate: np.ndarray    # (B, 4H) dL/di, dL/df, dL/dg, dL/do of one step
    deriv: np.ndarray    # (B, 4H) the gates' derivatives at one step
    tmp: np.ndarray      # (B, H) scratch for the elementwise products of one step
    sig: np.ndarray      # (4H,) 1 in the sigmoid gates' blocks (i, f, o), 0 in g's
    one_hot: np.ndarray  # (N, V) for dWxh of an id input (see projection.one_hot_buffer)
    dx: np.ndarray       # (T, B, In) dL/dx_t of a float input

    @classmethod
    def allocate(cls, W: dict, x: np.ndarray) -> "LSTMCache":
        T, B = x.shape[:2]
        G, In = W["Wxh"].shape
        H = G // 4
        dtype = W["Wxh"].dtype
        return cls(W=W, x=x, hs=np.empty((T + 1, B, H), dtype), cs=np.empty((T + 1, B, H), dtype),
                   tanh_c=np.empty((T, B, H), dtype), gates=np.empty((T, B, G), dtype),
                   dh=np.empty((T, B, H), dtype), step=np.empty((B, G), dtype), dh_next=np.empty((B, H), dtype),
                   dc=np.empty((B, H), dtype), dgate=np.empty((B, G), dtype), deriv=np.empty((B, G), dtype),
                   tmp=np.empty((B, H), dtype), sig=np.repeat(np.array([1, 1, 0, 1], dtype), H),
                   one_hot=one_hot_buffer(x, In, dtype),
                   dx=np.empty((0,) if x.ndim == 2 else x.shape, dtype))

    def fits(self, W: dict, x: np.ndarray) -> bool:
        return (self.gates.shape == (x.shape[0], x.shape[1], W["Whh"].shape[0]) and self.x.shape == x.shape
                and self.x.dtype.kind == x.dtype.kind and self.gates.dtype == W["Whh"].dtype)

    @property
    def state_last(self) -> tuple[np.ndarray, np.ndarray]:
        return self.hs[-1], self.cs[-1]


def forward(W: dict, x: np.ndarray, state0: tuple[np.ndarray, np.ndarray], reuse: LSTMCache | None = None
            ) -> tuple[np.ndarray, LSTMCache]:
    """x (T, B) ids or (T, B, In), state0 (h_prev, c_prev), each (B, H) -> out (T, B, H) every h_t, and the cache."""
    cache = reuse if reuse is not None and reuse.fits(W, x) else LSTMCache.allocate(W, x)
    cache.W, cache.x = W, x
    hs, cs, gates, step, ig = cache.hs, cache.cs, cache.gates, cache.step, cache.tmp
    H = hs.shape[2]
    scale = cache.sig - 2                          # (4H,) -1 for i, f, o; -2 for g
    hs[0], cs[0] = state0
    project(W["Wxh"], W["bh"], x, out=gates)       # (T, B, 4H) Wxh x_t + bh
    gates *= scale
    WhhT = np.ascontiguousarray(W["Whh"].T)        # (H, 4H): the four gates' products fused in one
    WhhT *= scale
    with np.errstate(over="ignore"):               # exp(-a) = inf for a very negative a gives the limit 0
        for t in range(len(x)):
            a = gates[t]                           # (B, 4H)
            np.matmul(hs[t], WhhT, out=step)       # (B, 4H) Whh h_{t-1}, scaled
            a += step                              # -a_t for i, f, o; -2 a_t for g
            np.exp(a, out=a)
            a += 1
            np.divide(1, a, out=a)                 # i, f, o = sigmoid(a_t); sigmoid(2 a_g) in g's block
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            g *= 2
            g -= 1                                 # (B, H) g = tanh(a_g)
            np.multiply(f, cs[t], out=cs[t + 1])   # (B, H) f * c_{t-1}
            np.multiply(i, g, out=ig)
            cs[t + 1] += ig                        # c_t = f * c_{t-1} + i * g
            np.tanh(cs[t + 1], out=cache.tanh_c[t])         # (B, H) tanh(c_t)
            np.multiply(o, cache.tanh_c[t], out=hs[t + 1])  # h_t = o * tanh(c_t)
    return hs[1:], cache


def backward(dout: np.ndarray, cache: LSTMCache, trace: dict | None = None
             ) -> tuple[dict, np.ndarray | None, tuple[np.ndarray, np.ndarray]]:
    """dout (T, B, H) dL/dh_t from above -> grads keyed like the layer's W, dL/dx (T, B, In) or None for
    ids, and (dL/dh_prev, dL/dc_prev), each (B, H). trace, if given, maps "h" and/or "c" to (T, B, H)
    arrays that receive every dh_t / dc_t. Consumes the cache (gates becomes da_t)."""
    Whh, hs, cs, gates = cache.W["Whh"], cache.hs, cache.cs, cache.gates
    T, B, H = cache.dh.shape
    N = T * B
    dh = cache.dh
    if dout is not dh:
        dh[...] = dout
    dh_next, dc = cache.dh_next, cache.dc
    dh_next.fill(0)                                # nothing flows back from beyond the chunk
    dc.fill(0)
    tmp = cache.tmp                                # (B, H)
    dgate, deriv, sig = cache.dgate, cache.deriv, cache.sig   # sig: the derivatives' slope
    base = 1 - sig                                 # (4H,) 0 for i, f, o; 1 for g
    trace = trace or {}
    for t in reversed(range(T)):
        a = gates[t]                               # (B, 4H) the gates, becoming da_t
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        dh_t, tanh_c = dh[t], cache.tanh_c[t]
        dh_t += dh_next                            # (B, H) dh_t: from above and from step t+1
        np.multiply(tanh_c, tanh_c, out=tmp)
        np.subtract(1, tmp, out=tmp)               # 1 - tanh(c_t)^2
        tmp *= o
        tmp *= dh_t
        dc += tmp                                  # (B, H) dc_t: from h_t and from c_{t+1}
        if "h" in trace:
            trace["h"][t] = dh_t
        if "c" in trace:
            trace["c"][t] = dc
        np.multiply(dc, g, out=dgate[:, :H])       # dL/di
        np.multiply(dc, cs[t], out=dgate[:, H:2 * H])       # dL/df
        np.multiply(dc, i, out=dgate[:, 2 * H:3 * H])       # dL/dg
        np.multiply(dh_t, tanh_c, out=dgate[:, 3 * H:])     # dL/do
        dc *= f                                    # (B, H) dc_next, into step t-1
        np.subtract(sig, a, out=deriv)
        deriv *= a
        deriv += base                              # (B, 4H) s (1 - s) for i, f, o; 1 - g^2 for g
        np.multiply(dgate, deriv, out=a)           # (B, 4H) da_t
        np.matmul(a, Whh, out=dh_next)             # (B, H) Whh^T da_t, into step t-1
    da = gates.reshape(N, 4 * H)
    dWhh = da.T @ hs[:-1].reshape(N, H)            # (4H, H) sum_t da_t h_{t-1}^T
    dWxh, dbh = project_backward(da, cache.x, cache.W["Wxh"], cache.one_hot, cache.dx)
    dx = None if cache.x.ndim == 2 else cache.dx
    return {"Wxh": dWxh, "Whh": dWhh, "bh": dbh}, dx, (dh_next.copy(), dc.copy())


def torch_step(W: dict, xw_t, state: tuple) -> tuple:
    """The torch backend's step, on tensors (autograd differentiates it): the gates i, f, g, o from
    a_t = Wxh x_t + bh + Whh h_{t-1} (B, 4H), xw_t = Wxh x_t + bh, W["WhhT"] (H, 4H)."""
    h, c = state
    i, f, g, o = xw_t.addmm(h, W["WhhT"]).chunk(4, dim=1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c
