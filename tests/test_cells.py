"""A cell is its record (charrnn.cells): a toy cell defined here and nowhere else trains on both backends,
passes gradcheck, and appears in the explorer, with no edit outside this file.

The toy is a gated unit, one gate z keeping the old state and a tanh candidate c:

    a_t = Wxh x_t + bh + Whh h_{t-1}     (B, 2H), blocks z, c
    z = sigmoid(a_z),  c = tanh(a_c)
    h_t = z * h_{t-1} + (1 - z) * c  = c + z * (h_{t-1} - c)

It has no stock torch.nn twin and no fused kernel: the torch backend runs its loop.
"""

from dataclasses import dataclass

import numpy as np
import pytest

import charrnn
from charrnn.backends import StepSettings, numpy_backend, torch_backend
from charrnn.backends.numpy_layers.projection import one_hot_buffer, project, project_backward
from charrnn.backends.torch_backend import TorchBackend
from charrnn.cells import CELLS, H, Cell, Quantity, with_kernel, with_twin
from charrnn.errors import UserError
from charrnn.explore.trace import trace
from charrnn.gradcheck import main as gradcheck
from charrnn.gradcheck.problem import random_problem, relative_error
from charrnn.optim import AdamConfig
from charrnn.training import loop as trainer
from tests.conftest import TINY, make_config

GRADIENT_TERMS = {"Wxh": ("gates", None, "da_t x_t^T"), "Whh": ("gates", None, "da_t h_{t-1}^T"),
                  "bh": ("gates", None, "da_t")}


@dataclass
class ToyCache:
    W: dict
    x: np.ndarray        # (T, B) ids or (T, B, In)
    hs: np.ndarray       # (T+1, B, H) hs[0] = h_prev
    gates: np.ndarray    # (T, B, 2H) z, c after forward; da_t after backward
    dh: np.ndarray       # (T, B, H) dh_t
    one_hot: np.ndarray
    dx: np.ndarray

    @property
    def state_last(self) -> tuple[np.ndarray]:
        return (self.hs[-1],)


def forward(W, x, state0, reuse=None):
    T, B = x.shape[:2]
    G, In = W["Wxh"].shape
    H, dtype = G // 2, W["Wxh"].dtype
    cache = ToyCache(W, x, np.empty((T + 1, B, H), dtype), np.empty((T, B, G), dtype), np.empty((T, B, H), dtype),
                     one_hot_buffer(x, In, dtype), np.empty((0,) if x.ndim == 2 else x.shape, dtype))
    cache.hs[0] = state0[0]
    project(W["Wxh"], W["bh"], x, out=cache.gates)
    for t in range(T):
        a = cache.gates[t]
        a += cache.hs[t] @ W["Whh"].T
        a[:, :H] = 1 / (1 + np.exp(-a[:, :H]))
        a[:, H:] = np.tanh(a[:, H:])
        z, c = a[:, :H], a[:, H:]
        cache.hs[t + 1] = c + z * (cache.hs[t] - c)
    return cache.hs[1:], cache


def backward(dout, cache, trace=None):
    T, B, H = cache.dh.shape
    if dout is not cache.dh:
        cache.dh[...] = dout
    dh_next = np.zeros((B, H), cache.dh.dtype)
    for t in reversed(range(T)):
        dh = cache.dh[t]
        dh += dh_next
        if trace:
            trace["h"][t] = dh
        z, c = cache.gates[t, :, :H].copy(), cache.gates[t, :, H:].copy()
        cache.gates[t, :, :H] = dh * (cache.hs[t] - c) * z * (1 - z)     # da_z
        cache.gates[t, :, H:] = dh * (1 - z) * (1 - c * c)                # da_c
        dh_next = z * dh + cache.gates[t] @ cache.W["Whh"]
    da = cache.gates.reshape(T * B, 2 * H)
    dWhh = da.T @ cache.hs[:-1].reshape(T * B, H)
    dWxh, dbh = project_backward(da, cache.x, cache.W["Wxh"], cache.one_hot, cache.dx)
    return {"Wxh": dWxh, "Whh": dWhh, "bh": dbh}, None if cache.x.ndim == 2 else cache.dx, (dh_next,)


def torch_step(W, xw_t, state):
    z, c = xw_t.addmm(state[0], W["WhhT"]).chunk(2, dim=1)
    z, c = z.sigmoid(), c.tanh()
    return (c + z * (state[0] - c),)


TOY = Cell("toy", __name__, gates=("z", "c"), state=("h",),
           quantities=(H, Quantity("z", "z (keep gate)", bounds=(0, 1)), Quantity("c", "c (candidate)")))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(CELLS, "toy", TOY)
    return TOY


def test_the_toy_is_no_stock_cell_and_the_tests_that_need_one_leave_it_out(toy):
    assert "toy" in CELLS and "toy" not in with_twin() and "toy" not in with_kernel()


def test_the_toy_computes_the_same_on_both_backends(toy):
    pb = random_problem(3, 5, 4, 6, cell="toy", num_layers=2, dropout=0.3)
    loss, grads, state = numpy_backend.loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, pb.spec, pb.masks)
    t_loss, t_grads, t_state = torch_backend.loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, pb.spec,
                                                            pb.masks)
    assert set(grads) == set(pb.params) == {"Wxh", "Whh", "bh", "Wxh_1", "Whh_1", "bh_1", "Why", "by"}
    assert pb.params["Wxh"].shape == (8, 6)
    assert t_loss == pytest.approx(loss, rel=1e-12)
    for k in grads:
        assert relative_error(t_grads[k], grads[k]) < 1e-10, k
    assert relative_error(t_state[0], state[0]) < 1e-10


def test_the_toy_trains_on_both_backends_through_the_trainer_to_the_same_numbers(toy, corpus, tmp_path):
    """The whole trainer, the checkpoint it writes and the explorer's page: a run of the toy is a run like
    any other, and both backends' runs end with the same validation loss."""
    results = {}
    for backend in ("numpy", "torch"):
        cfg = make_config([f"data.path={corpus}", *TINY, "model.cell=toy", "model.dtype=float64",
                           f"backend={backend}", "backend.device=cpu", "train.max_iters=40", "optim=adam",
                           "optim.lr=0.03"])
        results[backend] = trainer.train(cfg, tmp_path / backend)
    assert results["numpy"].val_loss < np.log(28) - 0.5                      # 28 symbols in the corpus
    assert results["torch"].val_loss == pytest.approx(results["numpy"].val_loss, rel=1e-9)
    model = charrnn.load(tmp_path / "torch")
    assert model.config.model.cell == "toy" and len(model.sample(length=20)) == 20
    page = model.explore("the quick brown fox", tmp_path / "toy.html", lookback_positions=10)
    text = page.read_text(encoding="utf-8")
    assert '"z":"z (keep gate)"' in text and '"c":"c (candidate)"' in text


def test_the_torch_backend_runs_the_loop_for_a_cell_without_a_kernel(toy):
    pb = random_problem(2, 3, 4, 5, cell="toy")
    adam = AdamConfig(name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    assert not TorchBackend(pb.spec, pb.params, StepSettings(adam, recurrence="auto"), "cpu").fused
    with pytest.raises(UserError, match="model.cell=toy has no fused kernel; use backend.recurrence=loop"):
        TorchBackend(pb.spec, pb.params, StepSettings(adam, recurrence="fused"), "cpu")


def test_the_toy_passes_gradcheck_and_a_broken_toy_fails_it(toy, capsys, monkeypatch):
    assert gradcheck(["--cell", "toy", "--layers", "2", "--per-step", "Whh"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gradcheck toy x2") and out.rstrip().endswith("PASS") and "da_t h_{t-1}^T" in out

    real = backward

    def forgets_the_gate_on_the_carried_state(dout, cache, trace=None):
        grads, dx, (dh_next,) = real(dout, cache, trace)
        return grads, dx, (dh_next * 0.5,)

    monkeypatch.setattr(f"{__name__}.backward", forgets_the_gate_on_the_carried_state)
    assert gradcheck(["--cell", "toy"]) == 1
    assert capsys.readouterr().out.rstrip().endswith("FAIL")


def test_the_explorer_traces_the_toys_gates(toy, tmp_path):
    pb = random_problem(1, 1, 4, 6, cell="toy", num_layers=2)
    ids = np.array([0, 3, 1, 5, 2, 2, 4])
    traced = trace(pb.params, pb.spec, ids)
    assert [set(layer) for layer in traced.layers] == [{"h", "z", "c"}] * 2
    # the traced h follows the gate equation from the quantities beside it, step by step
    bottom = traced.layers[0]
    h_prev = np.vstack([np.zeros((1, 4)), bottom["h"][:-1]])
    np.testing.assert_allclose(bottom["h"], bottom["c"] + bottom["z"] * (h_prev - bottom["c"]), rtol=1e-12)
    assert ((0 < bottom["z"]) & (bottom["z"] < 1)).all()
    # and matches the backend's own forward
    logits, _ = numpy_backend.step_logits(pb.params, pb.spec, ids[:1], tuple(np.zeros((2, 1, 4)) for _ in "h"))
    np.testing.assert_allclose(traced.logits[0], logits[0], rtol=1e-12)
