"""The gradients to check and what they are checked against: the NumPy backend's hand-written BPTT,
torch autograd on the same loss (whole, and split by time step), and central finite differences."""

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.backends import numpy_backend, torch_backend
from charrnn.cells import CELLS
from charrnn.gradcheck.problem import FD_EPS, Problem
from charrnn.model import HEAD, ModelSpec

HEAD_TERMS = {"Why": "dy_t h_t^T", "by": "dy_t"}


def numpy_loss(pb: Problem) -> float:
    return numpy_backend.stack_forward(pb.params, pb.spec, pb.inputs, pb.targets, pb.state, pb.masks)[0]


def numpy_bptt(pb: Problem):
    """The NumPy backend's gradients (the initial state's under h_prev, c_prev), the cache its backward
    left (each layer's per-step gradients, see the cells' GRADIENT_TERMS), and each layer's trace of
    dL/dh_t (and dL/dc_t), each (T, B, H)."""
    _, cache = numpy_backend.stack_forward(pb.params, pb.spec, pb.inputs, pb.targets, pb.state, pb.masks)
    T, B = pb.inputs.shape[1], pb.inputs.shape[0]
    traces = [{name: np.empty((T, B, pb.spec.hidden_size)) for name in pb.spec.state_names}
              for _ in range(pb.spec.num_layers)]
    grads, dstate = numpy_backend.stack_backward(pb.params, pb.spec, cache, traces=traces)
    return {**grads, **dict(zip(pb.state_keys, dstate))}, cache, traces


def _tensors(arrays, requires_grad=False):
    return None if arrays is None else tuple(torch.tensor(a, requires_grad=requires_grad) for a in arrays)


def autograd_gradients(pb: Problem) -> dict[str, np.ndarray]:
    """The torch backend's loss differentiated by autograd, for every param and the initial state."""
    weights = {k: torch.tensor(v, requires_grad=True) for k, v in pb.params.items()}
    state = _tensors(pb.state, requires_grad=True)
    loss, _, _ = torch_backend.chunk_loss(weights, pb.spec, torch_backend.time_major(pb.inputs),
                                          torch_backend.time_major(pb.targets), state, _tensors(pb.masks))
    grads = torch.autograd.grad(loss, [*weights.values(), *state])
    return {k: g.numpy() for k, g in zip([*weights, *pb.state_keys], grads)}


def finite_differences(pb: Problem) -> dict[str, np.ndarray]:
    """(L(x + eps) - L(x - eps)) / 2 eps for every entry of every param and of the state, in float64."""
    params = {k: v.astype(np.float64) for k, v in pb.params.items()}
    state = tuple(s.astype(np.float64) for s in pb.state)
    masks = None if pb.masks is None else tuple(m.astype(np.float64) for m in pb.masks)
    pb64 = Problem(pb.spec, params, pb.inputs, pb.targets, state, masks)
    grads = {}
    for k, x in [*params.items(), *zip(pb.state_keys, state)]:
        grads[k] = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + FD_EPS
            plus = numpy_loss(pb64)
            x[i] = old - FD_EPS
            minus = numpy_loss(pb64)
            x[i] = old
            grads[k][i] = (plus - minus) / (2 * FD_EPS)
    return grads


def _layer_of(spec: ModelSpec, name: str) -> tuple[int, str]:
    """(layer, name in the cell's equations) of a layer parameter."""
    for layer in range(spec.num_layers):
        for base, full in spec.layer_names(layer).items():
            if full == name:
                return layer, base
    raise KeyError(name)


def term(spec: ModelSpec, name: str) -> str:
    """Step t's term of dL/d<name> in words."""
    if name in HEAD:
        return HEAD_TERMS[name]
    return CELLS[spec.cell].code.GRADIENT_TERMS[_layer_of(spec, name)[1]][2]


def numpy_per_step(name: str, pb: Problem, cache) -> np.ndarray:
    """(T, *shape) each step's term of dL/d<name>, read off what the backward left in the cache."""
    T, B = pb.inputs.shape[1], pb.inputs.shape[0]
    if name in HEAD:
        dy = cache.head.probs.reshape(T, B, -1)                       # (T, B, V)
        return dy.sum(axis=1) if name == "by" else np.einsum("tbi,tbj->tij", dy, cache.head.h)
    layer, base = _layer_of(pb.spec, name)
    layer_cache = cache.layers[layer]
    field, block, _ = CELLS[pb.spec.cell].code.GRADIENT_TERMS[base]
    left = getattr(layer_cache, field)                                # (T, B, G*H) or (T, B, H)
    if block is not None:
        H = pb.spec.hidden_size
        left = left[..., block * H:(block + 1) * H]
    if base.startswith("b"):
        return left.sum(axis=1)
    if base == "Whh":
        right = layer_cache.hs[:-1]                                   # (T, B, H) h_{t-1}
    elif layer_cache.x.ndim == 2:
        right = np.eye(pb.spec.vocab_size, dtype=left.dtype)[layer_cache.x]   # (T, B, V) one-hot x_t
    else:
        right = layer_cache.x                                         # (T, B, H) the layer's input
    return np.einsum("tbi,tbj->tij", left, right)                     # sum over the streams of left_t right_t^T


def autograd_by_step(pb: Problem, name: str | None = None):
    """The model run one step at a time in torch, each step with its own copy of weight <name> (if
    given). Returns (T, *shape) dL/dW_t for those copies (their sum is dL/dW, and each is step t's
    contribution, found with no hand-derived formula) and, per layer, {state name: (T, B, H)} the
    gradient of the loss with respect to that layer's h_t (and c_t) through all of its uses."""
    spec = pb.spec
    T, B = pb.inputs.shape[1], pb.inputs.shape[0]
    weights = {k: torch.tensor(v) for k, v in pb.params.items()}
    copies = [weights[name].clone().requires_grad_() for _ in range(T)] if name else []
    x, y = torch_backend.time_major(pb.inputs), torch_backend.time_major(pb.targets)
    masks = _tensors(pb.masks)
    step = CELLS[spec.cell].code.torch_step
    # The initial state requires grad so that every later state is in the graph, whichever weight is copied.
    state = [tuple(torch.tensor(s[layer], requires_grad=True) for s in pb.state) for layer in range(spec.num_layers)]
    states, logits = [], []
    for t in range(T):
        w = {**weights, name: copies[t]} if name else weights
        inputs = x[t]
        for layer in range(spec.num_layers):
            W = torch_backend.prepared_layer(w, spec, layer)
            if layer == 0:
                xw = F.embedding(inputs, W["Wxh"].t()) + W["bh"]
            else:
                xw = F.linear(torch_backend.normed(inputs, spec.norm), W["Wxh"], W["bh"])
            state[layer] = step(W, xw, state[layer], **spec.cell_options)
            states.append(state[layer])
            out = state[layer][0] if masks is None else state[layer][0] * masks[layer][t]
            inputs = inputs + out if layer and spec.residual else out
        logits.append(F.linear(torch_backend.normed(inputs, spec.norm), w["Why"], w["by"]))
    loss = F.cross_entropy(torch.stack(logits).reshape(T * B, -1), y.reshape(-1))
    flat = [s for layer_state in states for s in layer_state]
    grads = torch.autograd.grad(loss, copies + flat)
    weight_terms = np.stack([g.numpy() for g in grads[:len(copies)]]) if copies else None
    S = len(spec.state_names)
    by_state = np.stack([g.numpy() for g in grads[len(copies):]]).reshape(T, spec.num_layers, S, B, -1)
    return weight_terms, [{n: by_state[:, layer, k] for k, n in enumerate(spec.state_names)}
                          for layer in range(spec.num_layers)]
