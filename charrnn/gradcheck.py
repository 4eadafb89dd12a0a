"""Check the hand-written BPTT against autograd and finite differences: python -m charrnn.gradcheck

Builds a small random model and chunk (a non-zero h_prev included), then prints, for each
parameter and for h_prev, the largest relative error of the NumPy backend's gradient against torch
autograd and against central finite differences, with PASS or FAIL; exits 1 on any FAIL.

--per-step NAME splits one weight's gradient into the terms the time steps contribute
(dL/dWhh = sum_t dh_raw_t h_{t-1}^T, ...) and sets each beside autograd's own per-step term: the
gradient for a copy of the weight that only step t uses. A hand-derived formula that is wrong at
some steps and right at others (a forgotten dh_next is right at the last step only) shows there.
"""

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.backends import numpy_backend, torch_backend
from charrnn.model import PARAM_NAMES, init_params

# Against autograd only round-off separates the two; central differences add their own O(eps^2)
# truncation error and are always taken in float64, where a float32 gradient is off by its rounding.
TOLERANCES = {"float64": {"autograd": 1e-10, "finite differences": 1e-6},
              "float32": {"autograd": 1e-5, "finite differences": 1e-4}}
FD_EPS = 1e-6

# What each time step contributes to each weight's gradient, in the NumPy backend's notation.
TERMS = {"Wxh": "dh_raw_t x_t^T", "Whh": "dh_raw_t h_{t-1}^T", "Why": "dy_t h_t^T", "bh": "dh_raw_t", "by": "dy_t"}


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the largest |entry| of either: one figure per array that tiny entries cannot inflate."""
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b)) / scale)


def random_problem(B: int, T: int, H: int, V: int, dtype: str = "float64", seed: int = 0):
    """torch.nn.RNN-style initial params, random ids (B, T) and a non-zero h_prev (B, H)."""
    rng = np.random.default_rng(seed)
    params = init_params(V, H, "uniform", 0.01, seed, dtype)
    inputs = rng.integers(0, V, (B, T))
    targets = rng.integers(0, V, (B, T))
    h_prev = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    return params, inputs, targets, h_prev


def numpy_bptt(params, inputs, targets, h_prev):
    """The NumPy backend's gradients (dL/dh_prev under "h_prev"), and the cache its backward left:
    ws.dh then holds dh_raw_t (T, B, H) and ws.probs dL/dy_t (N, V)."""
    _, cache = numpy_backend.rnn_forward(params, inputs, targets, h_prev)
    grads, dh_prev = numpy_backend.rnn_backward(params, cache)
    return {**grads, "h_prev": dh_prev}, cache


def autograd_gradients(params, inputs, targets, h_prev) -> dict[str, np.ndarray]:
    """The torch backend's loss differentiated by autograd, for every param and for h_prev."""
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in {**params, "h_prev": h_prev}.items()}
    weights = {k: leaves[k] for k in PARAM_NAMES}
    loss, _ = torch_backend.chunk_loss(weights, torch_backend.time_major(inputs),
                                       torch_backend.time_major(targets), leaves["h_prev"])
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return {k: g.numpy() for k, g in zip(leaves, grads)}


def finite_differences(params, inputs, targets, h_prev) -> dict[str, np.ndarray]:
    """(L(x + eps) - L(x - eps)) / 2 eps for every entry of every param and of h_prev, in float64."""
    arrays = {k: v.astype(np.float64) for k, v in {**params, "h_prev": h_prev}.items()}
    weights = {k: arrays[k] for k in PARAM_NAMES}

    def loss() -> float:
        return numpy_backend.rnn_forward(weights, inputs, targets, arrays["h_prev"])[0]

    grads = {}
    for k, x in arrays.items():
        grads[k] = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + FD_EPS
            plus = loss()
            x[i] = old - FD_EPS
            minus = loss()
            x[i] = old
            grads[k][i] = (plus - minus) / (2 * FD_EPS)
    return grads


def numpy_per_step(name: str, cache) -> np.ndarray:
    """(T, *shape) each step's term of dL/d<name>, read off what rnn_backward left in the cache."""
    ws = cache.ws
    T, B, _ = ws.dh.shape
    dh_raw = ws.dh                                   # (T, B, H)
    dy = ws.probs.reshape(T, B, -1)                  # (T, B, V)
    if name in ("bh", "by"):
        return (dh_raw if name == "bh" else dy).sum(axis=1)
    x_onehot = np.eye(dy.shape[2], dtype=dy.dtype)[cache.x]               # (T, B, V)
    left, right = {"Wxh": (dh_raw, x_onehot), "Whh": (dh_raw, ws.hs[:-1]), "Why": (dy, ws.hs[1:])}[name]
    return np.einsum("tbi,tbj->tij", left, right)    # sum over the streams of left_t right_t^T


def autograd_per_step(name: str, params, inputs, targets, h_prev) -> np.ndarray:
    """(T, *shape) dL/dW_t for W_t a copy of weight <name> that only step t uses. Their sum is dL/dW;
    each is step t's contribution, found with no hand-derived formula."""
    T = inputs.shape[1]
    weights = {k: torch.tensor(v) for k, v in params.items()}
    copies = [weights[name].clone().requires_grad_() for _ in range(T)]
    x, y = torch_backend.time_major(inputs), torch_backend.time_major(targets)
    h, logits = torch.tensor(h_prev), []
    for t in range(T):
        logits_t, hs = torch_backend.rnn_forward({**weights, name: copies[t]}, x[t:t + 1], h)
        h = hs[-1]
        logits.append(logits_t)
    logits = torch.cat(logits)                       # (T, B, V)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    return np.stack([g.numpy() for g in torch.autograd.grad(loss, copies)])


def verdict(error: float, tolerance: float) -> str:
    return f"{error:.1e}  {'PASS' if error <= tolerance else 'FAIL'}"


def gradient_table(params, inputs, targets, h_prev, tolerances: dict[str, float]) -> tuple[list[str], bool]:
    ours, _ = numpy_bptt(params, inputs, targets, h_prev)
    references = {"autograd": autograd_gradients(params, inputs, targets, h_prev),
                  "finite differences": finite_differences(params, inputs, targets, h_prev)}
    lines = [f"{'':8}{'shape':10}" + "".join(f"{'NumPy vs ' + ref:30}" for ref in references)]
    ok = True
    for k, grad in ours.items():
        cells = []
        for ref, reference in references.items():
            error = relative_error(grad, reference[k])
            ok &= error <= tolerances[ref]
            cells.append(f"{verdict(error, tolerances[ref]):30}")
        lines.append(f"{k:8}{str(grad.shape):10}" + "".join(cells))
    lines.append(f"{'tolerance':18}" + "".join(f"{tolerances[ref]:<30.0e}" for ref in references))
    return [line.rstrip() for line in lines], ok


def per_step_table(name: str, params, inputs, targets, h_prev, tolerance: float) -> tuple[list[str], bool]:
    _, cache = numpy_bptt(params, inputs, targets, h_prev)
    ours = numpy_per_step(name, cache)
    theirs = autograd_per_step(name, params, inputs, targets, h_prev)
    total = autograd_gradients(params, inputs, targets, h_prev)[name]
    lines = [f"dL/d{name} = sum_t {TERMS[name]}: each step's NumPy term beside autograd's gradient",
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
    return lines, ok


def parse_args(argv):
    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
        return int(text)

    parser = argparse.ArgumentParser(prog="python -m charrnn.gradcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=positive, default=3, help="B streams (default 3)")
    parser.add_argument("--seq-length", type=positive, default=6, help="T time steps (default 6)")
    parser.add_argument("--hidden-size", type=positive, default=5, help="H hidden units (default 5)")
    parser.add_argument("--vocab-size", type=positive, default=7, help="V characters (default 7)")
    parser.add_argument("--dtype", choices=TOLERANCES, default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-step", choices=PARAM_NAMES, metavar="NAME",
                        help=f"also split one weight's gradient by time step ({', '.join(PARAM_NAMES)})")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    B, T, H, V = args.batch_size, args.seq_length, args.hidden_size, args.vocab_size
    problem = random_problem(B, T, H, V, args.dtype, args.seed)
    tolerances = TOLERANCES[args.dtype]
    loss = numpy_backend.rnn_forward(*problem)[0]
    print(f"gradcheck B={B} T={T} H={H} V={V} {args.dtype} seed={args.seed}: loss {loss:.4f} nats; "
          f"relative error = max |difference| / max |entry|")
    lines, ok = gradient_table(*problem, tolerances)
    if args.per_step:
        step_lines, step_ok = per_step_table(args.per_step, *problem, tolerances["autograd"])
        lines += [""] + step_lines
        ok &= step_ok
    print("\n".join(lines))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
