import numpy as np
import pytest

from charrnn.backends import numpy_backend
from charrnn.backends.numpy_backend import NumpyBackend, loss_and_grads, rnn_backward, rnn_forward, rnn_step
from charrnn.gradcheck import finite_differences, random_problem, relative_error
from charrnn.config import AdagradConfig, AdamConfig, SGDConfig
from charrnn.model import PARAM_NAMES


@pytest.mark.parametrize("B,T,H,V", [(1, 5, 4, 6), (3, 7, 5, 9)])
def test_gradients_match_finite_differences(B, T, H, V):
    params, inputs, targets, h_prev = random_problem(B, T, H, V)
    loss, cache = rnn_forward(params, inputs, targets, h_prev)
    grads, dh_prev = rnn_backward(params, cache)
    numeric = finite_differences(params, inputs, targets, h_prev)
    for name in PARAM_NAMES:
        assert relative_error(grads[name], numeric[name]) < 1e-7, name
    assert relative_error(dh_prev, numeric["h_prev"]) < 1e-7


def test_loss_and_grads_returns_last_state_and_mean_loss():
    params, inputs, targets, h_prev = random_problem(2, 4, 3, 5)
    loss, grads, h_last = loss_and_grads(params, inputs, targets, h_prev)
    h, nll = h_prev, []
    for t in range(inputs.shape[1]):
        logits, h = rnn_step(params, inputs[:, t], h)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nll.extend(-logp[np.arange(len(h)), targets[:, t]])
    assert np.allclose(h_last, h, rtol=0, atol=1e-14)
    assert loss == pytest.approx(np.mean(nll), rel=1e-13)
    assert set(grads) == set(PARAM_NAMES)
    assert all(grads[k].shape == params[k].shape for k in PARAM_NAMES)


def test_float32_stays_float32():
    params, inputs, targets, h_prev = random_problem(2, 6, 8, 7, dtype="float32")
    _, grads, h_last = loss_and_grads(params, inputs, targets, h_prev)
    assert h_last.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    params64 = {k: v.astype(np.float64) for k, v in params.items()}
    _, grads64, _ = loss_and_grads(params64, inputs, targets, h_prev.astype(np.float64))
    for k in PARAM_NAMES:
        assert relative_error(grads[k], grads64[k]) < 1e-5


def test_sum_reduction_scales_gradients_by_number_of_predictions():
    params, inputs, targets, h_prev = random_problem(2, 5, 4, 6)
    _, cache = rnn_forward(params, inputs, targets, h_prev)
    mean_grads, _ = rnn_backward(params, cache)
    _, cache = rnn_forward(params, inputs, targets, h_prev)
    sum_grads, _ = rnn_backward(params, cache, loss_scale=inputs.size)
    for k in PARAM_NAMES:
        assert np.allclose(sum_grads[k], mean_grads[k] * inputs.size, rtol=1e-12, atol=0)


def test_scatter_path_for_large_vocab_matches_one_hot_path(monkeypatch):
    params, inputs, targets, h_prev = random_problem(3, 6, 4, 20)
    _, one_hot_grads, _ = loss_and_grads(params, inputs, targets, h_prev)
    monkeypatch.setattr(numpy_backend, "ONE_HOT_MAX_VOCAB", 10)
    _, scatter_grads, _ = loss_and_grads(params, inputs, targets, h_prev)
    assert np.allclose(scatter_grads["Wxh"], one_hot_grads["Wxh"], rtol=1e-13, atol=1e-16)


def test_workspace_reuse_gives_same_result_as_fresh_buffers():
    params, inputs, targets, h_prev = random_problem(2, 5, 4, 6)
    expected = loss_and_grads(params, inputs, targets, h_prev)
    _, cache = rnn_forward(params, inputs[:, :3], targets[:, :3], h_prev)
    loss, cache = rnn_forward(params, inputs, targets, h_prev, cache.ws)
    grads, _ = rnn_backward(params, cache)
    assert loss == expected[0]
    for k in PARAM_NAMES:
        assert np.array_equal(grads[k], expected[1][k])


@pytest.mark.parametrize("bad", [-1, 6])
def test_out_of_range_ids_are_refused_not_clamped(bad):
    params, inputs, targets, h_prev = random_problem(2, 3, 4, 6)
    inputs[1, 2] = bad
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        loss_and_grads(params, inputs, targets, h_prev)


@pytest.mark.parametrize("optim_cfg", [
    AdagradConfig(name="adagrad", lr=0.1, eps=1e-10),
    SGDConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True),
    AdamConfig(name="adam", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8),
], ids=lambda c: c.name)
@pytest.mark.parametrize("clip_mode", ["norm", "value", "none"])
def test_float32_training_stays_float32_and_reuses_its_buffers(optim_cfg, clip_mode):
    params, inputs, targets, h_prev = random_problem(3, 5, 8, 7, dtype="float32")
    backend = NumpyBackend(params, optim_cfg, clip_mode, 0.01, "mean")
    h = backend.train_step(inputs, targets, h_prev, optim_cfg.lr).h_last
    workspace = backend.ws
    h = backend.train_step(inputs, targets, h, optim_cfg.lr).h_last
    assert backend.ws is workspace  # the (T, B, H) buffers are allocated once, not per step
    assert h.dtype == np.float32
    assert all(p.dtype == np.float32 for p in backend.params.values())
    assert all(v.dtype == np.float32 for k, v in backend.export_optimizer_state().items() if k != "step")


def test_dh_t_is_the_gradient_of_the_rest_of_the_chunk_with_respect_to_h_t():
    """h_t reaches the loss through y_t and through every later step: nudge h_t, run the chunk on from
    it, and the mean loss changes by dL/dh_t (central finite differences)."""
    params, inputs, targets, h_prev = random_problem(2, 5, 4, 6)
    B, T = inputs.shape
    _, cache = rnn_forward(params, inputs, targets, h_prev)
    hs = cache.ws.hs[1:].copy()                    # (T, B, H) h_t
    dh = np.empty_like(hs)
    rnn_backward(params, cache, dh_out=dh)

    def loss_from(t, h):
        """The loss of outputs t..T-1 with h_t = h, as a share of the mean over all B*T."""
        total = 0.0
        for s in range(t, T):
            if s > t:
                _, h = rnn_step(params, inputs[:, s], h)
            logits = h @ params["Why"].T + params["by"]
            logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            total -= logp[np.arange(B), targets[:, s]].sum()
        return total / (B * T)

    eps = 1e-6
    for t in range(T):
        numeric = np.zeros_like(hs[t])
        for i in np.ndindex(hs[t].shape):
            up, down = hs[t].copy(), hs[t].copy()
            up[i] += eps
            down[i] -= eps
            numeric[i] = (loss_from(t, up) - loss_from(t, down)) / (2 * eps)
        assert relative_error(dh[t], numeric) < 1e-7, t
    sgd = SGDConfig(name="sgd", lr=0.1, momentum=0.0, nesterov=False)
    shown = NumpyBackend(params, sgd, "none", 1.0, "mean").gradients(inputs, targets, h_prev)
    np.testing.assert_allclose(shown.dh_norms, np.linalg.norm(dh, axis=2).mean(axis=1), rtol=1e-14)
