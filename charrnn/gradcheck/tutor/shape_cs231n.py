"""CS231n's RNN and LSTM layer functions (assignment 3's rnn_layers.py), in pairs:

    rnn_step_forward(x, prev_h, Wx, Wh, b) -> next_h, cache
    rnn_step_backward(dnext_h, cache) -> dx, dprev_h, dWx, dWh, db
    rnn_forward(x, h0, Wx, Wh, b) -> h, cache
    rnn_backward(dh, cache) -> dx, dh0, dWx, dWh, db
    lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b) -> next_h, next_c, cache
    lstm_step_backward(dnext_h, dnext_c, cache) -> dx, dprev_h, dprev_c, dWx, dWh, db
    lstm_forward(x, h0, Wx, Wh, b) -> h, cache
    lstm_backward(dh, cache) -> dx, dh0, dWx, dWh, db

Layout: rows, the transpose of min-char-rnn's. x (N, T, D) (a step's x is (N, D)), h (N, T, H),
Wx (D, G*H), Wh (H, G*H), b (G*H,), gates in CS231n's order i, f, o, g:

    rnn    h_t = tanh(x_t Wx + h_{t-1} Wh + b)
    lstm   a = x_t Wx + h_{t-1} Wh + b;  i, f, o, g = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o), tanh(a_g)
           c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)     (lstm_forward starts from c = 0)

There is no loss: the gradient dh of every h_t comes from above (and dnext_c into a step's c), so
the exact gradients are those of <h, dh> (+ <next_c, dnext_c>).
"""

import numpy as np

from charrnn.gradcheck.tutor.exact import recurrent_step
from charrnn.gradcheck.tutor.mistakes import Canon
from charrnn.gradcheck.tutor.shapes import Case, NotWritten, Shape, array, describe, unpack
from charrnn.gradcheck.tutor.sandbox import LearnerError

CANON_GATES = (0, 1, 3, 2)   # CS231n's i, f, o, g blocks in torch's order i, f, g, o (and back: a swap)


def reorder(w: np.ndarray, G: int) -> np.ndarray:
    """The gate blocks of the last axis swapped between CS231n's order and torch's (the LSTM's)."""
    if G == 1:
        return w
    blocks = np.split(w, G, axis=-1)
    return np.concatenate([blocks[k] for k in CANON_GATES], axis=-1)


class CS231n(Shape):
    family = "cs231n"
    layout = "rows, x_t Wx with Wx (D, G*H), the gradient dh of every h_t given from above"
    window_loss = "last"

    def __init__(self, cell: str, functions: tuple[str, ...], arrays: str):
        super().__init__(cell, functions, arrays)
        self.step = "step" in functions[0]
        self.G = 4 if cell == "lstm" else 1
        cell_state = cell == "lstm" and self.step      # a step of the LSTM takes and returns c too
        prev = ("prev_h", "prev_c") if cell_state else ("prev_h",) if self.step else ("h0",)
        self.args = ("x", *prev, "Wx", "Wh", "b")
        self.upstream = ("dnext_h", "dnext_c") if cell_state else ("dnext_h",) if self.step else ("dh",)
        self.outputs = ("next_h", "next_c") if cell_state else ("next_h",) if self.step else ("h",)
        self.grads = {"dx": "x", **{f"d{p}": p for p in prev}, "dWx": "Wx", "dWh": "Wh", "db": "b"}
        self.weights = ("Wx", "Wh", "b")
        self.roles = {"x": "x", "Wx": "Wxh", "Wh": "Whh", "b": "bh", "prev_h": "h0", "h0": "h0", "prev_c": "c0"}
        self.through_time = not self.step
        self.carries_state = cell == "rnn"
        self.call_args = self.args

    @property
    def signature(self) -> str:
        forward, backward = self.functions
        return f"{forward}({', '.join(self.args)}) / {backward}({', '.join(self.upstream)}, cache)"

    def case(self, sizes: dict, seed: int) -> Case:
        rng = np.random.default_rng(seed)
        N, D, H = sizes["B"], sizes["V"], sizes["H"]
        T = 1 if self.step else sizes["T"]
        bound = 1 / np.sqrt(H)
        xshape = (N, D) if self.step else (N, T, D)
        arrays = {"x": rng.standard_normal(xshape), self.args[1]: 0.5 * rng.standard_normal((N, H))}
        if "prev_c" in self.args:
            arrays["prev_c"] = 0.5 * rng.standard_normal((N, H))
        for name, shape in (("Wx", (D, self.G * H)), ("Wh", (H, self.G * H)), ("b", (self.G * H,))):
            arrays[name] = rng.uniform(-bound, bound, shape)
        hshape = (N, H) if self.step else (N, T, H)
        upstream = {name: rng.standard_normal(hshape) for name in self.upstream}
        return Case(seed, {"N": N, **({} if self.step else {"T": T}), "D": D, "H": H}, arrays, upstream)

    def run(self, box, loaded, case: Case) -> dict:
        forward, backward = self.functions
        what = f"{forward} / {backward} on a random problem ({case.label()})"
        a = case.arrays
        outs, grads = box.pair(loaded, forward, tuple(a[n] for n in self.args), backward,
                               tuple(case.upstream[n] for n in self.upstream), self.arrays, what)
        contract = f"CS231n's {forward} returns ({', '.join(self.outputs)}, cache)"
        if outs is None:
            raise NotWritten(f"{forward} returned None")
        if isinstance(outs, (tuple, list)) and all(v is None for v in outs):
            raise NotWritten(f"{forward} returned only None")
        if grads is None:
            raise LearnerError(f"{forward} returned {describe(outs)}; {contract}")
        if len(outs) != len(self.outputs):
            raise LearnerError(f"{forward} returned {len(outs) + 1} values; {contract}")
        values = unpack(grads, tuple(self.grads), f"{backward}", f"CS231n's {backward}")
        hshape = case.upstream[self.upstream[0]].shape
        result = {name: array(v, name, hshape, f"{forward} on a random problem ({case.label()})", case)
                  for name, v in zip(self.outputs, outs)}
        for grad, arg in self.grads.items():
            result[grad] = array(values[grad], grad, a[arg].shape, f"{backward} on a random problem ({case.label()})",
                                 case, f", the shape of {arg}")
        return result

    def steps(self, t: dict, upstream: dict, weights_at):
        import torch

        x = t["x"] if not self.step else t["x"][:, None, :]
        dh = upstream[self.upstream[0]]
        dh = dh if not self.step else dh[:, None, :]
        h = t[self.args[1]]
        c = t["prev_c"] if "prev_c" in t else torch.zeros_like(h)
        losses, states, hs = [], [], []
        for s in range(x.shape[1]):
            W = weights_at(s)
            h, c = recurrent_step(self.cell, x[:, s] @ W["Wx"] + h @ W["Wh"] + W["b"], c, "ifog")   # CS231n's order
            losses.append((h * dh[:, s]).sum())
            states.append({"h0": h})
            hs.append(h)
        if "dnext_c" in upstream:
            losses[-1] = losses[-1] + (c * upstream["dnext_c"]).sum()
        outputs = {"h": torch.stack(hs, dim=1)} if not self.step else {"next_h": h, "next_c": c}
        return losses, {k: outputs[k] for k in self.outputs}, states

    def window(self, case: Case, t0: int, s: int, states: list) -> Case:
        """x of steps t0..s from the exact state after step t0-1, the upstream at step s only."""
        dh = np.zeros_like(case.upstream["dh"][:, t0:s + 1])
        dh[:, -1] = case.upstream["dh"][:, s]
        a = dict(case.arrays, x=case.arrays["x"][:, t0:s + 1])
        if t0:
            a.update(states[t0 - 1])
        return Case(case.seed, dict(case.sizes, T=s - t0 + 1), a, {"dh": dh})

    def truncate(self, case: Case, T: int) -> Case:
        return Case(case.seed, dict(case.sizes, T=T), dict(case.arrays, x=case.arrays["x"][:, :T]),
                    {"dh": case.upstream["dh"][:, :T]})

    def canon(self, case: Case) -> Canon:
        a, up = case.arrays, case.upstream
        x = a["x"][:, None, :] if self.step else a["x"]
        h0 = a[self.args[1]]
        state = (h0,) if self.cell == "rnn" else (h0, a.get("prev_c", np.zeros_like(h0)))
        dh = up[self.upstream[0]]
        dh = dh[:, None, :] if self.step else dh
        return Canon(self.cell, x.transpose(1, 0, 2), state, reorder(a["Wx"], self.G).T, reorder(a["Wh"], self.G).T,
                     reorder(a["b"], self.G), dh=dh.transpose(1, 0, 2), dc=up.get("dnext_c"))

    def learner_layout(self, key: str, value: np.ndarray) -> np.ndarray:
        if key in ("Wxh", "Whh"):
            return reorder(value.T, self.G)
        if key == "bh":
            return reorder(value, self.G)
        if key == "x":
            return value[0] if self.step else value.transpose(1, 0, 2)
        return value


# (forward, backward) -> (cell, the signatures of the two)
PAIRS = {("rnn_step_forward", "rnn_step_backward"): ("rnn", ("(x, prev_h, Wx, Wh, b)", "(dnext_h, cache)")),
         ("rnn_forward", "rnn_backward"): ("rnn", ("(x, h0, Wx, Wh, b)", "(dh, cache)")),
         ("lstm_step_forward", "lstm_step_backward"): ("lstm", ("(x, prev_h, prev_c, Wx, Wh, b)",
                                                                "(dnext_h, dnext_c, cache)")),
         ("lstm_forward", "lstm_backward"): ("lstm", ("(x, h0, Wx, Wh, b)", "(dh, cache)"))}
