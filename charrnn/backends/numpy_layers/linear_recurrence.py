"""The linear recurrence under minGRU and minLSTM, forward and backward through time.

Shapes: B streams, T steps, H hidden units; a_t and b_t (B, H) are computed beforehand for all T
steps at once, from the layer's input alone (no h_{t-1} in them: that is what makes the cells
parallel), so the time loop is elementwise only.

    forward                                  backward (dout_t = dL/dh_t from above)
    h_t = a_t * h_{t-1} + b_t                dh_t    = dout_t + dh_next
                                             dh_next = a_t * dh_t                (into h_{t-1})
                                             da_t    = dh_t * h_{t-1},  db_t = dh_t

Beside the tanh RNN's backward (dh_next = Whh^T ((1 - h_t^2) dh_t)) there is no Jacobian product
and no nonlinearity: each step scales the gradient by a_t, elementwise. Both loops are one multiply
and one add per step; the da_t and db_t terms are taken after the loop for all T steps at once.

The step loop stays sequential here. A doubling scan (log2 T passes over the whole (T, B, H) block)
does O(T log T) work in place of O(T), and NumPy pays little per call but much per element: at
(H, B, T) = (512, 64, 64), float32, the loop's forward took 1.3 ms of one thread's CPU time and the
scan's 12 ms (docs/cells.md, "The parallel RNNs").

With model.activation=g both cells take their candidate through the paper's g (g_ below), which keeps
it positive, and so every h_t from a non-negative carried state (h_t is a weighted average of h_{t-1}
and h~_t): what the paper's log-space scan needs. The step loop here does not need it.

    h~_t = g(u_h) = u_h + 1/2 (u_h >= 0),  sigmoid(u_h) (u_h < 0)      du_h = dh~_t * g'(u_h)
    g'(u_h) = 1 (u_h >= 0),  sigmoid(u_h) (1 - sigmoid(u_h)) (u_h < 0)  (kept from forward: slope)

The paper takes its h_0 through g as well. Here h_0 is the carried state: zero at a stream's start
(non-negative already) and the last chunk's h_T after it (positive already): g is not needed there to
keep h_t positive, and taken at every chunk's start it would make a run cut into chunks differ from one
unbroken run.
"""

from dataclasses import dataclass

import numpy as np

from charrnn.backends.numpy_layers.lstm import sigmoid_
from charrnn.backends.numpy_layers.projection import one_hot_buffer


@dataclass
class LinearCache:
    """What a minGRU or minLSTM layer's backward needs from its forward; its buffers are reused by the next
    forward of the same shape. G = the cell's blocks times H."""

    W: dict              # the layer's weights: Wxh (G, In), bh (G,)
    x: np.ndarray        # (T, B) ids or (T, B, In) the layer's input
    hs: np.ndarray       # (T+1, B, H) hs[0] = h_prev, hs[t+1] = h_t
    gates: np.ndarray    # (T, B, G) u_t = Wxh x_t + bh, then the gates, then du_t
    a: np.ndarray        # (T, B, H) a_t; scratch in backward
    dh: np.ndarray       # (T, B, H) backward: dh_t
    dh_next: np.ndarray  # (B, H)
    one_hot: np.ndarray  # (N, V) for dWxh of an id input (see projection.one_hot_buffer)
    dx: np.ndarray       # (T, B, In) dL/dx_t of a float input
    slope: np.ndarray | None = None   # (T, B, H) g'(u_h), with activation g only

    @classmethod
    def allocate(cls, W: dict, x: np.ndarray, blocks: int, activation: str = "none") -> "LinearCache":
        T, B = x.shape[:2]
        G, In = W["Wxh"].shape
        H = G // blocks
        dtype = W["Wxh"].dtype
        return cls(W=W, x=x, hs=np.empty((T + 1, B, H), dtype), gates=np.empty((T, B, G), dtype),
                   a=np.empty((T, B, H), dtype), dh=np.empty((T, B, H), dtype), dh_next=np.empty((B, H), dtype),
                   one_hot=one_hot_buffer(x, In, dtype), dx=np.empty((0,) if x.ndim == 2 else x.shape, dtype),
                   slope=np.empty((T, B, H), dtype) if activation == "g" else None)

    @classmethod
    def reuse_or_allocate(cls, reuse: "LinearCache | None", W: dict, x: np.ndarray, blocks: int,
                          activation: str = "none") -> "LinearCache":
        fits = (reuse is not None and reuse.gates.shape == (*x.shape[:2], W["Wxh"].shape[0])
                and reuse.x.shape == x.shape and reuse.x.dtype.kind == x.dtype.kind
                and reuse.gates.dtype == W["Wxh"].dtype and (reuse.slope is None) == (activation != "g"))
        cache = reuse if fits else cls.allocate(W, x, blocks, activation)
        cache.W, cache.x = W, x
        return cache

    @property
    def state_last(self) -> tuple[np.ndarray]:
        return (self.hs[-1],)


def g_(u: np.ndarray, slope: np.ndarray) -> None:
    """u (T, B, H) <- g(u) in place; slope (T, B, H) receives g'(u) for backward."""
    grows = u >= 0                                 # (T, B, H) where g(u) = u + 1/2
    np.copyto(slope, u)
    sigmoid_(slope)                                # (T, B, H) sigmoid(u)
    np.add(u, 0.5, out=u)
    np.copyto(u, slope, where=~grows)              # h~ = g(u)
    slope *= 1 - slope                             # sigmoid'(u) = sigmoid(u) (1 - sigmoid(u))
    slope[grows] = 1                               # g'(u)


def torch_g(u):
    """g(u) on a tensor, in tensor methods (this file imports no torch); autograd takes g' from it."""
    return (u + 0.5).where(u >= 0, u.sigmoid())


def forward_(a: np.ndarray, hs: np.ndarray, tmp: np.ndarray) -> None:
    """a (T, B, H); hs (T+1, B, H) with hs[0] = h_prev and hs[t+1] = b_t on entry, h_t on return;
    tmp (B, H) scratch."""
    for t in range(len(a)):
        np.multiply(a[t], hs[t], out=tmp)          # (B, H) a_t * h_{t-1}
        hs[t + 1] += tmp                           # h_t = a_t * h_{t-1} + b_t


def backward_(a: np.ndarray, dh: np.ndarray, dh_next: np.ndarray, trace: dict | None = None) -> None:
    """a (T, B, H); dh (T, B, H) dout_t on entry, dh_t on return; dh_next (B, H) receives dL/dh_prev.
    trace, if given, maps "h" to a (T, B, H) array that receives every dh_t."""
    dh_next.fill(0)                                # nothing flows back from beyond the chunk
    for t in reversed(range(len(a))):
        # h_t feeds both the layer above (or y_t) and h_{t+1}: its gradient is the sum of both.
        dh[t] += dh_next                           # (B, H) dh_t
        np.multiply(a[t], dh[t], out=dh_next)      # (B, H) a_t * dh_t, into step t-1
    if trace:
        trace["h"][...] = dh
