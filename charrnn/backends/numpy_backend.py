"""The NumPy backend: forward and backward through time, written out by hand.

A model is a stack of layers, each a forward/backward pair in numpy_layers/: the recurrent cell of
every layer (its file, which its record in charrnn.cells names: rnn.py, lstm.py, gru.py, mingru.py,
minlstm.py, each with its equations at the top), then the head (head.py: logits and softmax
cross-entropy). Between layers, and between the top layer and the head, dropout multiplies each output
h_t by a mask given from outside (charrnn.model.dropout_masks):

    x^0 = the ids                                backward, top down:
    h^l = cell_forward(x^l, state^l)             dh^top = head_backward(...) * m^top
    x^{l+1} = h^l * m^l    (m = 1: no dropout)   dx^l, dstate^l = cell_backward(dh^l)
    loss = head_forward(x^L, targets)            dh^{l-1} = dx^l * m^{l-1}

The parallel cells' options (charrnn.model) change what flows between the layers, in layers_forward
and layers_backward: with norm, layer l >= 1 reads norm(s^l) (norm.py) and the head norm(s^L); with
residual, s^{l+1} = s^l + h^l * m^l for l >= 1, so ds^l gains ds^{l+1} around the layer.

Letters for shapes: B parallel streams, T time steps, H hidden units, V characters, L layers,
N = T*B. Inside, arrays are time-major (T, B, ...). Every layer keeps its buffers between steps,
so the hot path allocates nothing big.
"""

import functools
from dataclasses import dataclass

import numpy as np

from charrnn.backends.guard import all_finite
from charrnn.backends.interface import Gradients, StepResult, StepSettings
from charrnn.backends.numpy_layers import head, norm
from charrnn.cells import CELLS
from charrnn.distributed import SOLO, Ranks
from charrnn.errors import UserError
from charrnn.model import HEAD, ModelSpec, layer_weights, model_spec
from charrnn.optim import clip_gradients, flat_buffer, global_norm, grad_norms, make_optimizer


@dataclass
class StackCache:
    """What stack_backward needs from stack_forward; reused by the next stack_forward of the same shape."""

    layers: list                      # each layer's cache (its cell module's *Cache)
    dropped: list                     # (T, B, H) each layer's output times its mask, or None
    masks: tuple | None               # L (T, B, H) dropout masks, or None
    norms: list                       # L+1 norm.NormCache: each layer's input's, then the head's; None where none
    head: "head.HeadCache | None" = None   # filled by stack_forward

    @property
    def state_last(self) -> tuple[np.ndarray, ...]:
        """Each state array (L, B, H) after the chunk's last step (copies: the buffers get reused)."""
        return stack_layers([layer.state_last for layer in self.layers])


def stack_layers(per_layer: list[tuple]) -> tuple[np.ndarray, ...]:
    """L tuples of (B, H) state arrays -> one tuple of (L, B, H) arrays (copies)."""
    return tuple(np.array(layers) for layers in zip(*per_layer))   # np.array: ~2x faster than np.stack here


def layers_forward(params: dict, spec: ModelSpec, x: np.ndarray, state: tuple[np.ndarray, ...],
                   masks: tuple | None = None, reuse: StackCache | None = None) -> tuple[np.ndarray, StackCache]:
    """x (T, B) ids, time-major (or (T, B, V) one-hot rows), through every layer (dropout between them,
    and after the top one; the parallel cells' residual path and norm where spec asks for them). Returns
    the top of the stack, what the head reads (T, B, H), and the cache, its head not yet filled."""
    cell = CELLS[spec.cell].code
    layers, dropped, norms = [], [], []
    for layer in range(spec.num_layers):
        below = x                                      # s^l, the stream into layer l
        norm_cache = None
        if layer and spec.norm != "none":
            x, norm_cache = norm.forward(x, spec.norm)     # (T, B, H) n^l = norm(s^l)
        norms.append(norm_cache)
        out, cache = cell.forward(layer_weights(params, spec, layer), x, tuple(s[layer] for s in state),
                                  reuse.layers[layer] if reuse else None, **spec.cell_options)
        layers.append(cache)
        if masks is None:
            dropped.append(None)
            x = out                                    # (T, B, H)
        else:
            buffer = reuse.dropped[layer] if reuse and reuse.dropped[layer] is not None else None
            if buffer is None or buffer.shape != out.shape or buffer.dtype != out.dtype:
                buffer = np.empty_like(out)
            x = np.multiply(out, masks[layer], out=buffer)   # (T, B, H) x^{l+1} = h^l * m^l
            dropped.append(x)
        if layer and spec.residual:
            x = x + below                              # (T, B, H) s^{l+1} = s^l + h^l * m^l
    norm_cache = None
    if spec.norm != "none":
        x, norm_cache = norm.forward(x, spec.norm)         # (T, B, H) the head reads norm(s^L)
    norms.append(norm_cache)
    return x, StackCache(layers=layers, dropped=dropped, masks=masks, norms=norms)


def layers_backward(spec: ModelSpec, cache: StackCache, dtop: np.ndarray, traces: list | None = None
                    ) -> tuple[dict, np.ndarray | None, tuple[np.ndarray, ...]]:
    """layers_forward's backward, top down: dtop (T, B, H) dL/d(what the head read) -> the gradients of
    every layer's weights (keyed by their names in params), dL/dx of layer 0's input ((T, B, V) for one-hot
    rows, None for ids), and dL/dstate, each (L, B, H). Consumes the cache, and may write into dtop.

        ds^L = norm_backward(dtop)   (dtop without norm)
        dh^l = ds^{l+1} * m^l;  dn^l, dstate^l = cell_backward(dh^l)
        ds^l = norm_backward(dn^l)  (+ ds^{l+1} on the residual path, l >= 1)"""
    cell = CELLS[spec.cell].code
    grads, dstate = {}, []
    ds = dtop if cache.norms[-1] is None else norm.backward(dtop, cache.norms[-1])   # (T, B, H) dL/ds^L
    for layer in reversed(range(spec.num_layers)):
        # s^l reaches s^{l+1} both through the layer and around it: its gradient is the sum of both.
        skip = ds.copy() if layer and spec.residual else None     # (T, B, H) dL/ds^{l+1}, around the layer
        if cache.masks is not None:
            ds *= cache.masks[layer]                   # (T, B, H) dL/dh^l = dL/ds^{l+1} * m^l
        layer_grads, ds, dstate_layer = cell.backward(ds, cache.layers[layer], traces[layer] if traces else None)
        grads.update({spec.layer_names(layer)[base]: g for base, g in layer_grads.items()})
        dstate.append(dstate_layer)
        if cache.norms[layer] is not None:
            ds = norm.backward(ds, cache.norms[layer])     # (T, B, H) dL/ds^l through n^l = norm(s^l)
        if skip is not None:
            ds += skip                                 # (T, B, H) dL/ds^l
    dstate.reverse()
    return grads, ds, stack_layers(dstate)


def stack_forward(params: dict, spec: ModelSpec, inputs: np.ndarray, targets: np.ndarray,
                  state: tuple[np.ndarray, ...], masks: tuple | None = None,
                  reuse: StackCache | None = None) -> tuple[float, StackCache]:
    """inputs, targets (B, T) ids; state a tuple of (L, B, H) arrays; masks None or L (T, B, H) arrays.
    Returns the mean cross-entropy in nats over the N predictions, and the cache."""
    V = spec.vocab_size
    x = inputs.T                                   # (T, B) time-major
    if x.size and not 0 <= x.min() <= x.max() < V:
        raise ValueError(f"input ids must lie in [0, {V}); got {x.min()}..{x.max()}")
    top, cache = layers_forward(params, spec, x, state, masks, reuse)
    loss, cache.head = head.forward({k: params[k] for k in HEAD}, top, targets.T, reuse.head if reuse else None)
    return loss, cache


def stack_backward(params: dict, spec: ModelSpec, cache: StackCache, loss_scale: float = 1.0,
                   traces: list | None = None) -> tuple[dict, tuple[np.ndarray, ...]]:
    """Backpropagate through the head and every layer, top down. Consumes the cache.

    loss_scale multiplies the loss being differentiated (1: the mean; N: min-char-rnn's sum).
    traces, if given, holds one dict per layer for its cell's backward to fill (dh_t, and dc_t for the
    LSTM, at every step). Returns the gradients (keyed like params) and dL/dstate, each (L, B, H)."""
    # Every cell's cache has dh (T, B, H), where its backward sums dh_t: the head writes straight into it.
    dtop = cache.layers[-1].dh
    grads = head.backward(cache.head, dtop, loss_scale)     # dtop (T, B, H) dL/d(the head's input)
    layer_grads, _, dstate = layers_backward(spec, cache, dtop, traces)
    grads.update(layer_grads)
    return {k: grads[k] for k in params}, dstate


def loss_and_grads(params: dict, inputs: np.ndarray, targets: np.ndarray, state: tuple[np.ndarray, ...],
                   spec: ModelSpec, masks: tuple | None = None) -> tuple[float, dict, tuple[np.ndarray, ...]]:
    """Mean cross-entropy (nats) over a chunk, its gradients, and the state after it: the public pure
    function, for any cell and depth.

    inputs, targets: (B, T) int arrays. params: the model's weights (charrnn.model names them), all
    float32 or all float64. spec: charrnn.model.model_spec(...). state: a tuple of (L, B, H) arrays
    (charrnn.model.zero_state's layout); masks: None or L dropout masks (T, B, H). Returns (loss, grads
    keyed like params, state_last: the state tuple after the chunk). Gradients are of the mean loss,
    before clipping.
    """
    loss, cache = stack_forward(params, spec, inputs, targets, state, masks)
    state_last = cache.state_last
    grads, _ = stack_backward(params, spec, cache)
    return loss, grads, state_last


def rnn_loss_and_grads(params: dict, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray
                       ) -> tuple[float, dict, np.ndarray]:
    """loss_and_grads for min-char-rnn's model, one layer of the tanh rnn, in its terms: h_prev (B, H)
    in, (loss, grads, h_last (B, H)) out."""
    spec = model_spec("rnn", *params["Why"].shape)
    loss, grads, (h_last,) = loss_and_grads(params, inputs, targets, (h_prev[None],), spec)
    return loss, grads, h_last[0]


def step_logits(params: dict, spec: ModelSpec, x: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
    """One step for sampling: x (B,) ids, state (L, B, H) arrays -> logits (B, V) of the next character,
    and the new state."""
    top, cache = layers_forward(params, spec, x[None, :], state)        # top (1, B, H)
    return head.logits_of({k: params[k] for k in HEAD}, top[0]), cache.state_last


def dh_norms(traces: list) -> np.ndarray:
    """(L, T) |dL/dh_t| (L2 over H, averaged over the B streams) of each layer at each step."""
    return np.stack([np.sqrt(np.einsum("tbh,tbh->tb", trace["h"], trace["h"])).mean(axis=1) for trace in traces])


@functools.cache
def warm_up_blas() -> None:
    """Run one (64, 512) @ (512, 2048) product in float32 and in float64, once per process, before the
    backend's first step.

    Measured on this project's 2-core machine (AMD EPYC, NumPy's OpenBLAS 0.3.31 running its Haswell
    kernels): until the process has run one wide GEMM of a dtype, many later GEMMs of that dtype run up to
    3.5x slower, and stay slow for the life of the process. The LSTM's dWhh product, (4H, N) @ (N, H),
    took 193 ms instead of 55 ms at H=256; the step as a whole ran at half speed. Which product first
    cured it was an accident of each cell's code, so the backend makes one on purpose: about 20 ms, once.
    docs/performance.md has the figures."""
    for dtype in (np.float32, np.float64):
        # zeros: the operands stay on the kernel's zero page, so the process's peak memory grows by about
        # 2 MB (10 MB with np.ones), which the bench's memory column would otherwise show.
        np.zeros((64, 512), dtype) @ np.zeros((512, 2048), dtype)


class NumpyBackend:
    """The Backend interface (see interface.py) on the hand-written BPTT above."""

    def __init__(self, spec: ModelSpec, params: dict, settings: StepSettings, device: str = "cpu",
                 replicas: Ranks = SOLO):
        if device not in ("cpu", "auto"):
            raise UserError(f"backend=numpy runs on the CPU only, not backend.device={device}; use backend=torch "
                            f"for {device}, or backend.device=cpu")
        self.spec = spec
        self.settings = settings
        self.replicas = replicas
        # Copies, which the optimizer updates in place; the weights, their gradients and every optimizer
        # state each live in one flat buffer laid out alike (charrnn.optim.flat_buffer), the dicts holding views of it.
        self.flat_params, self.params = flat_buffer(params)
        for k, v in params.items():
            self.params[k][...] = v
        self.flat_grads, self.grads = flat_buffer(params)
        self.optimizer = make_optimizer(settings.optim, self.params)
        self.cache: StackCache | None = None
        self.eval_cache: StackCache | None = None
        warm_up_blas()

    def train_step(self, inputs: np.ndarray, targets: np.ndarray, state: tuple, lr: float,
                   masks: tuple | None = None) -> StepResult:
        loss, cache = stack_forward(self.params, self.spec, inputs, targets, state, masks, self.cache)
        self.cache = cache
        state_last = cache.state_last
        # Into the flat buffer, and the backward's own arrays freed before the update needs its scratch.
        for k, g in stack_backward(self.params, self.spec, cache, self._loss_scale(inputs))[0].items():
            self.grads[k][...] = g
        loss = self.replicas.average_(loss, [self.flat_grads], self.settings.loss_reduction)
        before = grad_norms(self.grads)
        cause = self.settings.guard.refusal(loss, before)
        if cause:
            return StepResult(loss, state_last, grad_norms=before, clipped_grad_norms=before, skipped=True,
                              cause=cause)
        clip_gradients(self.flat_grads, self.settings.clip_mode, self.settings.grad_clip, global_norm(before))
        after = before if self.settings.clip_mode == "none" else grad_norms(self.grads)
        cause = self._update(lr)
        return StepResult(loss, state_last, grad_norms=before, clipped_grad_norms=after, skipped=bool(cause),
                          cause=cause)

    def _update(self, lr: float) -> str | None:
        """The optimizer step on the clipped gradients, checked: "update" if it left a non-finite weight
        or state (then undone when the guard asks for it), else None."""
        undo = (self.flat_params.copy(), self.optimizer.state_dict()) if self.settings.guard.undo else None
        self.optimizer.step(self.flat_params, self.flat_grads, lr)
        if all_finite([self.flat_params, *self.optimizer.flat.values()]):
            return None
        if undo:
            self.flat_params[...] = undo[0]
            self.optimizer.load_state_dict(undo[1])
        return "update"

    def _loss_scale(self, inputs: np.ndarray) -> float:
        return inputs.size if self.settings.loss_reduction == "sum" else 1.0

    def gradients(self, inputs: np.ndarray, targets: np.ndarray, state: tuple, masks: tuple | None = None) -> Gradients:
        _, cache = stack_forward(self.params, self.spec, inputs, targets, state, masks)
        T, B = inputs.shape[1], inputs.shape[0]
        traces = [{"h": np.empty((T, B, self.spec.hidden_size), self.params["Why"].dtype)}
                  for _ in range(self.spec.num_layers)]
        grads, _ = stack_backward(self.params, self.spec, cache, self._loss_scale(inputs), traces)
        return Gradients(params=grads, dh_norms=dh_norms(traces))

    def evaluate(self, inputs: np.ndarray, targets: np.ndarray, state: tuple) -> tuple[float, tuple]:
        loss, cache = stack_forward(self.params, self.spec, inputs, targets, state, None, self.eval_cache)
        self.eval_cache = cache
        return loss, cache.state_last

    def step_logits(self, x: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        dtype = self.params["Why"].dtype
        return step_logits(self.params, self.spec, x, tuple(s.astype(dtype, copy=False) for s in state))

    def export_params(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.params.items()}

    def export_optimizer_state(self) -> dict[str, np.ndarray]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self.optimizer.load_state_dict(state)
