"""torch's fused kernels (backend.recurrence=fused) compute what the loop and the NumPy backend compute."""

import numpy as np
import pytest
import torch

from charrnn.backends import StepSettings, numpy_backend, torch_fused, torch_parallel
from charrnn.backends.numpy_backend import NumpyBackend
from charrnn.backends.torch_backend import TorchBackend, loss_and_grads
from charrnn.checkpoint import load_checkpoint
from charrnn.gradcheck.problem import random_problem, relative_error
from charrnn.cells import CELLS, with_kernel
from charrnn.model import dropout_masks, model_spec
from charrnn.optim import AdamConfig
from charrnn.tools import acceptance
from charrnn.training import loop as trainer
from tests.conftest import TINY, make_config

TOL = 1e-10
ADAM = AdamConfig(name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
CASES = [(cell, layers, dropout) for cell in with_kernel() for layers in (1, 2, 3) for dropout in (0.0, 0.4)]


@pytest.mark.parametrize("cell,layers,dropout", CASES)
def test_fused_loop_and_numpy_agree_in_float64(cell, layers, dropout):
    """The loss, the gradient of every weight (bh and the GRU's bhn through the kernels' b_ih and b_hh)
    and of the carried state, and the state after the chunk."""
    pb = random_problem(3, 7, 5, 11, cell=cell, num_layers=layers, dropout=dropout)
    assert all(np.abs(s).min() > 0 for s in pb.state) and (pb.masks is None) == (dropout == 0)
    loop, fused = acceptance.chunk_results(pb, "cpu", False), acceptance.chunk_results(pb, "cpu", True)
    assert loop.keys() == fused.keys() >= {"loss", *pb.params, *pb.state_keys}
    for k in loop:
        assert np.abs(loop[k]).max() > 0, k
        assert relative_error(fused[k], loop[k]) < TOL, k
    np_loss, np_grads, np_state = numpy_backend.loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state,
                                                               pb.spec, pb.masks)
    assert abs(float(fused["loss"]) - np_loss) < TOL * np_loss
    for k in pb.params:
        assert relative_error(fused[k], np_grads[k]) < TOL, k
    for name, s in zip(pb.spec.state_names, np_state, strict=True):
        assert relative_error(fused[f"{name}_last"], s) < TOL, name


def test_the_kernels_receive_the_gru_recurrent_bias_in_its_n_block():
    """bhn enters torch's b_hh as [0, 0, bhn]: moving it to another block is caught."""
    pb = random_problem(2, 5, 4, 6, cell="gru")
    right = acceptance.chunk_results(pb, "cpu", True)
    wrong_bias = lambda cell, W, H: torch.cat([W["bhn"], W["bhn"].new_zeros(2 * H)])  # noqa: E731
    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch_fused, "recurrent_bias", wrong_bias)
        wrong = acceptance.chunk_results(pb, "cpu", True)
    assert relative_error(wrong["loss"], right["loss"]) > 1e-6


def test_the_exactness_check_fails_when_the_kernels_compute_something_else(monkeypatch):
    real_kernel, real_scan = torch_fused.run_kernel, torch_parallel.scan

    def off_by_a_little(spec, weights, layers, inputs, state):
        output, state_last = real_kernel(spec, weights, layers, inputs, state)
        return output * (1 + 1e-8), state_last

    monkeypatch.setattr(torch_fused, "run_kernel", off_by_a_little)
    monkeypatch.setattr(torch_parallel, "scan", lambda a, b, h: real_scan(a, b, h) * (1 + 1e-8))
    checks = list(acceptance.exactness("cpu", layer_counts=(1,), dropouts=(0.0,)))
    assert [c.name for c in checks] == [f"{cell} x1 dropout 0.0" for cell in with_kernel()]
    assert not any(c.passed for c in checks) and all(c.line().startswith("FAIL") for c in checks)


@pytest.mark.parametrize("cell", with_kernel())
def test_float32_kernels_agree_with_the_loop(cell):
    """In float32 the CPU's LSTM kernel is oneDNN's, a path float64 never takes."""
    pb = random_problem(4, 9, 16, 11, dtype="float32", cell=cell, num_layers=2)
    loop = loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, pb.spec)
    fused = loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, pb.spec, fused=True)
    assert fused[0] == pytest.approx(loop[0], rel=1e-5)
    for k in pb.params:
        assert fused[1][k].dtype == np.float32 and relative_error(fused[1][k], loop[1][k]) < 1e-4, k


@pytest.mark.parametrize("cell", with_kernel())
def test_100_training_steps_on_the_kernels_follow_the_numpy_backend(cell):
    spec = model_spec(cell, 6, 4, 2)
    pb = random_problem(3, 5, 4, 6, cell=cell, num_layers=2)
    settings = StepSettings(ADAM, "norm", 1.0, recurrence="fused")
    ours, theirs = NumpyBackend(spec, pb.params, settings), TorchBackend(spec, pb.params, settings, "cpu")
    assert theirs.fused
    state = pb.state
    for step in range(100):
        masks = dropout_masks(0.3, spec, 3, 5, 0, step, np.float64)
        a = ours.train_step(pb.inputs, pb.targets, state, 0.01, masks)
        b = theirs.train_step(pb.inputs, pb.targets, state, 0.01, masks)
        assert abs(a.loss - b.loss) < 1e-9, step
        state = a.state_last
    assert a.loss < 0.8 * np.log(6)
    for k, v in ours.export_params().items():
        assert relative_error(theirs.export_params()[k], v) < 1e-9, k


@pytest.mark.parametrize("cell", with_kernel())
def test_auto_runs_the_kernel_of_every_cell_that_has_one(cell):
    pb = random_problem(2, 3, 4, 5, cell=cell)
    made = {r: TorchBackend(pb.spec, pb.params, StepSettings(ADAM, recurrence=r), "cpu").fused
            for r in ("auto", "fused", "loop")}
    assert made == {"auto": True, "fused": True, "loop": False}


def test_a_resumed_run_on_the_kernels_is_bit_exact(corpus, tmp_path):
    """Two LSTM layers with dropout, float32 (oneDNN's kernel on the CPU): stopped at step 13 and resumed,
    the run ends with the same bytes as one never stopped."""
    config = [f"data.path={corpus}", *TINY, "backend=torch", "backend.device=cpu", "backend.recurrence=fused",
              "model=lstm", "model.num_layers=2", "model.dropout=0.3", "model.hidden_size=8",
              "train.max_iters=25", "train.sample_length=0"]
    trainer.train(make_config(config), tmp_path / "unbroken")
    trainer.train(make_config([*config, "train.max_iters=13", "train.lr_decay_iters=25"]), tmp_path / "resumed")
    trainer.train(make_config([*config, f"train.resume={tmp_path / 'resumed'}"]), tmp_path / "new")
    a, b = (load_checkpoint(tmp_path / run / "ckpt_last.npz") for run in ("unbroken", "resumed"))
    assert a.progress["step"] == b.progress["step"] == 25
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    for k in a.optimizer_state:
        assert np.array_equal(a.optimizer_state[k], b.optimizer_state[k]), k
    for k in a.state:
        assert np.array_equal(a.state[k], b.state[k]), k
