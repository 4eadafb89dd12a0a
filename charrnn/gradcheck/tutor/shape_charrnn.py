"""charrnn's contract, which is also the adapter for anything else:

    loss_and_grads(params, inputs, targets, h_prev) -> loss, grads, h_last
    loss_and_grads(params, inputs, targets, state, spec) -> loss, grads, state_last

Layout: charrnn's (docs/model.md). params keyed Wxh (G*H, V), Whh (G*H, H), bh (G*H,), Why (V, H),
by (V,) (and the GRU's bhn (H,)), gates in torch's order; inputs, targets (B, T) ids; h_prev (B, H); with
spec (charrnn.model.model_spec(cell, V, H, 1)) the state is a tuple of (1, B, H) arrays, (h,) or
(h, c); the loss is the mean over the B*T predictions; grads are keyed like params.

    rnn   h_t = tanh(x_t Wxh^T + h_{t-1} Whh^T + bh)
    lstm  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of x_t Wxh^T + h_{t-1} Whh^T + bh;
          c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
    gru   r, z = sigmoid(u_r + w_r), sigmoid(u_z + w_z);  n = tanh(u_n + r * (w_n + bhn));  h_t = n + z (h_{t-1} - n)
          with u = x_t Wxh^T + bh, w = h_{t-1} Whh^T
    mingru   no Whh; z = sigmoid(u_z), h~ = u_h of u = x_t Wxh^T + bh;  h_t = (1 - z) h_{t-1} + z h~
    minlstm  no Whh; f, i = sigmoid(u_f), sigmoid(u_i), h~ = u_h;  h_t = (f h_{t-1} + i h~) / (f + i)
    loss = mean over t and the streams of -log softmax(h_t Why^T + by)[target]
"""

import numpy as np

from charrnn.cells import CELLS
from charrnn.gradcheck.tutor.exact import recurrent_step
from charrnn.gradcheck.tutor.mistakes import Canon
from charrnn.gradcheck.tutor.sandbox import LearnerError
from charrnn.gradcheck.tutor.shapes import Case, Shape, array, describe, one_hot, unpack
from charrnn.model import init_params, model_spec


class CharRNN(Shape):
    family = "charrnn"
    layout = "rows, Wxh (G*H, V), the loss the mean over the B*T predictions"

    def __init__(self, cell: str, functions: tuple[str, ...], arrays: str, takes_spec: bool):
        super().__init__(cell, functions, arrays)
        self.takes_spec = takes_spec
        names = list(init_params(model_spec(cell, 2, 1), "uniform", 0.0, 0, "float64"))
        self.weights = tuple(names)
        self.grads = {name: name for name in names}
        state = ("h_prev", "c_prev") if cell == "lstm" else ("h_prev",)
        self.state = state
        self.roles = {**{name: name for name in names}, "h_prev": "h0", "c_prev": "c0"}
        self.outputs = ("loss", "state_last") if takes_spec else ("loss", "h_last")
        self.call_args = ("params", "inputs", "targets", "state", "spec") if takes_spec else (
            "params", "inputs", "targets", "h_prev")

    @property
    def signature(self) -> str:
        name = self.functions[0]
        return f"{name}(params, inputs, targets, {'state, spec' if self.takes_spec else 'h_prev'})"

    def spec(self, case: Case):
        return model_spec(self.cell, case.sizes["V"], case.sizes["H"], 1)

    def case(self, sizes: dict, seed: int) -> Case:
        rng = np.random.default_rng(seed)
        B, T, H, V = sizes["B"], sizes["T"], sizes["H"], sizes["V"]
        arrays = init_params(model_spec(self.cell, V, H, 1), "uniform", 0.0, seed, "float64")
        arrays.update({name: 0.5 * rng.standard_normal((B, H)) for name in self.state})
        arrays["inputs"] = rng.integers(0, V, (B, T))
        arrays["targets"] = rng.integers(0, V, (B, T))
        return Case(seed, {"B": B, "T": T, "H": H, "V": V}, arrays)

    def run(self, box, loaded, case: Case) -> dict:
        a = case.arrays
        name = self.functions[0]
        what = f"{name} on a random problem ({case.label()})"
        params = {k: a[k] for k in self.weights}
        if self.takes_spec:
            args = (params, a["inputs"], a["targets"], tuple(a[s][None] for s in self.state), self.spec(case))
        else:
            args = (params, a["inputs"], a["targets"], a["h_prev"])
        values = unpack(box.call(loaded, name, args, {}, self.arrays, what), ("loss", "grads", self.outputs[1]), what,
                        "charrnn's loss_and_grads")
        result = {"loss": array(values["loss"], "loss", (), what, case)}
        grads = values["grads"]
        if not isinstance(grads, dict):
            raise LearnerError(f"{what} returned {describe(grads)} for grads; it must be a dict keyed like params "
                               f"({', '.join(self.weights)})")
        missing = [k for k in self.weights if k not in grads]
        if missing:
            raise LearnerError(f"{what}: grads has no {', '.join(repr(k) for k in missing)}; it must hold a gradient "
                               f"for every key of params")
        for grad, arg in self.grads.items():
            result[grad] = array(grads[arg], grad, a[arg].shape, what, case, f", the shape of params[{arg!r}]")
        B, H = a["h_prev"].shape
        last = values[self.outputs[1]]
        if self.takes_spec:
            if not isinstance(last, (tuple, list)) or len(last) != len(self.state):
                raise LearnerError(f"{what} returned {describe(last)} for state_last; it must be a tuple of "
                                   f"{len(self.state)} arrays (1, B, H), like the state it was given")
            last = last[0]
            result["state_last"] = array(last, "state_last[0]", (1, B, H), what, case)[0]
        else:
            result["h_last"] = array(last, "h_last", (B, H), what, case)
        return result

    def steps(self, t: dict, upstream: dict, weights_at):
        import torch
        import torch.nn.functional as F

        B, T = t["inputs"].shape
        V = t["Why"].shape[0]
        x = torch.from_numpy(one_hot(t["inputs"], V))                       # (B, T, V)
        targets = torch.from_numpy(t["targets"])
        h = t["h_prev"]
        c = t.get("c_prev")
        losses, states = [], []
        for s in range(T):
            W = weights_at(s)
            if self.cell == "gru":
                u_r, u_z, u_n = (x[:, s] @ W["Wxh"].T + W["bh"]).chunk(3, dim=1)
                w_r, w_z, w_n = (h @ W["Whh"].T).chunk(3, dim=1)
                r, z = torch.sigmoid(u_r + w_r), torch.sigmoid(u_z + w_z)
                n = torch.tanh(u_n + r * (w_n + W["bhn"]))
                h = n + z * (h - n)
            elif CELLS[self.cell].parallel:
                a_s, b_s = CELLS[self.cell].code.torch_coefficients(x[:, s] @ W["Wxh"].T + W["bh"])
                h = a_s * h + b_s
            else:
                h, c = recurrent_step(self.cell, x[:, s] @ W["Wxh"].T + h @ W["Whh"].T + W["bh"], c)
            logits = h @ W["Why"].T + W["by"]
            losses.append(F.cross_entropy(logits, targets[:, s], reduction="sum") / (B * T))
            states.append({"h_prev": h} if c is None else {"h_prev": h, "c_prev": c})
        return losses, {"loss": sum(losses), self.outputs[1]: h}, states

    def window(self, case: Case, t0: int, s: int, states: list) -> Case:
        a = dict(case.arrays, inputs=case.arrays["inputs"][:, t0:s + 1], targets=case.arrays["targets"][:, t0:s + 1])
        if t0:
            a.update(states[t0 - 1])
        return Case(case.seed, dict(case.sizes, T=s - t0 + 1), a)

    def window_scale(self, t0: int, s: int, T: int) -> float:
        return (s - t0 + 1) / T

    def canon(self, case: Case) -> Canon | None:
        if self.cell not in ("rnn", "lstm"):
            return None
        a = case.arrays
        B, T = a["inputs"].shape
        V = a["Why"].shape[0]
        return Canon(self.cell, one_hot(a["inputs"].T, V), tuple(a[s] for s in self.state), a["Wxh"], a["Whh"],
                     a["bh"], a["Why"], a["by"], a["targets"].T, 1.0 / (B * T))

    def learner_layout(self, key: str, value: np.ndarray) -> np.ndarray:
        return value
