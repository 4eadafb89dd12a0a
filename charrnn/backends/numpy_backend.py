"""The NumPy backend: forward and backward through time, written out by hand.

Letters for shapes: B parallel streams, T time steps, H hidden units, V characters, N = T*B.
Inside, arrays are time-major (T, B, ...): the recurrence reads and writes one contiguous (B, H)
block per step. Everything that does not depend on h_{t-1} (input projection, output projection,
softmax, and all the weight gradients) is done for the whole chunk at once as a few large
operations; only the recurrence itself steps through time.

    forward                                     backward (loss = mean over the N predictions)
    a_t = Wxh x_t + Whh h_{t-1} + bh            dy_t     = (p_t - onehot(target_t)) / N
    h_t = tanh(a_t)                             dh_t     = Why^T dy_t + dh_next        (two paths into h_t)
    y_t = Why h_t + by                          dh_raw_t = (1 - h_t^2) * dh_t         (tanh' = 1 - tanh^2)
    p_t = softmax(y_t)                          dh_next  = Whh^T dh_raw_t             (becomes dh_{t-1}'s second path)
    L   = -1/N sum_t log p_t[target_t]          dWhh = sum_t dh_raw_t h_{t-1}^T,  dWxh = sum_t dh_raw_t x_t^T,
                                                dbh = sum_t dh_raw_t,  dWhy = sum_t dy_t h_t^T,  dby = sum_t dy_t

The equations are for one stream with column vectors; the code keeps the B streams as rows, so
`Whh h` is written `h @ Whh.T` and `Whh^T dh_raw` is written `dh_raw @ Whh`.
"""

from dataclasses import dataclass

import numpy as np

from charrnn.backends.guard import StepGuard, all_finite
from charrnn.backends.interface import Gradients, StepResult
from charrnn.optim import clip_gradients, grad_norms, make_optimizer

# Above this vocabulary size the one-hot product for dWxh costs more than a scatter-add
# (measured: 9x faster at V=65, 8x slower at V=5000).
ONE_HOT_MAX_VOCAB = 512


@dataclass
class Workspace:
    """Buffers for one chunk shape, reused across steps so the hot path allocates nothing big."""

    hs: np.ndarray       # (T+1, B, H) hs[0] = h_prev, hs[t+1] = h_t
    probs: np.ndarray    # (N, V) logits, then softmax p_t, then dL/dy_t (in place)
    dh: np.ndarray       # (T, B, H) dL/dh_t from the outputs, then dh_raw_t (in place)
    step: np.ndarray     # (B, H) Whh h_{t-1} in the forward loop, dh_next in the backward loop
    dtanh: np.ndarray    # (B, H) 1 - h_t^2 in the backward loop
    one_hot: np.ndarray  # (N, V) x_t as one-hot rows, for dWxh (only for V <= ONE_HOT_MAX_VOCAB)

    @classmethod
    def allocate(cls, T: int, B: int, H: int, V: int, dtype) -> "Workspace":
        one_hot_shape = (T * B, V) if V <= ONE_HOT_MAX_VOCAB else (0, V)
        return cls(hs=np.empty((T + 1, B, H), dtype), probs=np.empty((T * B, V), dtype),
                   dh=np.empty((T, B, H), dtype), step=np.empty((B, H), dtype),
                   dtanh=np.empty((B, H), dtype), one_hot=np.zeros(one_hot_shape, dtype))

    def fits(self, T: int, B: int, H: int, V: int, dtype) -> bool:
        return self.hs.shape == (T + 1, B, H) and self.probs.shape[1] == V and self.hs.dtype == dtype


@dataclass
class ForwardCache:
    """What the backward pass needs from the forward pass (views into a Workspace)."""

    x: np.ndarray        # (T, B) input ids, time-major
    y: np.ndarray        # (N,) target ids, time-major, flattened
    ws: Workspace


def rnn_forward(params: dict, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray,
                ws: Workspace | None = None) -> tuple[float, ForwardCache]:
    """Run the RNN over a chunk and score it.

    inputs, targets: (B, T) int ids; h_prev: (B, H). Returns the mean cross-entropy in nats over the
    N = B*T predictions, and the cache for rnn_backward (the last hidden state is cache.ws.hs[-1]).
    """
    Wxh, Whh, Why, bh, by = (params[k] for k in ("Wxh", "Whh", "Why", "bh", "by"))
    B, T = inputs.shape
    H, V = Wxh.shape
    N = B * T
    if ws is None or not ws.fits(T, B, H, V, Wxh.dtype):
        ws = Workspace.allocate(T, B, H, V, Wxh.dtype)
    x = inputs.T                                   # (T, B)
    y = targets.T.reshape(N)                       # (N,)
    hs = ws.hs
    hs[0] = h_prev
    if x.size and not 0 <= x.min() <= x.max() < V:
        raise ValueError(f"input ids must lie in [0, {V}); got {x.min()}..{x.max()}")
    # Wxh x_t for a one-hot x_t is column x_t of Wxh: gather all T*B columns at once, no product.
    # Adding bh to the (V, H) table first saves a pass over the (T, B, H) result; mode="clip" (a
    # no-op for ids checked above) skips the buffered copy np.take makes for out= in its default mode.
    np.take(Wxh.T + bh, x, axis=0, out=hs[1:], mode="clip")   # (T, B, H) Wxh x_t + bh
    # A contiguous copy of Whh^T: OpenBLAS multiplies by it ~20% faster than by the transposed view.
    WhhT = np.ascontiguousarray(Whh.T)             # (H, H)
    for t in range(T):
        np.matmul(hs[t], WhhT, out=ws.step)        # (B, H) Whh h_{t-1}
        ws.step += hs[t + 1]                       # a_t = Wxh x_t + bh + Whh h_{t-1}
        np.tanh(ws.step, out=hs[t + 1])            # h_t = tanh(a_t)
    h_flat = hs[1:].reshape(N, H)
    logits = ws.probs
    np.matmul(h_flat, Why.T, out=logits)           # (N, V) y_t = Why h_t + by
    logits += by
    logits -= logits.max(axis=1, keepdims=True)    # softmax is shift-invariant; this keeps exp finite
    target_logit = logits[np.arange(N), y]         # (N,)
    np.exp(logits, out=logits)
    total = logits.sum(axis=1, keepdims=True)      # (N, 1)
    loss = float(np.mean(np.log(total[:, 0]) - target_logit, dtype=np.float64))  # -log p_t[target]
    logits /= total                                # (N, V) p_t
    return loss, ForwardCache(x=x, y=y, ws=ws)


def rnn_backward(params: dict, cache: ForwardCache, loss_scale: float = 1.0,
                 dh_out: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Backpropagate through the chunk. Consumes the cache (its buffers are overwritten).

    loss_scale multiplies the loss being differentiated: 1 for the mean over the N predictions,
    N for min-char-rnn's sum. dh_out, if given, (T, B, H), receives every dL/dh_t, to show how far
    back the gradient reaches. Returns the gradients (same keys and shapes as params) and
    dL/dh_prev (B, H), the gradient that truncated BPTT cuts at the chunk boundary.
    """
    Whh, Why = params["Whh"], params["Why"]
    ws, x, y = cache.ws, cache.x, cache.y
    hs = ws.hs
    T, B, H = ws.dh.shape
    N = T * B
    V = ws.probs.shape[1]
    dy = ws.probs
    dy[np.arange(N), y] -= 1                       # (N, V) dL/dy_t = p_t - onehot(target_t), softmax+CE
    dy *= loss_scale / N
    h_flat = hs[1:].reshape(N, H)
    dWhy = dy.T @ h_flat                           # (V, H) sum_t dy_t h_t^T
    dby = dy.sum(axis=0)                           # (V,)
    dh = ws.dh
    np.matmul(dy, Why, out=dh.reshape(N, H))       # (T, B, H) Why^T dy_t: each step's own output path
    dtanh = ws.dtanh
    dh_next = ws.step
    dh_next.fill(0)                                # nothing flows back from beyond the chunk
    for t in reversed(range(T)):
        # The subtle point of BPTT: h_t feeds both y_t and h_{t+1}, so its gradient is the sum of
        # the loss's own (already in dh[t]) and the one flowing back from step t+1 (dh_next).
        dh[t] += dh_next                           # (B, H) dh_t
        if dh_out is not None:
            dh_out[t] = dh[t]
        np.multiply(hs[t + 1], hs[t + 1], out=dtanh)
        np.subtract(1, dtanh, out=dtanh)           # (B, H) 1 - h_t^2, computed while h_t is in cache
        dh[t] *= dtanh                             # (B, H) dh_raw_t
        np.matmul(dh[t], Whh, out=dh_next)         # (B, H) Whh^T dh_raw_t, into step t-1
    dh_raw = dh.reshape(N, H)
    dWhh = dh_raw.T @ hs[:-1].reshape(N, H)        # (H, H) sum_t dh_raw_t h_{t-1}^T
    if V <= ONE_HOT_MAX_VOCAB:
        one_hot = ws.one_hot
        one_hot.fill(0)
        one_hot[np.arange(N), x.reshape(N)] = 1
        dWxh = dh_raw.T @ one_hot                  # (H, V) sum_t dh_raw_t x_t^T
    else:
        dWxhT = np.zeros((V, H), dh_raw.dtype)
        np.add.at(dWxhT, x.reshape(N), dh_raw)     # (V, H) row x_t collects dh_raw_t
        dWxh = dWxhT.T
    # Each x_t is one-hot, so summing dWxh's columns adds up every dh_raw_t once: that is dbh,
    # obtained from an (H, V) array instead of another pass over the (N, H) one.
    dbh = dWxh.sum(axis=1)                         # (H,) sum_t dh_raw_t
    grads = {"Wxh": np.ascontiguousarray(dWxh), "Whh": dWhh, "Why": dWhy, "bh": dbh, "by": dby}
    return grads, dh_next.copy()


def loss_and_grads(params: dict, inputs: np.ndarray, targets: np.ndarray,
                   h_prev: np.ndarray) -> tuple[float, dict, np.ndarray]:
    """Mean cross-entropy (nats) over a chunk, its gradients, and the last hidden state.

    params: {"Wxh" (H, V), "Whh" (H, H), "Why" (V, H), "bh" (H,), "by" (V,)}, all float32 or all
    float64. inputs, targets: (B, T) int arrays. h_prev: (B, H). Returns (loss, grads, h_last) with
    grads keyed like params (gradients of the mean loss, before clipping) and h_last (B, H).
    """
    loss, cache = rnn_forward(params, inputs, targets, h_prev)
    h_last = cache.ws.hs[-1].copy()
    grads, _ = rnn_backward(params, cache)
    return loss, grads, h_last


def rnn_step(params: dict, x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step for sampling: x (B,) ids, h (B, H) -> logits (B, V) of the next character, h_t (B, H)."""
    h_next = np.tanh(params["Wxh"].T[x] + h @ params["Whh"].T + params["bh"])
    return h_next @ params["Why"].T + params["by"], h_next


class NumpyBackend:
    """The Backend interface (see interface.py) on the hand-written BPTT above."""

    def __init__(self, params: dict, optim_cfg, clip_mode: str, grad_clip: float, loss_reduction: str,
                 guard: StepGuard = StepGuard()):
        # Copies: the optimizer updates them in place, which must not write into the caller's arrays.
        self.params = {k: np.array(v, order="C") for k, v in params.items()}
        self.optimizer = make_optimizer(optim_cfg, self.params)
        self.clip_mode = clip_mode
        self.grad_clip = grad_clip
        self.loss_reduction = loss_reduction
        self.guard = guard
        self.ws: Workspace | None = None
        self.eval_ws: Workspace | None = None

    def train_step(self, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray, lr: float) -> StepResult:
        loss, cache = rnn_forward(self.params, inputs, targets, h_prev, self.ws)
        self.ws = cache.ws
        h_last = cache.ws.hs[-1].copy()
        grads, _ = rnn_backward(self.params, cache, self._loss_scale(inputs))
        before = grad_norms(grads)
        cause = self.guard.refusal(loss, before)
        if cause:
            return StepResult(loss, h_last, grad_norms=before, clipped_grad_norms=before, skipped=True, cause=cause)
        clip_gradients(grads, self.clip_mode, self.grad_clip)
        after = before if self.clip_mode == "none" else grad_norms(grads)
        cause = self._update(grads, lr)
        return StepResult(loss, h_last, grad_norms=before, clipped_grad_norms=after, skipped=bool(cause), cause=cause)

    def _update(self, grads: dict, lr: float) -> str | None:
        """The optimizer step, checked: "update" if it left a non-finite weight or state (then undone
        when the guard asks for it), else None."""
        undo = (self.export_params(), self.optimizer.state_dict()) if self.guard.undo else None
        self.optimizer.step(self.params, grads, lr)
        if all_finite([*self.params.values(), *(a for s in self.optimizer.state.values() for a in s.values())]):
            return None
        if undo:
            for k, saved in undo[0].items():
                self.params[k][...] = saved
            self.optimizer.load_state_dict(undo[1])
        return "update"

    def _loss_scale(self, inputs: np.ndarray) -> float:
        return inputs.size if self.loss_reduction == "sum" else 1.0

    def gradients(self, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray) -> Gradients:
        _, cache = rnn_forward(self.params, inputs, targets, h_prev)
        dh = np.empty_like(cache.ws.dh)            # (T, B, H)
        grads, _ = rnn_backward(self.params, cache, self._loss_scale(inputs), dh_out=dh)
        return Gradients(params=grads, dh_norms=np.sqrt(np.einsum("tbh,tbh->tb", dh, dh)).mean(axis=1))

    def evaluate(self, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray) -> tuple[float, np.ndarray]:
        loss, cache = rnn_forward(self.params, inputs, targets, h_prev, self.eval_ws)
        self.eval_ws = cache.ws
        return loss, cache.ws.hs[-1].copy()

    def step_logits(self, x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rnn_step(self.params, x, h.astype(self.params["Whh"].dtype, copy=False))

    def export_params(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.params.items()}

    def export_optimizer_state(self) -> dict[str, np.ndarray]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self.optimizer.load_state_dict(state)
