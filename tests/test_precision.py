"""backend.precision: bf16 trains on the CPU as fp32 does; fp16's gradient scaler skips an overflowed step
as routine, not as an explosion; weights, optimizer state and checkpoints stay float32."""

import functools

import numpy as np
import pytest

from charrnn import devices
from charrnn.backends import StepSettings
from charrnn.backends.guard import ROUTINE
from charrnn.backends.torch_backend import TorchBackend
from charrnn.checkpoint import load_checkpoint
from charrnn.gradcheck.problem import random_problem
from charrnn.cells import with_kernel
from charrnn.optim import AdamConfig
from charrnn.tools import acceptance
from charrnn.training import loop as trainer
from tests.conftest import TINY, make_config

ADAM = AdamConfig(name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)


@functools.cache
def fp32_curve(cell: str) -> np.ndarray:
    return acceptance.training_curve(cell, "fp32", "cpu", (16, 4, 16), 100)[0]


@pytest.mark.parametrize("cell,recurrence", [(cell, "fused") for cell in with_kernel()] + [("rnn", "loop")]
                         + [("mingru", "loop"), ("minlstm", "fused")])
def test_bf16_trains_100_steps_on_the_cpu_within_the_tolerance_of_fp32(cell, recurrence):
    """The loss falls by at least acceptance.MIN_DROP and its last 20 steps' mean ends within
    acceptance.PRECISION_TOL nats/char of fp32's."""
    fp32 = fp32_curve(cell)
    bf16, skipped = acceptance.training_curve(cell, "bf16", "cpu", (16, 4, 16), 100, recurrence=recurrence)
    assert skipped == 0 and not np.array_equal(bf16, fp32)    # it did compute in bf16
    assert bf16[0] - bf16[-20:].mean() >= acceptance.MIN_DROP
    assert abs(bf16[-20:].mean() - fp32[-20:].mean()) <= acceptance.PRECISION_TOL


def test_the_precision_check_passes_a_close_curve_and_fails_a_far_one(monkeypatch):
    ends = {"fp32": 1.0, "bf16": 1.0 + acceptance.PRECISION_TOL / 2}
    monkeypatch.setattr(acceptance, "training_curve",
                        lambda cell, name, *args: (np.linspace(3.0, ends[name], 50), 0))
    checks = list(acceptance.precision("cpu", cells=("gru",)))
    assert [c.name for c in checks] == ["gru fp32", "gru bf16"]        # no fp16 on the CPU
    assert all(c.passed for c in checks), [c.line() for c in checks]
    ends["bf16"] = 1.0 + 2 * acceptance.PRECISION_TOL
    assert [c.passed for c in acceptance.precision("cpu", cells=("gru",))] == [True, False]
    ends["fp32"] = ends["bf16"] = 3.0 - acceptance.MIN_DROP / 2
    assert [c.passed for c in acceptance.precision("cpu", cells=("gru",))] == [False, False]


def test_bf16_keeps_weights_optimizer_state_and_carried_state_in_float32():
    pb = random_problem(3, 6, 8, 7, dtype="float32", cell="lstm", num_layers=2)
    backend = TorchBackend(pb.spec, pb.params, StepSettings(ADAM, precision="bf16"), "cpu")
    result = backend.train_step(pb.inputs, pb.targets, pb.state, 0.01)
    assert not result.skipped and all(s.dtype == np.float32 for s in result.state_last)
    assert all(v.dtype == np.float32 for v in backend.export_params().values())
    state = backend.export_optimizer_state()
    assert all(v.dtype == np.float32 for k, v in state.items() if k != "step")
    assert not any(k.startswith("scaler/") for k in state)                 # bf16 needs no scaler
    loss, state_last = backend.evaluate(pb.inputs, pb.targets, pb.state)
    assert np.isfinite(loss) and state_last[1].dtype == np.float32


@pytest.fixture
def fp16_on_the_cpu(monkeypatch):
    """fp16 is refused on the CPU for speed, not for correctness: torch's CPU autocast and scaler run it,
    so its logic can be tested here."""
    monkeypatch.setitem(devices.PRECISION_DEVICES, "fp16", ("cuda", "cpu"))


def test_an_fp16_overflow_is_skipped_as_routine_and_lowers_the_scale(fp16_on_the_cpu):
    pb = random_problem(3, 6, 8, 7, dtype="float32", cell="gru")
    backend = TorchBackend(pb.spec, pb.params, StepSettings(ADAM, "norm", 5.0, precision="fp16"), "cpu")
    assert backend.precision.scaling and backend.precision.loss_scale() == 2.0 ** 16
    # a scale that overflows fp16's gradients
    backend.load_optimizer_state({**backend.export_optimizer_state(), "scaler/scale": np.array(2.0 ** 100)})
    before = backend.export_params()
    result = backend.train_step(pb.inputs, pb.targets, pb.state, 0.01)
    assert result.skipped and result.cause == "overflow" and result.cause in ROUTINE
    assert np.isfinite(result.loss) and not np.isfinite(result.grad_norm)
    for k, v in backend.export_params().items():
        assert np.array_equal(v, before[k]), k
    assert backend.precision.loss_scale() == 2.0 ** 99
    # at a sane scale the next step updates
    backend.load_optimizer_state({**backend.export_optimizer_state(), "scaler/scale": np.array(2.0 ** 10)})
    assert not backend.train_step(pb.inputs, pb.targets, pb.state, 0.01).skipped
    assert not np.array_equal(backend.export_params()["Whh"], before["Whh"])


def test_a_nan_loss_under_fp16_is_still_the_guard_s(fp16_on_the_cpu):
    pb = random_problem(2, 4, 5, 6, dtype="float32")
    backend = TorchBackend(pb.spec, pb.params, StepSettings(ADAM, precision="fp16"), "cpu")
    state = (np.full_like(pb.state[0], np.nan),)
    assert backend.train_step(pb.inputs, pb.targets, state, 0.01).cause == "loss"


def test_the_trainer_goes_on_past_fp16_overflows_and_saves_the_scale(fp16_on_the_cpu, corpus, tmp_path):
    """With train.nonfinite=stop, an overflow is dropped, counted as skipped, and training goes on; the
    scaler's state is saved with the optimizer's, and a resumed backend takes it back."""
    config = [f"data.path={corpus}", *TINY, "backend=torch", "backend.device=cpu", "backend.precision=fp16",
              "train.max_iters=12", "train.sample_length=0", "train.nonfinite=stop"]
    real = TorchBackend.train_step
    causes = []

    def three_overflows(self, *args, **kwargs):
        scale = 2.0 ** 100 if len(causes) < 3 else 2.0 ** 10 if len(causes) == 3 else None
        if scale:
            self.load_optimizer_state({**self.export_optimizer_state(), "scaler/scale": np.array(scale)})
        result = real(self, *args, **kwargs)
        causes.append(result.cause)
        return result

    with pytest.MonkeyPatch.context() as m:
        m.setattr(TorchBackend, "train_step", three_overflows)
        result = trainer.train(make_config(config), tmp_path / "run")
    assert result.steps == 12 and causes == ["overflow"] * 3 + [None] * 9
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt_last.npz")
    assert ckpt.progress["monitor"]["skipped_steps"] == 3
    assert float(ckpt.optimizer_state["scaler/scale"]) == 2.0 ** 10
    assert int(ckpt.optimizer_state["scaler/growth_tracker"]) == 9
    pb = random_problem(2, 4, 16, len(ckpt.vocab), dtype="float32")
    resumed = TorchBackend(pb.spec, pb.params, StepSettings(ADAM, precision="fp16"), "cpu")
    resumed.load_optimizer_state(ckpt.optimizer_state)
    assert resumed.precision.loss_scale() == 2.0 ** 10
    assert int(resumed.export_optimizer_state()["scaler/growth_tracker"]) == 9
