"""The torch backend computes what the hand-written NumPy backend computes, to round-off.

Every tolerance is relative to the values compared, and the tests that set one also show that a
disagreement just above it is caught.
"""

import numpy as np
import pytest

from charrnn.training import loop as trainer
from charrnn.backends import StepSettings, make_backend, numpy_backend, torch_backend
from charrnn.backends.numpy_backend import NumpyBackend
from charrnn.backends.torch_backend import TorchBackend
from charrnn.data.batching import StreamBatcher
from charrnn.checkpoint import load_checkpoint
from charrnn.optim import AdagradConfig, AdamConfig, SGDConfig
from charrnn.data import load_ids
from charrnn.gradcheck.problem import random_problem, relative_error
from charrnn.model import dropout_masks
from charrnn.cells import CELLS
from charrnn.model import init_params, model_spec, spec_of, zero_state
from tests.conftest import TINY, make_config

GRAD_TOL = 1e-10
LOSS_TOL = {"float64": 1e-9, "float32": 1e-4}


def test_the_one_layer_rnn_contract_of_min_char_rnn_keeps_working():
    """rnn_loss_and_grads(params, inputs, targets, h_prev) with h_prev (B, H): no spec, no state tuple."""
    pb = random_problem(3, 9, 8, 11)
    h_prev = pb.state[0][0]
    assert np.abs(h_prev).min() > 0          # a carried state, not zeros
    loss, grads, h_last = numpy_backend.rnn_loss_and_grads(pb.params, pb.inputs, pb.targets, h_prev)
    t_loss, t_grads, t_h_last = torch_backend.rnn_loss_and_grads(pb.params, pb.inputs, pb.targets, h_prev)
    assert set(grads) == set(t_grads) == {"Wxh", "Whh", "Why", "bh", "by"} and h_last.shape == (3, 8)
    assert t_loss == pytest.approx(loss, rel=1e-12)
    for k in grads:
        assert relative_error(t_grads[k], grads[k]) < GRAD_TOL, k
    assert relative_error(t_h_last, h_last) < GRAD_TOL
    spec_loss, spec_grads, (spec_h_last,) = numpy_backend.loss_and_grads(
        pb.params, pb.inputs, pb.targets, pb.state, spec=model_spec("rnn", 11, 8, 1))
    assert spec_loss == loss and np.array_equal(spec_h_last[0], h_last)


CASES = [(cell, layers, dropout, (B, T)) for cell in CELLS for layers in (1, 2, 3) for dropout in (0.0, 0.4)
         for B, T in [(3, 5)]] + [(cell, 2, 0.4, BT) for cell in CELLS for BT in [(1, 1), (1, 4), (3, 1)]]


@pytest.mark.parametrize("cell,layers,dropout,BT", CASES)
def test_loss_grads_and_state_agree_in_float64(cell, layers, dropout, BT):
    pb = random_problem(*BT, 4, 6, cell=cell, num_layers=layers, dropout=dropout)
    assert all(np.abs(s).min() > 0 for s in pb.state)          # a carried state, not zeros
    assert (pb.masks is None) == (dropout == 0) and (pb.masks is None or (pb.masks[0] == 0).any())
    spec = model_spec(cell, 6, 4, layers)
    loss, grads, state_last = numpy_backend.loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, spec=spec,
                                                           masks=pb.masks)
    t_loss, t_grads, t_state_last = torch_backend.loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state,
                                                                 spec=spec, masks=pb.masks)
    assert t_loss == pytest.approx(loss, rel=1e-12)
    assert set(grads) == set(t_grads) == set(pb.params)
    for k in pb.params:
        assert t_grads[k].dtype == np.float64 and t_grads[k].shape == pb.params[k].shape
        assert relative_error(t_grads[k], grads[k]) < GRAD_TOL, k
    assert len(state_last) == len(t_state_last) == len(spec.state_names)
    for ours, theirs in zip(state_last, t_state_last):
        assert ours.shape == (layers, BT[0], 4)
        for layer in range(layers):
            assert relative_error(theirs[layer], ours[layer]) < GRAD_TOL, layer


def test_a_gradient_off_by_one_part_in_a_billion_is_caught():
    pb = random_problem(3, 9, 8, 11, cell="lstm", num_layers=2)
    spec = model_spec("lstm", 11, 8, 2)
    _, grads, _ = numpy_backend.loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, spec=spec)
    _, t_grads, _ = torch_backend.loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, spec=spec)
    for k in pb.params:
        wrong = t_grads[k].copy()
        wrong.flat[0] += 1e-9 * np.abs(wrong).max()
        assert relative_error(wrong, grads[k]) > GRAD_TOL, k


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("lstm", 2), ("gru", 3)])
@pytest.mark.parametrize("loss_reduction", ["mean", "sum"])
def test_the_gradients_shown_agree_and_are_the_ones_training_uses(loss_reduction, cell, layers):
    pb = random_problem(3, 9, 8, 11, cell=cell, num_layers=layers, dropout=0.3)
    spec = model_spec(cell, 11, 8, layers)
    settings = StepSettings(OPTIMIZERS["adam"], "norm", 1.0, loss_reduction)
    ours = NumpyBackend(spec, pb.params, settings).gradients(pb.inputs, pb.targets, pb.state, pb.masks)
    theirs = TorchBackend(spec, pb.params, settings, "cpu").gradients(pb.inputs, pb.targets, pb.state, pb.masks)
    assert ours.dh_norms.shape == theirs.dh_norms.shape == (layers, 9)
    assert relative_error(theirs.dh_norms, ours.dh_norms) < GRAD_TOL
    _, grads, _ = numpy_backend.loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, spec=spec, masks=pb.masks)
    scale = pb.inputs.size if loss_reduction == "sum" else 1
    for k in pb.params:
        assert relative_error(theirs.params[k], ours.params[k]) < GRAD_TOL, k
        assert relative_error(ours.params[k], grads[k] * scale) < 1e-14, k


OPTIMIZERS = {
    "adagrad": AdagradConfig(name="adagrad", lr=0.1, eps=1e-10),
    "sgd": SGDConfig(name="sgd", lr=0.05, momentum=0.9, nesterov=False),
    "nesterov": SGDConfig(name="sgd", lr=0.05, momentum=0.9, nesterov=True),
    "adam": AdamConfig(name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8),
}
GRAD_CLIP = {"norm": 1.0, "value": 0.1, "none": 1.0}   # small enough that clipping acts
B, T, H, V = 2, 6, 8, 10


def batches() -> StreamBatcher:
    """A repetitive id stream (so the loss falls) cut into B streams of T-step chunks."""
    return StreamBatcher(np.tile(np.random.default_rng(0).integers(0, V, 37), 20), B, T)


def train(backend_cls, optim: str, clip_mode: str, reduction: str, dtype: str, steps: int = 100,
          lr_factor: float = 1.0, spec=model_spec("rnn", V, H), dropout: float = 0.0, **kwargs):
    """Run the trainer's loop (state carried, reset at the end of an epoch, dropout masks drawn by step)
    for `steps` steps. Returns the per-step StepResults and the final params."""
    cfg = OPTIMIZERS[optim]
    backend = backend_cls(spec, init_params(spec, "uniform", 0.01, 0, dtype),
                          StepSettings(cfg, clip_mode, GRAD_CLIP[clip_mode], reduction), **kwargs)
    # Summed gradients are B*T times the mean's: SGD at the same lr would diverge, and a diverging run
    # amplifies round-off until any two implementations part.
    lr = cfg.lr * lr_factor / (B * T if reduction == "sum" and cfg.name == "sgd" else 1)
    data, results = batches(), []
    for step in range(steps):
        k = step % len(data)
        if k == 0:
            state = zero_state(spec, B, dtype)
        inputs, targets = data.chunk(k)
        masks = dropout_masks(dropout, spec, *inputs.shape, 0, step, dtype)
        results.append(backend.train_step(inputs, targets, state, lr, masks))
        state = results[-1].state_last
    return results, backend.export_params()


def assert_same_run(a, b, tol):
    (results_a, params_a), (results_b, params_b) = a, b
    losses_a, losses_b = (np.array([r.loss for r in results]) for results in (results_a, results_b))
    assert np.max(np.abs(losses_a - losses_b) / losses_a) < tol
    for ra, rb in zip(results_a, results_b):
        for k in params_a:
            assert rb.grad_norms[k] == pytest.approx(ra.grad_norms[k], rel=tol)
            assert rb.clipped_grad_norms[k] == pytest.approx(ra.clipped_grad_norms[k], rel=tol)
    for k in params_a:
        assert relative_error(params_a[k], params_b[k]) < tol, k


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("clip_mode", ["norm", "value", "none"])
@pytest.mark.parametrize("optim", OPTIMIZERS)
def test_100_training_steps_agree_in_float64(optim, clip_mode, reduction):
    ours = train(NumpyBackend, optim, clip_mode, reduction, "float64")
    theirs = train(TorchBackend, optim, clip_mode, reduction, "float64", device="cpu")
    assert_same_run(ours, theirs, LOSS_TOL["float64"])
    clipped = [r.clipped_grad_norm < r.grad_norm for r in ours[0]]
    assert any(clipped) if clip_mode != "none" else not any(clipped)
    assert ours[0][-1].loss < 0.9 * ours[0][0].loss    # a run that learns, not one that sits still


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_100_training_steps_of_two_layers_with_dropout_agree(cell, dtype):
    spec = model_spec(cell, V, H, 2)
    ours = train(NumpyBackend, "adam", "norm", "mean", dtype, spec=spec, dropout=0.2)
    theirs = train(TorchBackend, "adam", "norm", "mean", dtype, spec=spec, dropout=0.2, device="cpu")
    assert_same_run(ours, theirs, LOSS_TOL[dtype])
    assert ours[0][-1].loss < 0.9 * ours[0][0].loss


def test_a_run_with_the_lr_off_by_one_part_in_ten_million_is_caught():
    run = train(NumpyBackend, "adam", "norm", "mean", "float64")
    nudged = train(NumpyBackend, "adam", "norm", "mean", "float64", lr_factor=1 + 1e-7)
    with pytest.raises(AssertionError, match="assert .* < 1e-09"):
        assert_same_run(run, nudged, LOSS_TOL["float64"])


@pytest.mark.parametrize("optim,clip_mode,reduction",
                         [("adagrad", "value", "sum"), ("sgd", "norm", "mean"), ("nesterov", "none", "sum"),
                          ("adam", "norm", "mean")])
def test_100_training_steps_agree_in_float32(optim, clip_mode, reduction):
    ours = train(NumpyBackend, optim, clip_mode, reduction, "float32")
    theirs = train(TorchBackend, optim, clip_mode, reduction, "float32", device="cpu")
    assert ours[1]["Whh"].dtype == theirs[1]["Whh"].dtype == np.float32
    assert_same_run(ours, theirs, LOSS_TOL["float32"])


RNN = model_spec("rnn", V, H)
BUILD = {"numpy": lambda params, cfg: NumpyBackend(RNN, params, StepSettings(cfg, "norm", 1.0)),
         "torch": lambda params, cfg: TorchBackend(RNN, params, StepSettings(cfg, "norm", 1.0), "cpu")}


@pytest.mark.parametrize("steps_before", [0, 3])
@pytest.mark.parametrize("optim", [*OPTIMIZERS, "sgd without momentum"])
@pytest.mark.parametrize("writer,reader", [("numpy", "torch"), ("torch", "numpy")])
def test_optimizer_state_moves_between_backends(writer, reader, optim, steps_before):
    cfg = OPTIMIZERS.get(optim, SGDConfig(name="sgd", lr=0.05, momentum=0.0, nesterov=False))
    params = init_params(RNN, "uniform", 0.01, 0, "float64")
    data = batches()
    zeros = zero_state(RNN, B, "float64")
    first = BUILD[writer](params, cfg)
    for k in range(steps_before):
        first.train_step(*data.chunk(k), zeros, cfg.lr)
    state = first.export_optimizer_state()
    second = BUILD[reader](first.export_params(), cfg)
    second.load_optimizer_state(state)
    exported = second.export_optimizer_state()
    assert set(exported) == set(state)
    for key in state:
        np.testing.assert_array_equal(exported[key], state[key])
    for k in range(steps_before, steps_before + 3):
        a = first.train_step(*data.chunk(k), zeros, cfg.lr)
        b = second.train_step(*data.chunk(k), zeros, cfg.lr)
        assert b.loss == pytest.approx(a.loss, rel=1e-12)
    for k in params:
        assert relative_error(first.export_params()[k], second.export_params()[k]) < 1e-12


@pytest.mark.parametrize("writer,reader,model", [("numpy", "torch", "lstm"), ("torch", "numpy", "gru"),
                                                ("numpy", "torch", "rnn")])
def test_checkpoint_from_one_backend_evaluates_and_continues_in_the_other(corpus, tmp_path, writer, reader, model):
    overrides = [f"data.path={corpus}", *TINY, "model.dtype=float64", "train.max_iters=15", "backend.device=cpu",
                 f"model={model}", "model.hidden_size=8", "model.num_layers=2", "model.dropout=0.1"]
    trainer.train(make_config([*overrides, f"backend={writer}"]), tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt_last.npz")
    assert ckpt.progress["backend"] == writer and ckpt.progress["step"] == 15

    def resume(name: str):
        """Val loss of the checkpoint's weights, then 5 more training steps, on backend `name`."""
        cfg = make_config([*overrides, f"backend={name}"])
        vocab, ids = load_ids(cfg.data)
        spec = spec_of(cfg.model, len(vocab))
        backend = make_backend(cfg.backend.name, spec, ckpt.params, StepSettings.from_config(cfg, len(vocab)),
                               cfg.backend.device)
        backend.load_optimizer_state(ckpt.optimizer_state)
        train_batches, val_batches = trainer.make_batchers(cfg, ids)
        val_loss = trainer.evaluate(backend, val_batches, spec, cfg.model.dtype)
        state, losses = tuple(ckpt.state[k] for k in spec.state_names), []
        for chunk in range(ckpt.progress["chunk"], ckpt.progress["chunk"] + 5):
            result = backend.train_step(*train_batches.chunk(chunk % len(train_batches)), state, cfg.optim.lr)
            state = result.state_last
            losses.append(result.loss)
        return val_loss, np.array(losses), backend.export_params()

    val_loss, losses, params = resume(reader)
    assert val_loss == pytest.approx(ckpt.progress["val_loss"], rel=1e-12)
    _, same_losses, same_params = resume(writer)
    np.testing.assert_allclose(losses, same_losses, rtol=1e-12, atol=0)
    for k in params:
        assert relative_error(params[k], same_params[k]) < 1e-12
