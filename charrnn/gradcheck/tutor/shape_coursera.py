"""Coursera's Sequence Models (course 5), week 1: the RNN and LSTM cells and sequences, with the
parameters and the gradients in dicts.

    rnn_cell_forward(xt, a_prev, parameters) -> a_next, yt_pred, cache
    rnn_cell_backward(da_next, cache) -> {dxt, da_prev, dWax, dWaa, dba}
    rnn_forward(x, a0, parameters) -> a, y_pred, caches
    rnn_backward(da, caches) -> {dx, da0, dWax, dWaa, dba}
    lstm_cell_forward(xt, a_prev, c_prev, parameters) -> a_next, c_next, yt_pred, cache
    lstm_cell_backward(da_next, dc_next, cache) -> {dxt, da_prev, dc_prev, dWf, dWi, dWc, dWo, dbf, dbi, dbc, dbo}
    lstm_forward(x, a0, parameters) -> a, y, c, caches
    lstm_backward(da, caches) -> {dx, da0, dWf, dWi, dWc, dWo, dbf, dbi, dbc, dbo}

Layout: column vectors, time last. x (n_x, m, T_x) (a cell's xt is (n_x, m)), a (n_a, m, T_x);
the rnn's Wax (n_a, n_x), Waa (n_a, n_a), ba (n_a, 1), Wya (n_y, n_a), by (n_y, 1); the LSTM's gates
each have their own W (n_a, n_a + n_x), acting on the stack [a_prev; xt], and b (n_a, 1):

    rnn    a_t = tanh(Wax x_t + Waa a_{t-1} + ba),  y_t = softmax(Wya a_t + by)
    lstm   f, i, o = sigmoid(Wf [a; x] + bf, Wi [a; x] + bi, Wo [a; x] + bo),  cc = tanh(Wc [a; x] + bc)
           c_t = f * c_{t-1} + i * cc,  a_t = o * tanh(c_t),  y_t = softmax(Wy a_t + by)   (lstm_forward: c = 0)

As in CS231n, there is no loss: the gradient da of every a_t comes from above (and dc_next into a
cell's c), so the exact gradients are those of <a, da> (+ <c_next, dc_next>). y is checked, not
differentiated: the backward takes only da.
"""

import numpy as np

from charrnn.gradcheck.tutor.exact import recurrent_step
from charrnn.gradcheck.tutor.mistakes import Canon
from charrnn.gradcheck.tutor.sandbox import LearnerError
from charrnn.gradcheck.tutor.shapes import Case, NotWritten, Shape, array, describe

GATES = ("i", "f", "c", "o")   # the LSTM's W and b letters in mistakes.Canon's gate order i, f, g, o


class Coursera(Shape):
    family = "coursera"
    layout = "column vectors, time last, x (n_x, m, T_x), the parameters and gradients in dicts"
    window_loss = "last"

    def __init__(self, cell: str, functions: tuple[str, ...], arrays: str):
        super().__init__(cell, functions, arrays)
        self.step = "cell" in functions[0]
        self.lstm = cell == "lstm"
        x, prev = ("xt", "a_prev") if self.step else ("x", "a0")
        self.args = (x, prev, "c_prev") if self.lstm and self.step else (x, prev)
        self.upstream = ("da_next", "dc_next") if self.lstm and self.step else ("da_next",) if self.step else ("da",)
        if self.lstm:
            self.weights = tuple(f"W{k}" for k in GATES) + tuple(f"b{k}" for k in GATES)
            self.head = ("Wy", "by")
            self.outputs = ("a_next", "c_next", "yt_pred") if self.step else ("a", "y", "c")
        else:
            self.weights, self.head = ("Wax", "Waa", "ba"), ("Wya", "by")
            self.outputs = ("a_next", "yt_pred") if self.step else ("a", "y_pred")
        grads = {f"d{x}": x, f"d{prev}": prev, **({"dc_prev": "c_prev"} if len(self.args) == 3 else {})}
        order = ("Wf", "Wi", "Wc", "Wo", "bf", "bi", "bc", "bo") if self.lstm else self.weights
        self.grads = {**grads, **{f"d{w}": w for w in order}}
        self.roles = {x: "x", prev: "h0", "c_prev": "c0", "Wax": "Wxh", "Waa": "Whh", "ba": "bh"}
        if self.lstm:   # each gate's W holds its block of both Whh and Wxh; Whh is what makes it recurrent
            self.roles.update({**{f"W{k}": "Whh" for k in GATES}, **{f"b{k}": "bh" for k in GATES}})
        self.through_time = not self.step
        self.carries_state = not self.lstm
        self.call_args = (*self.args, "parameters")

    @property
    def signature(self) -> str:
        forward, backward = self.functions
        return (f"{forward}({', '.join(self.args)}, parameters) / {backward}({', '.join(self.upstream)}, "
                f"{'cache' if self.step else 'caches'})")

    def case(self, sizes: dict, seed: int) -> Case:
        rng = np.random.default_rng(seed)
        m, n_x, n_a = sizes["B"], sizes["V"], sizes["H"]
        n_y = n_x + 1
        T = 1 if self.step else sizes["T"]
        bound = 1 / np.sqrt(n_a)
        arrays = {self.args[0]: rng.standard_normal((n_x, m) if self.step else (n_x, m, T)),
                  self.args[1]: 0.5 * rng.standard_normal((n_a, m))}
        if "c_prev" in self.args:
            arrays["c_prev"] = 0.5 * rng.standard_normal((n_a, m))
        if self.lstm:
            shapes = {**{f"W{k}": (n_a, n_a + n_x) for k in GATES}, **{f"b{k}": (n_a, 1) for k in GATES}}
        else:
            shapes = {"Wax": (n_a, n_x), "Waa": (n_a, n_a), "ba": (n_a, 1)}
        shapes.update({self.head[0]: (n_y, n_a), "by": (n_y, 1)})
        arrays.update({name: rng.uniform(-bound, bound, shape) for name, shape in shapes.items()})
        hshape = (n_a, m) if self.step else (n_a, m, T)
        upstream = {name: rng.standard_normal(hshape) for name in self.upstream}
        return Case(seed, {"m": m, **({} if self.step else {"T": T}), "n_x": n_x, "n_a": n_a}, arrays, upstream)

    def run(self, box, loaded, case: Case) -> dict:
        forward, backward = self.functions
        what = f"{forward} / {backward} on a random problem ({case.label()})"
        a = case.arrays
        parameters = {k: a[k] for k in (*self.weights, *self.head)}
        outs, grads = box.pair(loaded, forward, (*(a[n] for n in self.args), parameters), backward,
                               tuple(case.upstream[n] for n in self.upstream), self.arrays, what)
        contract = f"Coursera's {forward} returns ({', '.join(self.outputs)}, cache)"
        if outs is None:
            raise NotWritten(f"{forward} returned None")
        if isinstance(outs, (tuple, list)) and all(v is None for v in outs):
            raise NotWritten(f"{forward} returned only None")
        if grads is None or len(outs) != len(self.outputs):
            raise LearnerError(f"{forward} returned {describe(outs) if grads is None else f'{len(outs) + 1} values'}; "
                               f"{contract}")
        if not isinstance(grads, dict):
            raise LearnerError(f"{backward} returned {describe(grads)}; Coursera's {backward} returns the dict "
                               f"gradients with {', '.join(self.grads)}")
        missing = [g for g in self.grads if g not in grads]
        if missing:
            raise LearnerError(f"{backward}'s gradients has no {', '.join(repr(g) for g in missing)}; Coursera's "
                               f"{backward} returns {', '.join(self.grads)}")
        n_a, m = a[self.args[1]].shape
        n_y = a["by"].shape[0]
        at = (n_a, m) if self.step else (n_a, m, case.sizes["T"])
        yt = (n_y, m) if self.step else (n_y, m, case.sizes["T"])
        shapes = dict(zip(self.outputs, (at, at, yt) if self.lstm and self.step else (at, yt, at) if self.lstm
                          else (at, yt)))
        result = {name: array(v, name, shapes[name], f"{forward} on a random problem ({case.label()})", case)
                  for name, v in zip(self.outputs, outs)}
        for grad, arg in self.grads.items():
            result[grad] = array(grads[grad], grad, a[arg].shape, f"{backward} on a random problem ({case.label()})",
                                 case, f", the shape of {arg}")
        return result

    def steps(self, t: dict, upstream: dict, weights_at):
        import torch

        x = t[self.args[0]] if not self.step else t[self.args[0]][:, :, None]
        da = upstream[self.upstream[0]]
        da = da if not self.step else da[:, :, None]
        h = t[self.args[1]].T                                        # rows (m, n_a), as exact.recurrent_step takes
        c = t["c_prev"].T if "c_prev" in t else torch.zeros_like(h)
        losses, states, hs, cs, ys = [], [], [], [], []
        for s in range(x.shape[2]):
            W = weights_at(s)
            if self.lstm:
                stacked = torch.cat([torch.cat([W[f"W{k}"] for k in GATES]), torch.cat([W[f"b{k}"] for k in GATES])],
                                    dim=1)                            # (4 n_a, n_a + n_x + 1)
                pre = torch.cat([h, x[:, :, s].T, torch.ones_like(h[:, :1])], dim=1) @ stacked.T
            else:
                pre = x[:, :, s].T @ W["Wax"].T + h @ W["Waa"].T + W["ba"].T
            h, c = recurrent_step(self.cell, pre, c)
            ys.append(torch.softmax(h @ W[self.head[0]].T + W["by"].T, dim=1).T)
            losses.append((h.T * da[:, :, s]).sum())
            states.append({self.args[1]: h.T})
            hs.append(h.T)
            cs.append(c.T)
        if "dc_next" in upstream:
            losses[-1] = losses[-1] + (c.T * upstream["dc_next"]).sum()
        if self.step:
            values = {"a_next": hs[-1], "c_next": cs[-1], "yt_pred": ys[-1]}
        else:
            values = {"a": torch.stack(hs, dim=2), "c": torch.stack(cs, dim=2), "y": torch.stack(ys, dim=2),
                      "y_pred": torch.stack(ys, dim=2)}
        return losses, {k: values[k] for k in self.outputs}, states

    def window(self, case: Case, t0: int, s: int, states: list) -> Case:
        """x of steps t0..s from the exact state after step t0-1, the upstream at step s only."""
        da = np.zeros_like(case.upstream["da"][:, :, t0:s + 1])
        da[:, :, -1] = case.upstream["da"][:, :, s]
        a = dict(case.arrays, x=case.arrays["x"][:, :, t0:s + 1])
        if t0:
            a.update(states[t0 - 1])
        return Case(case.seed, dict(case.sizes, T=s - t0 + 1), a, {"da": da})

    def truncate(self, case: Case, T: int) -> Case:
        return Case(case.seed, dict(case.sizes, T=T), dict(case.arrays, x=case.arrays["x"][:, :, :T]),
                    {"da": case.upstream["da"][:, :, :T]})

    def canon(self, case: Case) -> Canon:
        a, up = case.arrays, case.upstream
        x = a[self.args[0]][:, :, None] if self.step else a[self.args[0]]
        h0 = a[self.args[1]].T
        da = up[self.upstream[0]]
        da = da[:, :, None] if self.step else da
        if self.lstm:
            n_a = h0.shape[1]
            W = np.concatenate([a[f"W{k}"] for k in GATES])          # (4 n_a, n_a + n_x)
            Wxh, Whh, bh = W[:, n_a:], W[:, :n_a], np.concatenate([a[f"b{k}"][:, 0] for k in GATES])
            c0 = a["c_prev"].T if "c_prev" in a else np.zeros_like(h0)
            dc = up["dc_next"].T if "dc_next" in up else None
            return Canon("lstm", x.transpose(2, 1, 0), (h0, c0), Wxh, Whh, bh, dh=da.transpose(2, 1, 0), dc=dc)
        return Canon("rnn", x.transpose(2, 1, 0), (h0,), a["Wax"], a["Waa"], a["ba"][:, 0], dh=da.transpose(2, 1, 0))

    def learner_layout(self, key: str, value: np.ndarray) -> np.ndarray:
        if key == "bh":
            return value[:, None]
        if key in ("h0", "c0"):
            return value.T
        if key == "x":
            return value.transpose(2, 1, 0)[:, :, 0] if self.step else value.transpose(2, 1, 0)
        return value

    def from_canon(self, arrays: dict) -> dict:
        """The LSTM's W of each gate is [Whh | Wxh] of its block, so it needs both of Canon's."""
        if not self.lstm:
            return super().from_canon(arrays)
        out = {grad: self.learner_layout(self.roles[arg], arrays[self.roles[arg]])
               for grad, arg in self.grads.items() if arg in self.args and self.roles[arg] in arrays}
        for j, k in enumerate(GATES):
            if "Wxh" in arrays and "Whh" in arrays:
                H = arrays["Whh"].shape[1]
                out[f"dW{k}"] = np.concatenate([arrays["Whh"][j * H:(j + 1) * H], arrays["Wxh"][j * H:(j + 1) * H]],
                                               axis=1)
            if "bh" in arrays:
                H = arrays["bh"].shape[0] // 4
                out[f"db{k}"] = arrays["bh"][j * H:(j + 1) * H][:, None]
        return out


# (forward, backward) -> (cell, the signatures of the two)
PAIRS = {("rnn_cell_forward", "rnn_cell_backward"): ("rnn", ("(xt, a_prev, parameters)", "(da_next, cache)")),
         ("rnn_forward", "rnn_backward"): ("rnn", ("(x, a0, parameters)", "(da, caches)")),
         ("lstm_cell_forward", "lstm_cell_backward"): ("lstm", ("(xt, a_prev, c_prev, parameters)",
                                                                "(da_next, dc_next, cache)")),
         ("lstm_forward", "lstm_backward"): ("lstm", ("(x, a0, parameters)", "(da, caches)"))}
