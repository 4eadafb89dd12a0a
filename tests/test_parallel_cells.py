"""minGRU and minLSTM: both backends against an independent, sequential float64 reference of the paper's
equations (Feng et al. 2024), written here step by step on torch autograd, sharing no code with charrnn's."""

import numpy as np
import pytest
import torch

from charrnn.backends import StepSettings, numpy_backend, torch_backend, torch_parallel
from charrnn.backends.torch_backend import TorchBackend
from charrnn.backends.numpy_layers import linear_recurrence
from charrnn.gradcheck.problem import random_problem, relative_error
from charrnn.cells import CELLS as RECORDS
from charrnn.model import param_shapes
from charrnn.optim import AdamConfig

TOL = 1e-10
CELLS = ("mingru", "minlstm")
SHAPES = [(3, 7, 5, 11), (1, 6, 4, 7), (3, 1, 5, 9), (1, 1, 3, 5)]   # (B, T, H, V): B = 1 and T = 1 edges


def g(x):
    """The paper's activation, one element at a time: x + 1/2 for x >= 0, sigmoid(x) below."""
    return torch.stack([v + 0.5 if v >= 0 else 1 / (1 + torch.exp(-v)) for v in x.reshape(-1)]).reshape(x.shape)


def norm(x, kind: str):
    """One (B, H) step's rows normalised over H, by the textbook formulas, eps 1e-5, no gain or bias."""
    if kind == "none":
        return x
    if kind == "layer":
        x = x - x.sum(dim=1, keepdim=True) / x.shape[1]
    return x / torch.sqrt((x * x).sum(dim=1, keepdim=True) / x.shape[1] + 1e-5)


def sequential_layers(cell: str, P: dict, xs: list, h0, masks=None, activation="none", residual=False,
                      norm_kind="none") -> tuple[list, list]:
    """The paper's equations one step at a time: xs T inputs (B, In) of layer 0, h0 (L, B, H) ->
    what the head reads at each of the T steps and each layer's last h. The options: g on the candidate;
    a residual path around every layer but the first (whose input is one-hot, not H wide); each layer
    but the first, and the head, reading its input normalised (pre-norm)."""
    last = []
    for layer in range(len(h0)):
        suffix = f"_{layer}" if layer else ""
        Wx, b = P["Wxh" + suffix], P["bh" + suffix]
        H = Wx.shape[0] // (2 if cell == "mingru" else 3)
        h, outs = h0[layer], []
        for t, x in enumerate(xs):
            u = (norm(x, norm_kind) if layer else x) @ Wx.T + b
            if cell == "mingru":
                z, h_tilde = torch.sigmoid(u[:, :H]), u[:, H:]
                if activation == "g":
                    h_tilde = g(h_tilde)
                h = (1 - z) * h + z * h_tilde
            else:
                f, i, h_tilde = torch.sigmoid(u[:, :H]), torch.sigmoid(u[:, H:2 * H]), u[:, 2 * H:]
                if activation == "g":
                    h_tilde = g(h_tilde)
                h = f / (f + i) * h + i / (f + i) * h_tilde
            out = h if masks is None else h * torch.as_tensor(masks[layer][t])
            outs.append(x + out if residual and layer else out)
        xs = outs
        last.append(h)
    return [norm(x, norm_kind) for x in xs], last


def reference(cell: str, params: dict, inputs: np.ndarray, targets: np.ndarray, state: tuple, masks,
              **options) -> dict:
    """The loss, its gradient for every parameter and for the carried state, and the last state, by
    sequential_layers and a softmax head, on autograd in float64."""
    V = params["Why"].shape[0]
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    h0 = torch.tensor(state[0], requires_grad=True)                     # (L, B, H)
    xs = [torch.nn.functional.one_hot(torch.as_tensor(inputs[:, t]), V).double() for t in range(inputs.shape[1])]
    top, last = sequential_layers(cell, P, xs, h0, masks, **options)
    logits = torch.stack([x @ P["Why"].T + P["by"] for x in top], dim=1)     # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.as_tensor(targets).reshape(-1))
    grads = torch.autograd.grad(loss, [*P.values(), h0])
    return {"loss": loss.item(), **{k: g.numpy() for k, g in zip(P, grads)}, "h_prev": grads[-1].numpy(),
            "h_last": torch.stack(last).detach().numpy()}


def numpy_results(pb) -> dict:
    loss, cache = numpy_backend.stack_forward(pb.params, pb.spec, pb.inputs, pb.targets, pb.state, pb.masks)
    (h_last,) = cache.state_last
    grads, (dh0,) = numpy_backend.stack_backward(pb.params, pb.spec, cache)
    return {"loss": loss, **grads, "h_prev": dh0, "h_last": h_last}


def torch_results(pb, fused: bool) -> dict:
    W = {k: torch.tensor(v, requires_grad=True) for k, v in pb.params.items()}
    h0 = torch.tensor(pb.state[0], requires_grad=True)
    loss, _, (h_last,) = torch_backend.chunk_loss(
        W, pb.spec, torch_backend.time_major(pb.inputs), torch_backend.time_major(pb.targets), (h0,),
        torch_backend.as_tensors(pb.masks), fused=fused)
    grads = torch.autograd.grad(loss, [*W.values(), h0])
    return {"loss": loss.item(), **{k: g.numpy() for k, g in zip(W, grads)}, "h_prev": grads[-1].numpy(),
            "h_last": h_last.detach().numpy()}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", (1, 2, 3))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dropout", (0.0, 0.4))
def test_both_backends_equal_the_sequential_reference(cell, layers, shape, dropout):
    """Loss, every weight's gradient, the carried state's gradient and the last state, from a non-zero
    carried state: the NumPy backend, the torch loop and the torch scan."""
    pb = random_problem(*shape, cell=cell, num_layers=layers, dropout=dropout, seed=layers)
    assert np.abs(pb.state[0]).min() > 0
    want = reference(cell, pb.params, pb.inputs, pb.targets, pb.state, pb.masks)
    assert want.keys() == {"loss", *pb.params, "h_prev", "h_last"}
    for name, got in (("numpy", numpy_results(pb)), ("torch loop", torch_results(pb, False)),
                      ("torch scan", torch_results(pb, True))):
        assert got.keys() == want.keys(), name
        for k in want:
            assert np.abs(want[k]).max() > 0, k
            assert relative_error(got[k], want[k]) < TOL, (name, k)


OPTIONS = [{"activation": "g"}, {"residual": True}, {"norm": "rms"}, {"norm": "layer"},
           {"activation": "g", "residual": True, "norm": "rms"}, {"activation": "g", "residual": True, "norm": "layer"}]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", (1, 2, 3))
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3]])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "+".join(f"{k}={v}" for k, v in o.items()))
def test_the_papers_options_equal_the_sequential_reference(cell, layers, shape, options):
    """The paper's options (g, the residual path, pre-norm), alone and together, with dropout and a non-zero
    carried state: the NumPy backend, the torch loop and the torch scan, against the reference to 1e-10."""
    pb = random_problem(*shape, cell=cell, num_layers=layers, dropout=0.4, seed=layers, **options)
    want = reference(cell, pb.params, pb.inputs, pb.targets, pb.state, pb.masks,
                     **{("norm_kind" if k == "norm" else k): v for k, v in options.items()})
    plain = reference(cell, pb.params, pb.inputs, pb.targets, pb.state, pb.masks)
    if layers > 1 or "residual" not in options:     # one layer has no residual path: layer 0 reads V one-hot
        assert abs(want["loss"] - plain["loss"]) > 1e-6
    for name, got in (("numpy", numpy_results(pb)), ("torch loop", torch_results(pb, False)),
                      ("torch scan", torch_results(pb, True))):
        for k in want:
            assert relative_error(got[k], want[k]) < TOL, (name, k)


@pytest.mark.parametrize("cell", CELLS)
def test_g_keeps_every_state_positive_from_a_zero_start(cell):
    """With g the candidate is positive, so h_t, a weighted average of h_{t-1} and h~_t, stays positive from
    the zero state, what the paper's log-space scan needs; without g the candidate, and h_t, take either sign."""
    pb = random_problem(4, 9, 6, 7, cell=cell, num_layers=2, activation="g")
    zero = tuple(np.zeros_like(s) for s in pb.state)
    _, cache = numpy_backend.stack_forward(pb.params, pb.spec, pb.inputs, pb.targets, zero)
    assert all(layer.hs[1:].min() > 0 for layer in cache.layers)
    plain = random_problem(4, 9, 6, 7, cell=cell, num_layers=2)
    _, cache = numpy_backend.stack_forward(plain.params, plain.spec, plain.inputs, plain.targets, zero)
    assert all(layer.hs[1:].min() < 0 for layer in cache.layers)


def test_g_is_the_papers_on_both_sides_of_zero():
    """g(x) = x + 1/2 for x >= 0 and sigmoid(x) below, continuous at 0; its slope 1 above, sigmoid' below."""
    u = np.array([[[-30.0, -2.0, -1e-3, 0.0, 1e-3, 3.0]]])
    slope = np.empty_like(u)
    got = u.copy()
    linear_recurrence.g_(got, slope)
    sig = 1 / (1 + np.exp(-u))
    # charrnn's sigmoid_ (by tanh) is exact to absolute, not relative, rounding far below zero
    np.testing.assert_allclose(got, np.where(u >= 0, u + 0.5, sig), rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(slope, np.where(u >= 0, 1.0, sig * (1 - sig)), rtol=1e-12, atol=1e-16)
    t = torch.tensor(u, requires_grad=True)
    linear_recurrence.torch_g(t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), slope, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("cell,blocks", [("mingru", 2), ("minlstm", 3)])
def test_the_cells_have_no_recurrent_weights(cell, blocks):
    """Their gates read x_t alone: Wxh and bh per layer, no Whh (what makes them parallel)."""
    pb = random_problem(2, 3, 4, 6, cell=cell, num_layers=2)
    assert param_shapes(pb.spec) == {"Wxh": (blocks * 4, 6), "Wxh_1": (blocks * 4, 4), "Why": (6, 4),
                                     "bh": (blocks * 4,), "bh_1": (blocks * 4,), "by": (6,)}


@pytest.mark.parametrize("T", (1, 2, 5, 8, 13))
def test_the_scan_equals_the_loop_for_any_sign(T):
    """Negative candidates and a negative carried state, where the paper's log-space scan would need g."""
    gen = torch.Generator().manual_seed(T)
    a = torch.rand(T, 3, 4, generator=gen, dtype=torch.float64)
    b = torch.randn(T, 3, 4, generator=gen, dtype=torch.float64)
    h = -torch.rand(3, 4, generator=gen, dtype=torch.float64)
    loop = torch.stack(torch_parallel.loop(a, b, h))
    assert (b < 0).any() and relative_error(torch_parallel.scan(a, b, h).numpy(), loop.numpy()) < 1e-14


def test_the_numpy_recurrence_backward_carries_a_t_back():
    """linear_recurrence's backward against the rule dh_{t-1} += a_t * dh_t, by hand for T = 3."""
    rng = np.random.default_rng(0)
    a, dout = rng.random((3, 2, 2)), rng.standard_normal((3, 2, 2))
    dh, dh_prev = dout.copy(), np.empty((2, 2))
    linear_recurrence.backward_(a, dh, dh_prev)
    d2 = dout[2]
    d1 = dout[1] + a[2] * d2
    d0 = dout[0] + a[1] * d1
    np.testing.assert_allclose(dh, np.stack([d0, d1, d2]), rtol=1e-15)
    np.testing.assert_allclose(dh_prev, a[0] * d0, rtol=1e-15)


@pytest.mark.parametrize("cell", CELLS)
def test_auto_runs_the_loop_on_the_cpu_and_fused_runs_the_scan(cell):
    """The loop measured faster on the CPU (docs/cells.md); recurrence=fused is the scan, not refused."""
    assert RECORDS[cell].parallel and RECORDS[cell].kernel is None
    assert not torch_parallel.scan_by_default(torch.device("cpu"))
    assert torch_parallel.scan_by_default(torch.device("cuda"))
    pb = random_problem(2, 3, 4, 5, cell=cell)
    adam = AdamConfig(name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    made = {r: TorchBackend(pb.spec, pb.params, StepSettings(adam, recurrence=r), "cpu").fused
            for r in ("auto", "fused", "loop")}
    assert made == {"auto": False, "fused": True, "loop": False}


def test_minlstm_normalises_gates_that_both_underflow():
    """Forget and input pre-activations of -40 and -45: in float32 both sigmoids are 0 (NumPy's, by tanh), and
    f / (f + i) read literally is 0/0. The normalised gates are sigmoid(log f - log i) = sigmoid(5) on both
    backends, the state stays finite, and the backward's gradients too."""
    from charrnn.backends.numpy_layers import minlstm

    H, T, B = 3, 4, 2
    bh = np.array([-40.0] * H + [-45.0] * H + [1.0] * H, np.float32)
    W = {"Wxh": np.zeros((3 * H, 2), np.float32), "bh": bh}
    out, cache = minlstm.forward(W, np.zeros((T, B, 2), np.float32), (np.full((B, H), 2.0, np.float32),))
    expected = 1 / (1 + np.exp(-5.0))
    np.testing.assert_allclose(cache.a, expected, rtol=1e-6)
    np.testing.assert_allclose(out[-1], 1 + expected ** T, rtol=1e-6)  # h_t - 1 = f'^t (h_0 - 1), h~ = 1
    grads, _, (dh0,) = minlstm.backward(np.ones((T, B, H), np.float32), cache)
    assert all(np.isfinite(g).all() for g in grads.values()) and np.isfinite(dh0).all()
    f_norm, b_t = minlstm.torch_coefficients(torch.tensor(np.broadcast_to(bh, (T, B, 3 * H)).copy()))
    np.testing.assert_allclose(f_norm.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(b_t.numpy(), 1 - expected, rtol=1e-5)
    # either side of minlstm.LOW, where f / (f + i) is read off the gates or taken in log space: the same f'
    for u_f, u_i in [(-3.9, -3.95), (-4.1, -5.0), (-5.0, -7.0)]:
        bh = np.array([u_f] * H + [u_i] * H + [1.0] * H, np.float64)
        _, cache = minlstm.forward({"Wxh": np.zeros((3 * H, 2)), "bh": bh}, np.zeros((1, 1, 2)), (np.zeros((1, H)),))
        f, i = 1 / (1 + np.exp(-u_f)), 1 / (1 + np.exp(-u_i))
        np.testing.assert_allclose(cache.a, f / (f + i), rtol=1e-13)
