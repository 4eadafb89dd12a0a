"""The torch backend's acceptance check on one device: python -m charrnn.tools.bench --device cuda --check
(bench_cli.py runs it; the speed part times the bench's own steps, bench.py).

Made for a GPU (run it once on any machine with one); on the CPU it checks the same things at the CPU's
shapes and bar. Three parts, one line each check, PASS or FAIL; the exit status is 0 only if every
check passed, and a device this machine lacks ends in one line with exit status 2 before anything runs.

1. exactness   the fused kernels against the loop on the device, float64, every cell x 1, 2, 3 layers
               x no dropout / dropout 0.4, from a carried (non-zero) state: the loss, every gradient,
               the gradient of the state and the state after the chunk within 1e-10 (relative to the
               largest entry), and the loop on the device against the NumPy backend on the CPU
2. precision   TRAIN_STEPS training steps of each cell at each precision the device takes (fp32, bf16,
               and fp16 on CUDA), from the same weights on the same text: the loss falls by at least
               MIN_DROP nats/char and ends within PRECISION_TOL nats/char of fp32's (the ends are the
               means of the last 20 steps' losses)
3. speed       chars/s of a full float32 training step (forward, backward, clipping, Adam) of the
               backend on the fused kernels against stock torch.nn + Linear + Adam on the same device,
               interleaved in one process (charrnn.tools.bench), at SPEED_SHAPES: at least SPEED_BAR
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from charrnn.backends import StepSettings, make_backend, numpy_backend
from charrnn.devices import PRECISION_DEVICES, PRECISIONS, resolve_device
from charrnn.gradcheck.problem import random_problem, relative_error
from charrnn.cells import CELLS, with_kernel
from charrnn.model import init_params, model_spec, zero_state
from charrnn.optim import AdamConfig
from charrnn.tools import bench

EXACT_TOL = 1e-10
TRAIN_STEPS = 200
MIN_DROP = 0.5
PRECISION_TOL = 0.05
SPEED_SHAPES = {"cuda": [(512, 64, 64), (1024, 128, 128)], "cpu": [(256, 64, 64), (512, 64, 64)]}
SPEED_BAR = {"cuda": 0.90, "cpu": 0.95}
WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards hex five jolly boxing "
         "kings and my sphinx of black quartz judges the vow").split()


@dataclass
class Check:
    part: str
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.part:<10} {self.name:<34} {self.detail}"


def chunk_results(pb, device, fused: bool) -> dict[str, np.ndarray]:
    """The loss, every gradient (of the weights and of the state) and the state after the chunk of a
    random problem (charrnn.gradcheck.problem), by torch on the device, as NumPy."""
    import torch

    from charrnn.backends.torch_backend import as_tensors, chunk_loss, time_major

    weights = {k: torch.tensor(v, device=device, requires_grad=True) for k, v in pb.params.items()}
    state = tuple(torch.tensor(s, device=device, requires_grad=True) for s in pb.state)
    loss, _, state_last = chunk_loss(weights, pb.spec, time_major(pb.inputs, device), time_major(pb.targets, device),
                                     state, as_tensors(pb.masks, device), fused=fused)
    grads = torch.autograd.grad(loss, [*weights.values(), *state])
    names = ["loss", *pb.params, *pb.state_keys, *(f"{name}_last" for name in pb.spec.state_names)]
    return {name: t.detach().cpu().numpy() for name, t in zip(names, (loss, *grads, *state_last), strict=True)}


def exactness(device: str, layer_counts=(1, 2, 3), dropouts=(0.0, 0.4), size=(3, 7, 5, 11)) -> Iterator[Check]:
    """Part 1: size is (B, T, H, V) of the random problems."""
    where = resolve_device(device)
    for cell in with_kernel():   # the loop against the kernel: only a cell with one has both
        for layers in layer_counts:
            for dropout in dropouts:
                pb = random_problem(*size, cell=cell, num_layers=layers, dropout=dropout)
                loop, fused = chunk_results(pb, where, False), chunk_results(pb, where, True)
                np_loss, np_grads, np_state = numpy_backend.loss_and_grads(pb.params, pb.inputs, pb.targets,
                                                                           pb.state, pb.spec, pb.masks)
                numpy = {"loss": np.asarray(np_loss), **np_grads,
                         **{f"{name}_last": s for name, s in zip(pb.spec.state_names, np_state, strict=True)}}
                fused_error = max(relative_error(fused[k], loop[k]) for k in loop)
                numpy_error = max(relative_error(loop[k], numpy[k]) for k in numpy)
                yield Check("exactness", f"{cell} x{layers} dropout {dropout}",
                            fused_error <= EXACT_TOL and numpy_error <= EXACT_TOL,
                            f"fused vs loop {fused_error:.1e}, loop vs NumPy {numpy_error:.1e} "
                            f"(at most {EXACT_TOL:.0e})")


def text_ids(length: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """A learnable text of random words, as ids, and its vocabulary size."""
    words = np.random.default_rng(seed).choice(WORDS, length // 4)
    text = " ".join(words)[:length]
    symbols = sorted(set(text))
    return np.array([symbols.index(c) for c in text]), len(symbols)


def training_curve(cell: str, precision: str, device: str, shape: tuple[int, int, int], steps: int,
                   layers: int = 2, recurrence: str = "auto") -> tuple[np.ndarray, int]:
    """The losses of `steps` training steps at (H, B, T) from fixed weights on the text of text_ids, and
    how many steps were skipped (fp16's scaler skips a few)."""
    H, B, T = shape
    ids, V = text_ids(B * (T * 20 + 1))
    spec = model_spec(cell, V, H, layers)
    settings = StepSettings(optim=AdamConfig(name="adam", lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8),
                            precision=precision, recurrence=recurrence)
    backend = make_backend("torch", spec, init_params(spec, "uniform", 0.01, 0, "float32"), settings, device)
    streams = ids[:len(ids) // B * B].reshape(B, -1)                 # (B, stream length)
    chunks = (streams.shape[1] - 1) // T
    zeros = zero_state(spec, B, np.float32)
    state, losses, skipped = zeros, [], 0
    for step in range(steps):
        k = step % chunks
        inputs, targets = streams[:, k * T:(k + 1) * T], streams[:, k * T + 1:(k + 1) * T + 1]
        result = backend.train_step(inputs, targets, state if k else zeros, 1e-2)
        state = result.state_last
        losses.append(result.loss)
        skipped += result.skipped
    return np.array(losses), skipped


def precision(device: str, shape=(128, 32, 32), steps: int = TRAIN_STEPS, cells=tuple(CELLS)) -> Iterator[Check]:
    """Part 2, at (H, B, T) = shape."""
    device_type = resolve_device(device).type
    for cell in cells:
        ends = {}
        for name in PRECISIONS:
            if name != "fp32" and device_type not in PRECISION_DEVICES[name]:
                continue
            losses, skipped = training_curve(cell, name, device, shape, steps)
            first, ends[name] = losses[0], float(losses[-20:].mean())
            fall, apart = first - ends[name], abs(ends[name] - ends["fp32"])
            yield Check("precision", f"{cell} {name}", fall >= MIN_DROP and apart <= PRECISION_TOL,
                        f"loss {first:.3f} -> {ends[name]:.3f} (a fall of at least {MIN_DROP}), {apart:.3f} from "
                        f"fp32 (at most {PRECISION_TOL}), {skipped} of {steps} steps skipped")


def speed(device: str, shapes=None, seconds: float = 2.0, cells=tuple(with_kernel()), layers: int = 1,
          bar: float | None = None, clock: Callable[[], float] = time.perf_counter) -> Iterator[Check]:
    """Part 3: the device's SPEED_SHAPES and SPEED_BAR unless given; each step timed by clock
    (bench.measure_interleaved)."""
    device_type = resolve_device(device).type
    shapes = shapes or SPEED_SHAPES.get(device_type, SPEED_SHAPES["cuda"])
    bar = SPEED_BAR.get(device_type, SPEED_BAR["cuda"]) if bar is None else bar
    for cell in cells:
        for H, B, T in shapes:
            spec = model_spec(cell, bench.V, H, layers)
            steps = {name: bench.IMPLS[name](H, B, T, np.random.default_rng(0), spec, device)
                     for name in ("torch_fused", "torch_nn")}
            rates = bench.measure_interleaved(steps, B * T, seconds, clock=clock)
            ratio = rates["torch_fused"]["chars_per_sec"] / rates["torch_nn"]["chars_per_sec"]
            yield Check("speed", f"{cell} x{layers} ({H}, {B}, {T})", ratio >= bar,
                        f"{rates['torch_fused']['chars_per_sec']:,.0f} chars/s against torch.nn's "
                        f"{rates['torch_nn']['chars_per_sec']:,.0f}: {ratio:.2f}x (at least {bar:.2f}x)")


def run(device: str, seconds: float = 2.0, out=print, clock: Callable[[], float] = time.perf_counter) -> bool:
    """Every part on the device, each check printed as it ends; whether all passed."""
    passed = True
    for part in (exactness, precision, lambda d: speed(d, seconds=seconds, clock=clock)):
        for check in part(device):
            out(check.line())
            passed &= check.passed
    out("all checks passed" if passed else "SOME CHECKS FAILED")
    return passed
