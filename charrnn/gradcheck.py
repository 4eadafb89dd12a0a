"""Check the hand-written BPTT against autograd and finite differences: python -m charrnn.gradcheck

Builds a small random model (--cell rnn|lstm|gru, --layers N, --dropout P) and chunk, a non-zero
carried state included, then prints, for each parameter and each part of the initial state (h_prev,
and c_prev for the LSTM), the largest relative error of the NumPy backend's gradient against torch
autograd and against central finite differences, with PASS or FAIL; exits 1 on any FAIL.

--per-step NAME splits one weight's gradient into the terms the time steps contribute
(dL/dWhh = sum_t dh_raw_t h_{t-1}^T for the rnn, sum_t da_t h_{t-1}^T for the LSTM's gates a, ...) and
sets each beside autograd's own per-step term: the gradient for a copy of the weight that only step t
uses. A hand-derived formula that is wrong at some steps and right at others (a forgotten dh_next is
right at the last step only) shows there. It then follows the state back through time: dL/dh_t (and
the LSTM's cell-state path dL/dc_t) of every layer at every step, beside autograd's.
"""

import argparse
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.backends import numpy_backend, torch_backend
from charrnn.backends.numpy_layers import CELL_LAYERS
from charrnn.dropout import dropout_masks
from charrnn.model import CELLS, HEAD, ModelSpec, init_params, model_spec

# Against autograd only round-off separates the two; central differences add their own O(eps^2)
# truncation error and are always taken in float64, where a float32 gradient is off by its rounding.
TOLERANCES = {"float64": {"autograd": 1e-10, "finite differences": 1e-6},
              "float32": {"autograd": 1e-5, "finite differences": 1e-4}}
FD_EPS = 1e-6
HEAD_TERMS = {"Why": "dy_t h_t^T", "by": "dy_t"}


@dataclass
class Problem:
    spec: ModelSpec
    params: dict           # charrnn.model's names
    inputs: np.ndarray     # (B, T) ids
    targets: np.ndarray    # (B, T) ids
    state: tuple           # (L, B, H) arrays, non-zero
    masks: tuple | None    # L (T, B, H) dropout masks, or None

    @property
    def state_keys(self) -> list[str]:
        """The rows for the initial state's gradient: h_prev, and c_prev for the LSTM."""
        return [f"{name}_prev" for name in self.spec.state_names]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the largest |entry| of either: one figure per array that tiny entries cannot inflate."""
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b)) / scale)


def random_problem(B: int, T: int, H: int, V: int, dtype: str = "float64", seed: int = 0, cell: str = "rnn",
                   num_layers: int = 1, dropout: float = 0.0) -> Problem:
    """torch.nn-style initial params, random ids (B, T), a non-zero state and, with dropout, masks."""
    rng = np.random.default_rng(seed)
    spec = model_spec(cell, V, H, num_layers)
    params = init_params(spec, "uniform", 0.01, seed, dtype)
    inputs = rng.integers(0, V, (B, T))
    targets = rng.integers(0, V, (B, T))
    state = tuple((0.5 * rng.standard_normal((num_layers, B, H))).astype(dtype) for _ in spec.state_names)
    return Problem(spec, params, inputs, targets, state, dropout_masks(dropout, spec, B, T, seed, 0, dtype))


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
    return CELL_LAYERS[spec.cell].GRADIENT_TERMS[_layer_of(spec, name)[1]][2]


def numpy_per_step(name: str, pb: Problem, cache) -> np.ndarray:
    """(T, *shape) each step's term of dL/d<name>, read off what the backward left in the cache."""
    T, B = pb.inputs.shape[1], pb.inputs.shape[0]
    if name in HEAD:
        dy = cache.head.probs.reshape(T, B, -1)                       # (T, B, V)
        return dy.sum(axis=1) if name == "by" else np.einsum("tbi,tbj->tij", dy, cache.head.h)
    layer, base = _layer_of(pb.spec, name)
    layer_cache = cache.layers[layer]
    field, block, _ = CELL_LAYERS[pb.spec.cell].GRADIENT_TERMS[base]
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
    step = torch_backend.CELL_STEPS[spec.cell]
    # The initial state requires grad so that every later state is in the graph, whichever weight is copied.
    state = [tuple(torch.tensor(s[layer], requires_grad=True) for s in pb.state) for layer in range(spec.num_layers)]
    states, logits = [], []
    for t in range(T):
        w = {**weights, name: copies[t]} if name else weights
        inputs = x[t]
        for layer in range(spec.num_layers):
            W = torch_backend.layer_weights(w, spec, layer)
            xw = F.embedding(inputs, W["Wxh"].t()) + W["bh"] if layer == 0 else F.linear(inputs, W["Wxh"], W["bh"])
            state[layer] = step(W, xw, state[layer])
            states.append(state[layer])
            inputs = state[layer][0] if masks is None else state[layer][0] * masks[layer][t]
        logits.append(F.linear(inputs, w["Why"], w["by"]))
    loss = F.cross_entropy(torch.stack(logits).reshape(T * B, -1), y.reshape(-1))
    flat = [s for layer_state in states for s in layer_state]
    grads = torch.autograd.grad(loss, copies + flat)
    weight_terms = np.stack([g.numpy() for g in grads[:len(copies)]]) if copies else None
    S = len(spec.state_names)
    by_state = np.stack([g.numpy() for g in grads[len(copies):]]).reshape(T, spec.num_layers, S, B, -1)
    return weight_terms, [{n: by_state[:, layer, k] for k, n in enumerate(spec.state_names)}
                          for layer in range(spec.num_layers)]


def verdict(error: float, tolerance: float) -> str:
    return f"{error:.1e}  {'PASS' if error <= tolerance else 'FAIL'}"


def gradient_table(pb: Problem, tolerances: dict[str, float]) -> tuple[list[str], bool]:
    ours, _, _ = numpy_bptt(pb)
    references = {"autograd": autograd_gradients(pb), "finite differences": finite_differences(pb)}
    width = max(8, *(len(k) + 2 for k in ours))
    lines = [f"{'':{width}}{'shape':14}" + "".join(f"{'NumPy vs ' + ref:30}" for ref in references)]
    ok = True
    for k, grad in ours.items():
        cells = []
        for ref, reference in references.items():
            error = relative_error(grad, reference[k])
            ok &= error <= tolerances[ref]
            cells.append(f"{verdict(error, tolerances[ref]):30}")
        lines.append(f"{k:{width}}{str(grad.shape):14}" + "".join(cells))
    lines.append(f"{'tolerance':{width + 14}}" + "".join(f"{tolerances[ref]:<30.0e}" for ref in references))
    return [line.rstrip() for line in lines], ok


def per_step_table(name: str, pb: Problem, tolerance: float) -> tuple[list[str], bool]:
    _, cache, traces = numpy_bptt(pb)
    ours = numpy_per_step(name, pb, cache)
    theirs, their_traces = autograd_by_step(pb, name)
    total = autograd_gradients(pb)[name]
    lines = [f"dL/d{name} = sum_t {term(pb.spec, name)}: each step's NumPy term beside autograd's gradient",
             f"for a copy of {name} that only step t uses",
             f"{'t':>5}   {'|NumPy term|':14}{'|autograd term|':17}relative error"]
    ok = True
    for t, (a, b) in enumerate(zip(ours, theirs)):
        error = relative_error(a, b)
        ok &= error <= tolerance
        lines.append(f"{t:>5}   {np.linalg.norm(a):<14.4e}{np.linalg.norm(b):<17.4e}{verdict(error, tolerance)}")
    error = relative_error(ours.sum(axis=0), total)
    ok &= error <= tolerance
    lines.append(f"{'sum':>5}   {np.linalg.norm(ours.sum(axis=0)):<14.4e}{np.linalg.norm(total):<17.4e}"
                 f"{verdict(error, tolerance)}   (autograd's term: the whole gradient)")
    state_lines, state_ok = state_table(pb, traces, their_traces, tolerance)
    return lines + [""] + state_lines, ok and state_ok


def state_table(pb: Problem, ours: list, theirs: list, tolerance: float) -> tuple[list[str], bool]:
    """dL/dh_t (and the LSTM's dL/dc_t) of every layer at every step, beside autograd's."""
    names = pb.spec.state_names
    lines = [f"the state's gradient through time, every use counted ({', '.join(f'd{n}' for n in names)}: "
             f"|NumPy|, |autograd|, relative error)"]
    ok = True
    for layer in range(pb.spec.num_layers):
        lines.append(f"layer {layer}")
        for t in range(pb.inputs.shape[1]):
            cells = []
            for n in names:
                a, b = ours[layer][n][t], theirs[layer][n][t]
                error = relative_error(a, b)
                ok &= error <= tolerance
                cells.append(f"{np.linalg.norm(a):<11.4e}{np.linalg.norm(b):<11.4e}{verdict(error, tolerance):16}")
            lines.append(f"{'t=' + str(t):>5}   " + "   ".join(cells))
    return [line.rstrip() for line in lines], ok


def parse_args(argv):
    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
        return int(text)

    def probability(text: str) -> float:
        try:
            p = float(text)
        except ValueError:
            p = -1.0
        if not 0 <= p < 1:
            raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
        return p

    parser = argparse.ArgumentParser(prog="python -m charrnn.gradcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=CELLS, default="rnn", help="the recurrent cell (default rnn)")
    parser.add_argument("--layers", type=positive, default=1, help="stacked layers (default 1)")
    parser.add_argument("--dropout", type=probability, default=0.0, help="dropout between layers (default 0)")
    parser.add_argument("--batch-size", type=positive, default=3, help="B streams (default 3)")
    parser.add_argument("--seq-length", type=positive, default=6, help="T time steps (default 6)")
    parser.add_argument("--hidden-size", type=positive, default=5, help="H hidden units (default 5)")
    parser.add_argument("--vocab-size", type=positive, default=7, help="V characters (default 7)")
    parser.add_argument("--dtype", choices=TOLERANCES, default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-step", metavar="NAME",
                        help="also split one weight's gradient by time step (Wxh, Whh, Why, bh, by, bhn for the gru, "
                             "Whh_1 for layer 1, ...)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    B, T, H, V = args.batch_size, args.seq_length, args.hidden_size, args.vocab_size
    pb = random_problem(B, T, H, V, args.dtype, args.seed, args.cell, args.layers, args.dropout)
    if args.per_step is not None and args.per_step not in pb.params:
        print(f"--per-step {args.per_step}: not a parameter of this model; one of {', '.join(pb.params)}",
              file=sys.stderr)
        return 2
    tolerances = TOLERANCES[args.dtype]
    print(f"gradcheck {args.cell} x{args.layers} dropout={args.dropout} B={B} T={T} H={H} V={V} {args.dtype} "
          f"seed={args.seed}: loss {numpy_loss(pb):.4f} nats; relative error = max |difference| / max |entry|")
    lines, ok = gradient_table(pb, tolerances)
    if args.per_step:
        step_lines, step_ok = per_step_table(args.per_step, pb, tolerances["autograd"])
        lines += [""] + step_lines
        ok &= step_ok
    print("\n".join(lines))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
