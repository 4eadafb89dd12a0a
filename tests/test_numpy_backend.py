import numpy as np
import pytest

from charrnn.backends.interface import StepSettings
from charrnn.backends import numpy_backend
from charrnn.backends.numpy_backend import (NumpyBackend, loss_and_grads, rnn_loss_and_grads, stack_backward,
                                            stack_forward, step_logits)
from charrnn.backends.numpy_layers import projection
from charrnn.optim import AdagradConfig, AdamConfig, SGDConfig
from charrnn.gradcheck.problem import random_problem, relative_error
from charrnn.gradcheck.reference import finite_differences, numpy_bptt
from charrnn.cells import CELLS
from charrnn.model import model_spec


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,H,V,layers,dropout", [(1, 5, 4, 6, 1, 0.0), (3, 4, 3, 5, 2, 0.4)])
def test_gradients_match_finite_differences(cell, B, T, H, V, layers, dropout):
    pb = random_problem(B, T, H, V, cell=cell, num_layers=layers, dropout=dropout)
    ours, _, _ = numpy_bptt(pb)
    numeric = finite_differences(pb)
    assert ours.keys() == numeric.keys() == {*pb.params, *pb.state_keys}
    for name in numeric:
        assert relative_error(ours[name], numeric[name]) < 1e-6, name


def test_loss_and_grads_returns_last_state_and_mean_loss():
    pb = random_problem(2, 4, 3, 5)
    spec = model_spec("rnn", 5, 3)
    h_prev = pb.state[0][0]
    loss, grads, h_last = rnn_loss_and_grads(pb.params, pb.inputs, pb.targets, h_prev)
    state, nll = pb.state, []
    for t in range(pb.inputs.shape[1]):
        logits, state = step_logits(pb.params, spec, pb.inputs[:, t], state)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nll.extend(-logp[np.arange(2), pb.targets[:, t]])
    assert np.allclose(h_last, state[0][0], rtol=0, atol=1e-14)
    assert loss == pytest.approx(np.mean(nll), rel=1e-13)
    assert set(grads) == set(pb.params) == {"Wxh", "Whh", "Why", "bh", "by"}
    assert all(grads[k].shape == pb.params[k].shape for k in pb.params)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_stays_float32(cell):
    pb = random_problem(2, 6, 8, 7, dtype="float32", cell=cell, num_layers=2, dropout=0.2)
    spec = model_spec(cell, 7, 8, 2)
    _, grads, state_last = loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, spec=spec, masks=pb.masks)
    assert all(s.dtype == np.float32 for s in state_last)
    assert all(g.dtype == np.float32 for g in grads.values())
    as64 = lambda arrays: tuple(a.astype(np.float64) for a in arrays)  # noqa: E731
    params64 = {k: v.astype(np.float64) for k, v in pb.params.items()}
    _, grads64, _ = loss_and_grads(params64, pb.inputs, pb.targets, as64(pb.state), spec=spec, masks=as64(pb.masks))
    for k in pb.params:
        assert relative_error(grads[k], grads64[k]) < 1e-5


@pytest.mark.parametrize("cell", CELLS)
def test_sum_reduction_scales_gradients_by_number_of_predictions(cell):
    pb = random_problem(2, 5, 4, 6, cell=cell)
    spec = model_spec(cell, 6, 4)
    _, cache = stack_forward(pb.params, spec, pb.inputs, pb.targets, pb.state)
    mean_grads, _ = stack_backward(pb.params, spec, cache)
    _, cache = stack_forward(pb.params, spec, pb.inputs, pb.targets, pb.state)
    sum_grads, _ = stack_backward(pb.params, spec, cache, loss_scale=pb.inputs.size)
    for k in pb.params:
        assert np.allclose(sum_grads[k], mean_grads[k] * pb.inputs.size, rtol=1e-12, atol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_scatter_path_for_large_vocab_matches_one_hot_path(monkeypatch, cell):
    pb = random_problem(3, 6, 4, 20, cell=cell)
    spec = model_spec(cell, 20, 4)
    _, one_hot_grads, _ = loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, spec=spec)
    monkeypatch.setattr(projection, "ONE_HOT_MAX_VOCAB", 10)
    _, scatter_grads, _ = loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, spec=spec)
    assert np.allclose(scatter_grads["Wxh"], one_hot_grads["Wxh"], rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("cell", CELLS)
def test_buffer_reuse_gives_same_result_as_fresh_buffers(cell):
    pb = random_problem(2, 5, 4, 6, cell=cell, num_layers=2, dropout=0.3)
    spec = model_spec(cell, 6, 4, 2)
    expected = loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, spec=spec, masks=pb.masks)
    _, cache = stack_forward(pb.params, spec, pb.inputs[:, :3], pb.targets[:, :3], pb.state)
    _, cache = stack_forward(pb.params, spec, pb.inputs, pb.targets, pb.state, pb.masks, cache)
    loss, cache = stack_forward(pb.params, spec, pb.inputs, pb.targets, pb.state, pb.masks, cache)
    grads, _ = stack_backward(pb.params, spec, cache)
    assert loss == expected[0]
    for k in pb.params:
        assert np.array_equal(grads[k], expected[1][k])


@pytest.mark.parametrize("bad", [-1, 6])
def test_out_of_range_ids_are_refused_not_clamped(bad):
    pb = random_problem(2, 3, 4, 6)
    pb.inputs[1, 2] = bad
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        rnn_loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state[0][0])


@pytest.mark.parametrize("optim_cfg", [
    AdagradConfig(name="adagrad", lr=0.1, eps=1e-10),
    SGDConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True),
    AdamConfig(name="adam", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8),
], ids=lambda c: c.name)
@pytest.mark.parametrize("clip_mode,cell", [("norm", "rnn"), ("value", "lstm"), ("none", "gru")])
def test_float32_training_stays_float32_and_reuses_its_buffers(optim_cfg, clip_mode, cell):
    pb = random_problem(3, 5, 8, 7, dtype="float32", cell=cell, num_layers=2, dropout=0.2)
    backend = NumpyBackend(model_spec(cell, 7, 8, 2), pb.params, StepSettings(optim_cfg, clip_mode, 0.01))
    state = backend.train_step(pb.inputs, pb.targets, pb.state, optim_cfg.lr, pb.masks).state_last
    def buffers():
        return [*backend.cache.layers, *backend.cache.dropped, backend.cache.head.probs]
    first = buffers()
    state = backend.train_step(pb.inputs, pb.targets, state, optim_cfg.lr, pb.masks).state_last
    # the (T, B, ...) buffers are allocated once, not per step
    assert all(a is b for a, b in zip(first, buffers(), strict=True))
    assert all(s.dtype == np.float32 for s in state)
    assert all(p.dtype == np.float32 for p in backend.params.values())
    assert all(v.dtype == np.float32 for k, v in backend.export_optimizer_state().items() if k != "step")


def test_dh_t_is_the_gradient_of_the_rest_of_the_chunk_with_respect_to_h_t():
    """h_t reaches the loss through y_t and through every later step: nudge h_t, run the chunk on from
    it, and the mean loss changes by dL/dh_t (central finite differences)."""
    pb = random_problem(2, 5, 4, 6)
    spec = model_spec("rnn", 6, 4)
    B, T = pb.inputs.shape
    _, cache = stack_forward(pb.params, spec, pb.inputs, pb.targets, pb.state)
    hs = cache.layers[0].hs[1:].copy()             # (T, B, H) h_t
    traces = [{"h": np.empty_like(hs)}]
    stack_backward(pb.params, spec, cache, traces=traces)
    dh = traces[0]["h"]

    def loss_from(t, h):
        """The loss of outputs t..T-1 with h_t = h, as a share of the mean over all B*T."""
        total = 0.0
        for s in range(t, T):
            if s > t:
                _, (h,) = step_logits(pb.params, spec, pb.inputs[:, s], (h,))
            logits = h[0] @ pb.params["Why"].T + pb.params["by"]
            logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            total -= logp[np.arange(B), pb.targets[:, s]].sum()
        return total / (B * T)

    eps = 1e-6
    for t in range(T):
        numeric = np.zeros_like(hs[t])
        for i in np.ndindex(hs[t].shape):
            up, down = hs[t].copy(), hs[t].copy()
            up[i] += eps
            down[i] -= eps
            numeric[i] = (loss_from(t, up[None]) - loss_from(t, down[None])) / (2 * eps)
        assert relative_error(dh[t], numeric) < 1e-7, t
    sgd = SGDConfig(name="sgd", lr=0.1, momentum=0.0, nesterov=False)
    shown = NumpyBackend(spec, pb.params, StepSettings(sgd, "none", 1.0)).gradients(pb.inputs, pb.targets, pb.state)
    np.testing.assert_allclose(shown.dh_norms, np.linalg.norm(dh, axis=2).mean(axis=1)[None], rtol=1e-14)


def test_dropout_zeroes_what_it_drops_and_changes_nothing_at_evaluation():
    pb = random_problem(2, 5, 4, 6, cell="lstm", num_layers=2, dropout=0.5)
    spec = model_spec("lstm", 6, 4, 2)
    loss, cache = stack_forward(pb.params, spec, pb.inputs, pb.targets, pb.state, pb.masks)
    for layer, mask in enumerate(pb.masks):
        assert set(np.unique(mask)) == {0.0, 2.0}
        np.testing.assert_array_equal(cache.dropped[layer], cache.layers[layer].hs[1:] * mask)
    assert cache.head.h is cache.dropped[-1]
    plain, _ = stack_forward(pb.params, spec, pb.inputs, pb.targets, pb.state)
    assert plain != loss
    ones = tuple(np.ones_like(m) for m in pb.masks)
    assert stack_forward(pb.params, spec, pb.inputs, pb.targets, pb.state, ones)[0] == pytest.approx(plain, rel=1e-15)
    sgd = StepSettings(SGDConfig("sgd", 0.1, 0.0, False), "none", 1.0)
    assert NumpyBackend(spec, pb.params, sgd).evaluate(pb.inputs, pb.targets, pb.state)[0] == plain
