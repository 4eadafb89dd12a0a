"""min-char-rnn's lossFun(inputs, targets, hprev), as Karpathy wrote it.

Layout: column vectors and one stream. Wxh (H, V), Whh (H, H), Why (V, H), bh (H, 1), by (V, 1) are
module-level globals that lossFun reads (the check sets them, and vocab_size, hidden_size and
seq_length, before every call); hprev (H, 1); inputs and targets are lists of T ids; the loss is the
sum over the T steps, and lossFun returns loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs)-1].

    h_t = tanh(Wxh x_t + Whh h_{t-1} + bh),  y_t = Why h_t + by,  loss = sum_t -log softmax(y_t)[target_t]
"""

import numpy as np

from charrnn.gradcheck.tutor.mistakes import Canon
from charrnn.gradcheck.tutor.shapes import Case, Shape, array, one_hot, unpack

RETURNS = ("loss", "dWxh", "dWhh", "dWhy", "dbh", "dby", "h_last")
MINCHAR_ARGS = ("inputs", "targets", "hprev")
SIZES = ("vocab_size", "hidden_size", "seq_length")
WEIGHTS = ("Wxh", "Whh", "Why", "bh", "by")
OTHER_ARGS = ("inputs", "targets", *SIZES, *WEIGHTS)   # the one argument besides these is the state hprev


def takes(params: list[str], required: int) -> bool:
    """Whether a function's arguments are lossFun's, with sizes or weights as arguments too: inputs and
    targets first, the state under any name, and nothing else that is required."""
    return params[:2] == ["inputs", "targets"] and sum(p not in OTHER_ARGS for p in params[:required]) == 1


class MinChar(Shape):
    family = "min-char-rnn"
    layout = "column vectors, one stream, the loss summed over the T steps"
    outputs = ("loss", "h_last")
    grads = {"dWxh": "Wxh", "dWhh": "Whh", "dWhy": "Why", "dbh": "bh", "dby": "by"}
    weights = ("Wxh", "Whh", "Why", "bh", "by")
    roles = {"Wxh": "Wxh", "Whh": "Whh", "Why": "Why", "bh": "bh", "by": "by", "hprev": "h0"}

    def __init__(self, cell: str, functions: tuple[str, ...], arrays: str, params: tuple = MINCHAR_ARGS):
        super().__init__(cell, functions, arrays)
        self.params = tuple(params)
        self.call_args = tuple("hprev" if p not in OTHER_ARGS else p for p in self.params)

    @property
    def signature(self) -> str:
        return f"{self.functions[0]}({', '.join(self.params)})"

    def arguments(self, a: dict) -> tuple:
        """lossFun's arguments by their names: the sizes and weights some ports take as arguments too."""
        sizes = {"vocab_size": a["Why"].shape[0], "hidden_size": a["Whh"].shape[0], "seq_length": len(a["inputs"])}
        return tuple(a[p] if p in a and p != "hprev" else sizes[p] if p in sizes else a["hprev"] for p in self.call_args)

    def case(self, sizes: dict, seed: int) -> Case:
        rng = np.random.default_rng(seed)
        T, H, V = sizes["T"], sizes["H"], sizes["V"]
        bound = 1 / np.sqrt(H)
        shapes = {"Wxh": (H, V), "Whh": (H, H), "Why": (V, H), "bh": (H, 1), "by": (V, 1)}
        arrays = {name: rng.uniform(-bound, bound, shape) for name, shape in shapes.items()}
        arrays["hprev"] = 0.5 * rng.standard_normal((H, 1))
        arrays["inputs"] = [int(i) for i in rng.integers(0, V, T)]
        arrays["targets"] = [int(i) for i in rng.integers(0, V, T)]
        return Case(seed, {"T": T, "H": H, "V": V}, arrays)

    def run(self, box, loaded, case: Case) -> dict:
        a = case.arrays
        name = self.functions[0]
        what = f"{name} on a random problem ({case.label()})"
        H, V = a["Whh"].shape[0], a["Why"].shape[0]
        module_globals = {**{k: a[k] for k in self.weights}, "vocab_size": V, "hidden_size": H,
                          "seq_length": len(a["inputs"])}
        out = box.call(loaded, name, self.arguments(a), module_globals, self.arrays, what)
        values = unpack(out, RETURNS, what, "min-char-rnn's lossFun")
        result = {"loss": array(values["loss"], "loss", (), what, case)}
        for grad, arg in self.grads.items():
            result[grad] = array(values[grad], grad, a[arg].shape, what, case, f", the shape of {arg}")
        result["h_last"] = array(values["h_last"], "h_last", (H, 1), what, case, " (hidden_size, 1): hs[len(inputs)-1]")
        return result

    def steps(self, t: dict, upstream: dict, weights_at):
        import torch

        V = t["Why"].shape[0]
        h = t["hprev"]
        losses, states = [], []
        for s, (i, target) in enumerate(zip(t["inputs"], t["targets"])):
            W = weights_at(s)
            x = torch.zeros(V, 1, dtype=torch.float64)
            x[i] = 1
            h = torch.tanh(W["Wxh"] @ x + W["Whh"] @ h + W["bh"])              # (H, 1)
            y = W["Why"] @ h + W["by"]                                        # (V, 1)
            losses.append(-torch.log_softmax(y, dim=0)[target, 0])
            states.append({"hprev": h})
        return losses, {"loss": sum(losses), "h_last": h}, states

    def window(self, case: Case, t0: int, s: int, states: list) -> Case:
        a = dict(case.arrays, inputs=case.arrays["inputs"][t0:s + 1], targets=case.arrays["targets"][t0:s + 1])
        if t0:
            a.update(states[t0 - 1])
        return Case(case.seed, dict(case.sizes, T=s - t0 + 1), a)

    def canon(self, case: Case) -> Canon:
        a = case.arrays
        V = a["Why"].shape[0]
        return Canon("rnn", one_hot(np.array(a["inputs"]), V)[:, None, :], (a["hprev"].T,), a["Wxh"], a["Whh"],
                     a["bh"][:, 0], a["Why"], a["by"][:, 0], np.array(a["targets"])[:, None], 1.0)

    def learner_layout(self, key: str, value: np.ndarray) -> np.ndarray:
        return value[:, None] if key in ("bh", "by") else value
