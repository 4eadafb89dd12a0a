"""A hand-written BPTT that can make each classic mistake on purpose: the tutor's hypotheses.

The learner's gradients are compared with what this backward returns with one or two mistakes
switched on; a mistake whose gradients equal the learner's to round-off, on several random problems,
is named. With no mistake it is the exact backward (tests/test_tutor.py holds it to autograd).

One layout for every learner shape (their adapters convert, see shapes.py): B streams as rows,
time-major, gates stacked i, f, g, o (torch's order):

    x (T, B, D)   h0, c0 (B, H)   Wxh (G*H, D)   Whh (G*H, H)   bh (G*H,)   Why (V, H)   by (V,)

    rnn    a_t = x_t Wxh^T + h_{t-1} Whh^T + bh             h_t = tanh(a_t)
    lstm   i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g)  c_t = f c_{t-1} + i g    h_t = o tanh(c_t)
    head   y_t = h_t Why^T + by,  loss = scale * sum_t,b -log softmax(y_t)[target]   (scale 1: sum, 1/(B*T): mean)

The loss is either the head's or <h, dh>: an upstream gradient dh (T, B, H) of every h_t given from
above (CS231n's layer functions), and dc (B, H) into the last c_t for an LSTM step.

A mistake is a switch (code, variant) of SWITCHES, codes.py's names. Those change the recursion
through time, so every gradient behind them moves; a mistake in one gradient's own formula (h-index
in dWhh or dWhy, not-accumulated) comes back instead as a variant of that gradient (Gradients).
"""

from dataclasses import dataclass, field

import numpy as np

# Each cell's switches: (code, variant) -> (the factors of the backward it rewrites, the learner's line).
# Two switches that rewrite the same factor cannot both be on.
RNN_SWITCHES = {
    ("missing-dh-next", ""): ({"dh_next"}, "dh_t = dout_t (no dh_next)"),
    ("tanh-derivative", "missing"): ({"tanh'"}, "dh_raw_t = dh_t (no tanh')"),
    ("tanh-derivative", "pre-activation"): ({"tanh'"}, "dh_raw_t = (1 - a_t^2) * dh_t, of the pre-activation a_t"),
    ("tanh-derivative", "tanh-twice"): ({"tanh'"}, "dh_raw_t = (1 - tanh(h_t)^2) * dh_t, tanh taken of h_t again"),
    ("tanh-derivative", "previous-step"): ({"tanh'"}, "dh_raw_t = (1 - h_{t-1}^2) * dh_t, the previous step's h"),
    ("transposed-whh", ""): ({"Whh^T"}, "dh_next = Whh dh_raw_t (Whh where Whh^T belongs)"),
    ("elementwise-chain", ""): ({"dh_next", "Whh^T"},
                                "dh_s/dh_t = J_s * J_{s-1} * ... elementwise (J_k = diag(1 - h_k^2) Whh)"),
}
LSTM_SWITCHES = {
    ("missing-dh-next", ""): ({"dh_next"}, "dh_t = dout_t (no dh_next)"),
    ("missing-dc-path", ""): ({"dc_next"}, "dc_t = dh_t * o * (1 - tanh(c_t)^2) (no dc_next)"),
    ("tanh-derivative", "cell-missing"): ({"tanh'(c)"}, "dc_t = dh_t * o + dc_next (no tanh' of tanh(c_t))"),
    ("tanh-derivative", "cell-pre-activation"): ({"tanh'(c)"},
                                                 "dc_t = dh_t * o * (1 - c_t^2) + dc_next, of c_t not tanh(c_t)"),
    ("tanh-derivative", "g-missing"): ({"tanh'(g)"}, "da_g = dc_t * i (no tanh' of g)"),
    ("tanh-derivative", "g-pre-activation"): ({"tanh'(g)"}, "da_g = dc_t * i * (1 - a_g^2), of the pre-activation a_g"),
    ("tanh-derivative", "cell-tanh-twice"): ({"tanh'(c)"}, "dc_t = dh_t * o * (1 - tanh(tanh(c_t))^2) + dc_next"),
    ("tanh-derivative", "cell-of-g"): ({"tanh'(c)"}, "dc_t = dh_t * o * (1 - g^2) + dc_next, g's slope for tanh(c_t)'s"),
    ("tanh-derivative", "g-tanh-twice"): ({"tanh'(g)"}, "da_g = dc_t * i * (1 - tanh(g)^2), tanh taken of g again"),
    ("sigmoid-derivative", ""): ({"sigmoid'"}, "da_i = di * sigmoid(i) * (1 - sigmoid(i)), and so for f and o"),
}
SWITCHES = {"rnn": RNN_SWITCHES, "lstm": LSTM_SWITCHES}


def allowed(cell: str, switches: tuple) -> bool:
    """Whether these switches can be on together: no two rewrite the same factor."""
    factors = [factor for switch in switches for factor in SWITCHES[cell][switch][0]]
    return len(factors) == len(set(factors))


@dataclass
class Canon:
    """One problem in the layout above."""

    cell: str                          # "rnn" or "lstm"
    x: np.ndarray                      # (T, B, D)
    state: tuple                       # (h0,) or (h0, c0), each (B, H)
    Wxh: np.ndarray                    # (G*H, D)
    Whh: np.ndarray                    # (G*H, H)
    bh: np.ndarray                     # (G*H,)
    Why: np.ndarray | None = None      # (V, H): the head, or None when dh comes from above
    by: np.ndarray | None = None       # (V,)
    targets: np.ndarray | None = None  # (T, B) ids
    loss_scale: float = 1.0
    dh: np.ndarray | None = None       # (T, B, H) upstream gradient of every h_t
    dc: np.ndarray | None = None       # (B, H) upstream gradient of the last c_t


@dataclass
class Gradients:
    """What a backward returns: every gradient (Wxh, Whh, bh, Why, by, h0, c0, x), each weight's term
    of every step (T, *shape), and the gradients that one-gradient mistakes give instead."""

    grads: dict
    terms: dict
    variants: dict = field(default_factory=dict)   # {"h-index": {"Whh": ..., "Why": ...}}


def sigmoid(a):
    return 0.5 + 0.5 * np.tanh(0.5 * a)


def forward(pb: Canon) -> dict:
    """Every step's values: a (T, B, G*H) pre-activations, h and c (T+1, B, H) with the initial state
    at 0, the gates (T, B, H) each for the LSTM, and dout (T, B, H): dL/dh_t from above."""
    T, B, _ = pb.x.shape
    H = pb.Whh.shape[1]
    a = np.empty((T, B, pb.Whh.shape[0]))
    h = np.empty((T + 1, B, H))
    h[0] = pb.state[0]
    values = {"a": a, "h": h}
    if pb.cell == "lstm":
        c = np.empty((T + 1, B, H))
        c[0] = pb.state[1]
        gates = {k: np.empty((T, B, H)) for k in "ifgo"}
        values.update(c=c, **gates)
    for t in range(T):
        a[t] = pb.x[t] @ pb.Wxh.T + h[t] @ pb.Whh.T + pb.bh
        if pb.cell == "rnn":
            h[t + 1] = np.tanh(a[t])
            continue
        a_i, a_f, a_g, a_o = np.split(a[t], 4, axis=1)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
        for k, v in zip("ifgo", (i, f, g, o)):
            values[k][t] = v
        c[t + 1] = f * c[t] + i * g
        h[t + 1] = o * np.tanh(c[t + 1])
    if pb.Why is None:
        values["dout"] = pb.dh
        return values
    logits = h[1:] @ pb.Why.T + pb.by                              # (T, B, V)
    p = np.exp(logits - logits.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    dy = p
    np.put_along_axis(dy, pb.targets[..., None], np.take_along_axis(p, pb.targets[..., None], 2) - 1, 2)
    dy *= pb.loss_scale                                           # (T, B, V) dL/dy_t
    values["dy"] = dy
    values["dout"] = dy @ pb.Why                                  # (T, B, H) Why^T dy_t
    return values


def tanh_slope(switches: set, h, a, t: int):
    """(B, H) the rnn's tanh' at step t as the switches write it."""
    if ("tanh-derivative", "missing") in switches:
        return np.ones_like(h[t + 1])
    if ("tanh-derivative", "pre-activation") in switches:
        return 1 - a[t] ** 2
    if ("tanh-derivative", "tanh-twice") in switches:
        return 1 - np.tanh(h[t + 1]) ** 2
    if ("tanh-derivative", "previous-step") in switches:
        return 1 - h[t] ** 2
    return 1 - h[t + 1] ** 2


def rnn_backward(pb: Canon, values: dict, switches: set) -> tuple[np.ndarray, np.ndarray]:
    """(T, B, H) dh_raw_t = dL/da_t and (B, H) dL/dh0, as the switches write them."""
    h, a, dout = values["h"], values["a"], values["dout"]
    if ("elementwise-chain", "") in switches:
        return elementwise_chain(pb, values, switches)
    T = len(dout)
    draw = np.empty_like(dout)
    Wback = pb.Whh.T if ("transposed-whh", "") in switches else pb.Whh
    dh_next = np.zeros_like(h[0])
    for t in reversed(range(T)):
        dh = dout[t] if ("missing-dh-next", "") in switches else dout[t] + dh_next
        draw[t] = tanh_slope(switches, h, a, t) * dh
        dh_next = draw[t] @ Wback                                 # (B, H) Whh^T dh_raw_t, as rows
    return draw, dh_next


def elementwise_chain(pb: Canon, values: dict, switches: set) -> tuple[np.ndarray, np.ndarray]:
    """Each loss step s sends dout_s back to every earlier h_t through the chain of Jacobians
    J_k = dh_k/dh_{k-1} = diag(tanh'_k) Whh, multiplied elementwise instead of as matrices."""
    h, a, dout = values["h"], values["a"], values["dout"]
    T = len(dout)
    draw = np.zeros_like(dout)
    dh0 = np.zeros_like(h[0])
    slopes = [tanh_slope(switches, h, a, t) for t in range(T)]
    for s in range(T):
        chain = None                                              # (B, H, H) dh_s/dh_t, elementwise
        for t in reversed(range(s + 1)):
            delta = dout[s] if chain is None else np.einsum("bi,bij->bj", dout[s], chain)
            draw[t] += slopes[t] * delta
            J = slopes[t][:, :, None] * pb.Whh                    # (B, H, H) diag(tanh'_t) Whh
            chain = J if chain is None else chain * J
        dh0 += np.einsum("bi,bij->bj", dout[s], chain)
    return draw, dh0


def lstm_backward(pb: Canon, values: dict, switches: set) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, B, 4H) da_t = dL/da_t, and dL/dh0, dL/dc0 (B, H), as the switches write them."""
    c, a, dout = values["c"], values["a"], values["dout"]
    i, f, g, o = (values[k] for k in "ifgo")
    T, _, H = dout.shape
    da = np.empty(a.shape)
    dh_next = np.zeros_like(c[0])
    dc_next = np.zeros_like(c[0]) if pb.dc is None else pb.dc
    for t in reversed(range(T)):
        dh = dout[t] if ("missing-dh-next", "") in switches else dout[t] + dh_next
        tanh_c = np.tanh(c[t + 1])
        slope_c = 1 - tanh_c ** 2
        if ("tanh-derivative", "cell-missing") in switches:
            slope_c = 1.0
        elif ("tanh-derivative", "cell-pre-activation") in switches:
            slope_c = 1 - c[t + 1] ** 2
        elif ("tanh-derivative", "cell-tanh-twice") in switches:
            slope_c = 1 - np.tanh(tanh_c) ** 2
        elif ("tanh-derivative", "cell-of-g") in switches:
            slope_c = 1 - g[t] ** 2
        dc = dh * o[t] * slope_c
        if ("missing-dc-path", "") not in switches:
            dc = dc + dc_next
        slope_g = 1 - g[t] ** 2
        if ("tanh-derivative", "g-missing") in switches:
            slope_g = 1.0
        elif ("tanh-derivative", "g-pre-activation") in switches:
            slope_g = 1 - a[t][:, 2 * H:3 * H] ** 2
        elif ("tanh-derivative", "g-tanh-twice") in switches:
            slope_g = 1 - np.tanh(g[t]) ** 2
        gate = sigmoid if ("sigmoid-derivative", "") in switches else (lambda v: v)   # sigmoid(i): i again
        slope_i, slope_f, slope_o = (gate(v) * (1 - gate(v)) for v in (i[t], f[t], o[t]))
        da[t] = np.concatenate([dc * g[t] * slope_i, dc * c[t] * slope_f, dc * i[t] * slope_g,
                                dh * tanh_c * slope_o], axis=1)
        dh_next = da[t] @ pb.Whh                                  # (B, H) Whh^T da_t, as rows
        dc_next = dc * f[t]
    return da, dh_next, dc_next


def backward(pb: Canon, switches: tuple = ()) -> Gradients:
    """Every gradient of the problem's loss, with the given mistakes made."""
    on = set(switches)
    values = forward(pb)
    h = values["h"]
    if pb.cell == "rnn":
        da, dh0 = rnn_backward(pb, values, on)
        state = {"h0": dh0}
    else:
        da, dh0, dc0 = lstm_backward(pb, values, on)
        state = {"h0": dh0, "c0": dc0}
    terms = {"Wxh": np.einsum("tbi,tbj->tij", da, pb.x),          # da_t^T x_t
             "Whh": np.einsum("tbi,tbj->tij", da, h[:-1]),        # da_t^T h_{t-1}
             "bh": da.sum(axis=1)}
    variants = {"h-index": {"Whh": np.einsum("tbi,tbj->ij", da, h[1:])}}   # h_t where h_{t-1} belongs
    wrapped = h[:-1].copy()
    wrapped[0] = h[-1]                                            # hs[t-1] at t = 0 on a list: hs[-1], the last h
    variants["first-step-wrap"] = {"Whh": np.einsum("tbi,tbj->ij", da, wrapped)}
    if pb.Why is not None:
        dy = values["dy"]
        terms.update(Why=np.einsum("tbi,tbj->tij", dy, h[1:]), by=dy.sum(axis=1))
        variants["h-index"]["Why"] = np.einsum("tbi,tbj->ij", dy, h[:-1])  # h_{t-1} where h_t belongs
    grads = {k: v.sum(axis=0) for k, v in terms.items()}
    grads.update(state, x=da @ pb.Wxh)                            # (T, B, D) Wxh^T da_t, as rows
    return Gradients(grads, terms, variants)
