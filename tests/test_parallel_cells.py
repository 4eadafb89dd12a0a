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


def sequential_layers(cell: str, P: dict, xs: list, h0, masks=None) -> tuple[list, list]:
    """The paper's equations one step at a time: xs T inputs (B, In) of layer 0, h0 (L, B, H) ->
    the top layer's T outputs (after its dropout mask) and each layer's last h."""
    last = []
    for layer in range(len(h0)):
        suffix = f"_{layer}" if layer else ""
        Wx, b = P["Wxh" + suffix], P["bh" + suffix]
        H = Wx.shape[0] // (2 if cell == "mingru" else 3)
        h, outs = h0[layer], []
        for t, x in enumerate(xs):
            u = x @ Wx.T + b
            if cell == "mingru":
                z, h_tilde = torch.sigmoid(u[:, :H]), u[:, H:]
                h = (1 - z) * h + z * h_tilde
            else:
                f, i, h_tilde = torch.sigmoid(u[:, :H]), torch.sigmoid(u[:, H:2 * H]), u[:, 2 * H:]
                h = f / (f + i) * h + i / (f + i) * h_tilde
            outs.append(h if masks is None else h * torch.as_tensor(masks[layer][t]))
        xs = outs
        last.append(h)
    return xs, last


def reference(cell: str, params: dict, inputs: np.ndarray, targets: np.ndarray, state: tuple, masks) -> dict:
    """The loss, its gradient for every parameter and for the carried state, and the last state, by
    sequential_layers and a softmax head, on autograd in float64."""
    V = params["Why"].shape[0]
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    h0 = torch.tensor(state[0], requires_grad=True)                     # (L, B, H)
    xs = [torch.nn.functional.one_hot(torch.as_tensor(inputs[:, t]), V).double() for t in range(inputs.shape[1])]
    top, last = sequential_layers(cell, P, xs, h0, masks)
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
