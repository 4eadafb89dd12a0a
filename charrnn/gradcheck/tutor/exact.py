"""The exact answers: torch autograd on the learner's own math, in their own layout (Shape.steps).

exact() gives the forward's outputs, every gradient, and the state after each step (where the
windows of picture.py start). exact_terms() splits each weight's gradient by time step twice over:
E[s, t] = dl_s/dW_t, the gradient of step s's loss for a copy of the weight that only step t uses.
Summed over s it is step t's term of the gradient (charrnn's own --per-step table); summed over
both it is the gradient. Nothing in it is derived by hand.
"""

from dataclasses import dataclass

import numpy as np

from charrnn.gradcheck.tutor.shapes import Case, Shape


@dataclass
class Exact:
    outputs: dict     # the forward's outputs, by the learner's names
    grads: dict       # every gradient, by the learner's names
    states: list      # after each step t, the state arguments of a chunk that starts at t+1


def recurrent_step(cell: str, a, c, gates: str = "ifgo"):
    """h_t (and c_t) from the pre-activation a (B, G*H) = x_t Wx + h_{t-1} Wh + b in the learner's
    layout; gates: the order of the LSTM's four blocks (torch's i, f, g, o; CS231n's i, f, o, g)."""
    import torch

    if cell == "rnn":
        return torch.tanh(a), c
    blocks = dict(zip(gates, a.chunk(4, dim=1)))
    c = torch.sigmoid(blocks["f"]) * c + torch.sigmoid(blocks["i"]) * torch.tanh(blocks["g"])
    return torch.sigmoid(blocks["o"]) * torch.tanh(c), c


def _tensors(shape: Shape, case: Case):
    import torch

    differentiable = set(shape.grads.values())
    t = {k: torch.tensor(v, requires_grad=k in differentiable) if isinstance(v, np.ndarray) and v.dtype.kind == "f"
         else v for k, v in case.arrays.items()}
    return t, {k: torch.tensor(v) for k, v in case.upstream.items()}


def exact(shape: Shape, case: Case) -> Exact:
    import torch

    t, upstream = _tensors(shape, case)
    losses, outputs, states = shape.steps(t, upstream, lambda s: t)
    args = list(shape.grads.values())
    grads = torch.autograd.grad(sum(losses), [t[a] for a in args])
    return Exact(outputs={k: v.detach().numpy() for k, v in outputs.items()},
                 grads={g: d.numpy() for g, d in zip(shape.grads, grads)},
                 states=[{k: v.detach().numpy() for k, v in step.items()} for step in states])


def exact_terms(shape: Shape, case: Case) -> dict[str, np.ndarray]:
    """{weight gradient name: (T, T, *shape) E[s, t]}, zero where t > s."""
    import torch

    t, upstream = _tensors(shape, case)
    T = case.sizes.get("T", 1)
    copies = {w: [t[w].detach().clone().requires_grad_() for _ in range(T)] for w in shape.weights}
    losses, _, _ = shape.steps(t, upstream, lambda s: {**t, **{w: copies[w][s] for w in shape.weights}})
    terms = {g: np.zeros((T, T, *case.arrays[arg].shape)) for g, arg in shape.grads.items() if arg in shape.weights}
    for s in range(T):
        wanted = [(g, step) for g in terms for step in range(s + 1)]
        grads = torch.autograd.grad(losses[s], [copies[shape.grads[g]][step] for g, step in wanted], retain_graph=True,
                                    allow_unused=True)   # step s's loss reads the head's weights of step s alone
        for (g, step), d in zip(wanted, grads):
            if d is not None:
                terms[g][s, step] = d.numpy()
    return terms
