import numpy as np
import pytest
import torch

from charrnn.backends.interface import StepSettings
from charrnn.backends.numpy_backend import NumpyBackend
from charrnn.devices import resolve_device
from charrnn.backends.torch_backend import TorchBackend, loss_and_grads
from charrnn.optim import AdamConfig
from charrnn.errors import UserError
from charrnn.gradcheck.problem import random_problem
from charrnn.cells import CELLS
from charrnn.model import model_spec

ADAM = AdamConfig(name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)


def problem(B, T, H, V, dtype="float64", cell="rnn", num_layers=1):
    """(spec, params, inputs, targets, state) of a small random problem."""
    pb = random_problem(B, T, H, V, dtype, cell=cell, num_layers=num_layers)
    return model_spec(cell, V, H, num_layers), pb.params, pb.inputs, pb.targets, pb.state


def make(spec, params, clip_mode="norm", grad_clip=5.0):
    return TorchBackend(spec, params, StepSettings(ADAM, clip_mode, grad_clip), "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_auto_device_is_the_cpu_and_asking_for_cuda_without_one_is_a_user_error():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="backend.device=cuda but torch sees no CUDA device"):
        resolve_device("cuda")


def test_float32_stays_float32():
    spec, params, inputs, targets, state = problem(2, 5, 6, 7, dtype="float32", cell="lstm", num_layers=2)
    _, grads, state_last = loss_and_grads(params, inputs, targets, state, spec=spec)
    assert all(s.dtype == np.float32 for s in state_last) and all(g.dtype == np.float32 for g in grads.values())
    backend = make(spec, params)
    result = backend.train_step(inputs, targets, state, 0.01)
    assert all(s.dtype == np.float32 for s in result.state_last) and isinstance(result.loss, float)
    assert all(v.dtype == np.float32 for v in backend.export_params().values())
    assert backend.export_optimizer_state()["exp_avg/Whh"].dtype == np.float32


@pytest.mark.parametrize("cell", CELLS)
def test_evaluate_and_step_logits_match_numpy(cell):
    spec, params, inputs, targets, state = problem(3, 6, 5, 7, cell=cell, num_layers=2)
    ours, theirs = NumpyBackend(spec, params, StepSettings(ADAM, "norm", 5.0)), make(spec, params)
    loss, state_last = ours.evaluate(inputs, targets, state)
    t_loss, t_state_last = theirs.evaluate(inputs, targets, state)
    assert t_loss == pytest.approx(loss, rel=1e-12)
    for a, b in zip(state_last, t_state_last, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    one = tuple(s[:, :1] for s in state)
    (logits, new), (t_logits, t_new) = ours.step_logits(inputs[:1, 0], one), theirs.step_logits(inputs[:1, 0], one)
    assert t_logits.shape == logits.shape == (1, 7)
    np.testing.assert_allclose(t_logits, logits, rtol=1e-12, atol=1e-15)
    for a, b in zip(new, t_new, strict=True):
        assert a.shape == b.shape == (2, 1, 5)
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("clip_mode,grad_clip", [("norm", 0.01), ("value", 1e-4), ("none", 1e-4)])
def test_grad_norms_are_reported_before_and_after_clipping(clip_mode, grad_clip):
    spec, params, inputs, targets, state = problem(3, 6, 5, 7)
    result = make(spec, params, clip_mode, grad_clip).train_step(inputs, targets, state, 0.01)
    assert result.grad_norm > 0.1
    if clip_mode == "norm":
        assert result.clipped_grad_norm == pytest.approx(grad_clip, rel=1e-4)
    elif clip_mode == "value":
        for k in params:
            assert result.clipped_grad_norms[k] <= grad_clip * np.sqrt(params[k].size)
    else:
        assert result.clipped_grad_norms == result.grad_norms


@pytest.mark.parametrize("backend_cls", [NumpyBackend, TorchBackend])
def test_backends_train_on_copies_of_the_arrays_they_are_given(backend_cls):
    spec, params, inputs, targets, h_prev = problem(2, 4, 5, 6, cell="gru")
    backend = backend_cls(spec, params, StepSettings(ADAM, "norm", 5.0), "cpu")
    backend.train_step(inputs, targets, h_prev, 0.01)
    state = backend.export_optimizer_state()
    given = {k: v.copy() for k, v in {**params, **state, "h": h_prev[0]}.items()}
    backend.load_optimizer_state(state)
    backend.train_step(inputs, targets, h_prev, 0.01)
    assert np.array_equal(h_prev[0], given.pop("h"))
    for k, v in {**params, **state}.items():
        np.testing.assert_array_equal(v, given[k], err_msg=k)


def nan_in_the_state(params, state):
    h_prev = state[0].copy()
    h_prev[0, 1, 2] = np.nan     # the loss is NaN
    return params, (h_prev,)


def overflowing_logits(params, h_prev):
    return {**params, "Why": params["Why"] * np.float32(1e38)}, h_prev   # finite loss, infinite gradient


@pytest.mark.parametrize("poison", [nan_in_the_state, overflowing_logits])
@pytest.mark.parametrize("backend_cls", [NumpyBackend, TorchBackend])
def test_a_nonfinite_step_leaves_weights_and_optimizer_state_untouched(backend_cls, poison):
    spec, params, inputs, targets, h_prev = problem(2, 4, 5, 6, dtype="float32")
    params, bad_h = poison(params, h_prev)
    backend = backend_cls(spec, params, StepSettings(ADAM, "none", 5.0), "cpu")
    backend.load_optimizer_state({**backend.export_optimizer_state(), "step": np.array(3)})
    weights, state = backend.export_params(), backend.export_optimizer_state()
    result = backend.train_step(inputs, targets, bad_h, 0.01)
    assert result.skipped and not (np.isfinite(result.loss) and np.isfinite(result.grad_norm))
    for k, v in {**backend.export_params(), **backend.export_optimizer_state()}.items():
        np.testing.assert_array_equal(v, {**weights, **state}[k], err_msg=k)
    # a finite step after it updates as usual
    if poison is nan_in_the_state:
        assert not backend.train_step(inputs, targets, h_prev, 0.01).skipped
        assert not np.array_equal(backend.export_params()["Whh"], weights["Whh"])
