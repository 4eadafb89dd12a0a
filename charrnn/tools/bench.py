"""Throughput benchmark: python -m charrnn.tools.bench [--cell rnn|lstm|gru|mingru|minlstm] [--layers N] [--json FILE]
[--seconds S] [--shapes H,B,T ...] [--device cpu|cuda|cuda:N|mps] [--check].

Every figure is chars/s of a full training step (forward, backward, clipping, optimizer update) in
float32 at V=65 (Tiny Shakespeare's vocabulary), the median over timed steps after warm-up. The
references run in the same process on the same shapes, in turns of 0.1 s each, so the ratios hold
even on a machine whose load changes:

  numpy          the NumPy backend (CPU only)
  torch          the torch backend on its loop (backend.recurrence=loop)
  torch fused    the torch backend on torch's fused kernels (backend.recurrence=fused)
  torch nn       torch's fused nn.RNN / nn.LSTM / nn.GRU (the --cell, --layers) + nn.Linear head,
                 torch.optim.Adam, clip_grad_norm_
  torch loop     (rnn only) a hand loop on torch autograd with the input projection hoisted out of it
  per-char loop  (rnn only) min-char-rnn's own lossFun (one-hot column vectors, one character at a
                 time, float64 as written) with its Adagrad update; B=1 shapes only
  roofline       the GEMM rate of (B x H) @ (H x GH) divided by the model's matrix-product flops per
                 character, forward and backward: 6 G H^2 L recurrent + 6 G H (V + H (L-1)) input
                 projections + 6 H V head (G = the cell's gates: 1, 4, 3). torch.nn makes all of them;
                 the NumPy step replaces layer 0's 6 G H V by a gather and one one-hot product (2 G H V),
                 so np%roof overstates how close it is to its own products' limit

Peak memory (MB) is what one implementation adds to a fresh process's peak resident set while it
is built and runs three steps: weights, optimizer state, buffers and temporaries. It is measured in
a subprocess per row because a process reuses memory that an earlier measurement freed.

--cell mingru or minlstm (a parallel cell, charrnn.cells) prints another table, on the CPU: the cell on
the NumPy backend, the torch loop and the torch scan, beside the classic cell it simplifies (gru, lstm)
on the NumPy backend, the torch backend and torch.nn, at the same H and depth, with the ratios of the
parallel cell's chars/s to the classic one's (run_parallel).

--device runs the torch implementations there (each step waits for the device to finish), without
the CPU-only ones and the memory columns. --check runs the backend's acceptance check on the device
instead (charrnn.tools.acceptance): exactness, precision and speed against torch.nn, PASS or FAIL.
"""

import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from charrnn.backends import StepGuard, StepSettings, make_backend
from charrnn.optim import AdamConfig
from charrnn.cells import CELLS
from charrnn.model import ModelSpec, init_params, model_spec, zero_state

V = 65
SHAPES = [(100, 1, 25), (128, 32, 64), (256, 64, 64), (512, 64, 64)]
LR = 2e-3


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def measure(step: Callable[[], None], chars: int, seconds: float,
            clock: Callable[[], float] = time.perf_counter) -> dict:
    """Median chars/s of step() over about `seconds` of timed calls (at least 5) after 3 warm-up calls,
    the calls and the seconds both read on clock (see measure_interleaved)."""
    for _ in range(3):
        step()
    times = []
    deadline = clock() + seconds
    while len(times) < 5 or clock() < deadline:
        started = clock()
        step()
        times.append(clock() - started)
    return {"chars_per_sec": chars / statistics.median(times), "steps": len(times)}


def measure_interleaved(steps: dict[str, Callable[[], None]], chars: int, seconds: float,
                        block: float = 0.1, clock: Callable[[], float] = time.perf_counter) -> dict[str, dict]:
    """measure() for several implementations at once, in turns of about `block` seconds each, so that a
    machine whose load changes during the run slows them all alike and their ratios hold. The first
    step of a turn is not counted when steps are shorter than a turn: it pays for what the previous
    implementation left in the caches and its idle threads (with one step of each in turn, the NumPy
    step at min-char-rnn's shape ran at 0.71x its speed alone). clock times each step: wall time, or
    time.process_time, the CPU time of this process, which waiting for a core on a machine shared with
    other work does not inflate (a fair measure with one thread only: idle threads spin on CPU time).
    The turns and the whole run are read on the same clock, never on the wall: how many steps a turn
    holds then depends on the clock alone, not on how fast this host runs Python."""
    for step in steps.values():
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    deadline = clock() + seconds * len(steps)
    while min(map(len, times.values())) < 5 or clock() < deadline:
        for name, step in steps.items():
            if not times[name] or times[name][-1] < block:
                step()  # a step longer than a turn hardly feels the caches it starts with: counted
            turn_ends = clock() + block
            while True:
                started = clock()
                step()
                ended = clock()
                times[name].append(ended - started)
                if ended >= turn_ends:
                    break
    return {name: {"chars_per_sec": chars / statistics.median(t), "steps": len(t)} for name, t in times.items()}


def peak_memory_mb(impl: str, H: int, B: int, T: int, cell: str, layers: int) -> float:
    """What building impl and running it for three steps adds to a fresh process's peak RSS."""
    cmd = [sys.executable, "-m", "charrnn.tools.bench", "--peak-memory-of", impl, f"{H},{B},{T}", "--cell", cell,
           "--layers", str(layers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return float(proc.stdout.strip()) if proc.returncode == 0 else math.nan


def _own_peak_memory_mb(impl: str, H: int, B: int, T: int, cell: str, layers: int) -> float:
    import torch  # noqa: F401  (imported before the baseline, so that no row is charged for it)

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident set to the current one
    base_kb = _rss_kb("VmRSS")
    step = IMPLS[impl](H, B, T, np.random.default_rng(0), model_spec(cell, V, H, layers))
    for _ in range(3):
        step()
    return (_rss_kb("VmHWM") - base_kb) / 1024


# What the trainer's defaults make a step do: Adam, global-norm clipping at 5, the guard against a loss
# above 3 ln V.
SETTINGS = StepSettings(optim=AdamConfig(name="adam", lr=LR, beta1=0.9, beta2=0.999, eps=1e-8),
                        guard=StepGuard(max_loss=3.0 * math.log(V)))


def backend_step(name: str, H: int, B: int, T: int, rng, spec: ModelSpec, device: str = "cpu",
                 recurrence: str = "auto") -> Callable[[], None]:
    settings = replace(SETTINGS, recurrence=recurrence)
    backend = make_backend(name, spec, init_params(spec, "uniform", 0.01, 0, "float32"), settings, device)
    inputs, targets = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state = {"h": zero_state(spec, B, np.float32)}

    def step():
        state["h"] = backend.train_step(inputs, targets, state["h"], LR).state_last
    return synced(step, device)


def synced(step: Callable[[], None], device: str) -> Callable[[], None]:
    """step, ending when the device has finished its work (a GPU runs behind the Python that queues it)."""
    if device == "cpu":
        return step
    import torch

    def step_and_wait():
        step()
        torch.cuda.synchronize() if device.startswith("cuda") else torch.mps.synchronize()
    return step_and_wait


def torch_nn_step(H: int, B: int, T: int, rng, spec: ModelSpec, device: str = "cpu") -> Callable[[], None]:
    import torch

    module = getattr(torch.nn, CELLS[spec.cell].torch_twin)
    rnn = module(V, H, num_layers=spec.num_layers, batch_first=True, device=device)
    head = torch.nn.Linear(H, V, device=device)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    x = torch.nn.functional.one_hot(torch.as_tensor(rng.integers(0, V, (B, T)), device=device), V).float()
    y = torch.as_tensor(rng.integers(0, V, (B, T)), device=device)
    zeros = tuple(torch.zeros(spec.num_layers, B, H, device=device) for _ in spec.state_names)
    state = {"h": zeros if len(zeros) == 2 else zeros[0]}

    def step():
        out, h = rnn(x, state["h"])
        loss = torch.nn.functional.cross_entropy(head(out).reshape(B * T, V), y.reshape(B * T))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        state["h"] = tuple(s.detach() for s in h) if isinstance(h, tuple) else h.detach()
    return synced(step, device)


def torch_loop_step(H: int, B: int, T: int, rng, spec: ModelSpec, device: str = "cpu") -> Callable[[], None]:
    import torch

    p = {k: torch.tensor(v, requires_grad=True) for k, v in init_params(model_spec("rnn", V, H), "uniform", 0.01, 0,
                                                                         "float32").items()}
    opt = torch.optim.Adam(list(p.values()), lr=LR)
    x = torch.as_tensor(rng.integers(0, V, (T, B)))
    y = torch.as_tensor(rng.integers(0, V, (T * B,)))
    state = {"h": torch.zeros(B, H)}

    def step():
        xh = p["Wxh"].t()[x] + p["bh"]                 # (T, B, H), out of the loop
        h, hs = state["h"], []
        for t in range(T):
            h = torch.tanh(xh[t] + h @ p["Whh"].t())
            hs.append(h)
        logits = torch.stack(hs).reshape(T * B, H) @ p["Why"].t() + p["by"]
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(p.values()), 5.0)
        opt.step()
        state["h"] = h.detach()
    return step


def per_char_step(H: int, B: int, T: int, rng, spec: ModelSpec, device: str = "cpu") -> Callable[[], None]:
    """min-char-rnn.py's lossFun and Adagrad update, as written (column vectors, dicts per step)."""
    Wxh, Whh, Why = (rng.standard_normal(s) * 0.01 for s in ((H, V), (H, H), (V, H)))
    bh, by = np.zeros((H, 1)), np.zeros((V, 1))
    params = [Wxh, Whh, Why, bh, by]
    mem = [np.zeros_like(p) for p in params]
    inputs, targets = list(rng.integers(0, V, T)), list(rng.integers(0, V, T))
    state = {"h": np.zeros((H, 1))}

    def step() -> float:
        xs, hs, ps, loss = {}, {-1: state["h"]}, {}, 0.0
        for t in range(T):
            xs[t] = np.zeros((V, 1))
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
            ys = Why @ hs[t] + by
            ps[t] = np.exp(ys) / np.sum(np.exp(ys))
            loss += -np.log(ps[t][targets[t], 0])
        grads = [np.zeros_like(p) for p in params]
        dWxh, dWhh, dWhy, dbh, dby = grads
        dhnext = np.zeros_like(hs[0])
        for t in reversed(range(T)):
            dy = ps[t].copy()
            dy[targets[t]] -= 1
            dWhy += dy @ hs[t].T
            dby += dy
            dh = Why.T @ dy + dhnext
            dhraw = (1 - hs[t] * hs[t]) * dh
            dbh += dhraw
            dWxh += dhraw @ xs[t].T
            dWhh += dhraw @ hs[t - 1].T
            dhnext = Whh.T @ dhraw
        for g in grads:
            np.clip(g, -5, 5, out=g)
        for p, g, m in zip(params, grads, mem):
            m += g * g
            p += -0.1 * g / np.sqrt(m + 1e-8)
        state["h"] = hs[T - 1]
        return loss
    return step


def gemm_flops_per_sec(H: int, B: int, seconds: float, gates: int = 1,
                       clock: Callable[[], float] = time.perf_counter) -> float:
    """The rate of the recurrent product (B x H) @ (H x GH), in flops/s."""
    G = gates * H
    a, w, out = np.ones((B, H), np.float32), np.ones((H, G), np.float32), np.empty((B, G), np.float32)
    # About 2e7 multiply-adds a call, but at most 10,000 products: a test's tiny shapes would take seconds
    # (every shape of the bench's own needs fewer).
    reps = max(1, min(10_000, int(2e7 / (B * H * G))))

    def step():
        for _ in range(reps):
            np.matmul(a, w, out=out)
    return measure(step, reps, seconds, clock)["chars_per_sec"] * 2 * B * H * G


IMPLS: dict[str, Callable] = {
    "numpy": lambda H, B, T, rng, spec, device="cpu": backend_step("numpy", H, B, T, rng, spec),
    "torch": lambda H, B, T, rng, spec, device="cpu": backend_step("torch", H, B, T, rng, spec, device, "loop"),
    "torch_fused": lambda H, B, T, rng, spec, device="cpu": backend_step("torch", H, B, T, rng, spec, device, "fused"),
    "torch_nn": torch_nn_step,
    "torch_loop": torch_loop_step,
    "per_char": per_char_step,
}
RNN_ONLY = ("torch_loop", "per_char")   # written for the one-layer tanh RNN
CPU_ONLY = ("numpy", "torch_loop", "per_char")


def run(shapes, seconds: float, cell: str = "rnn", layers: int = 1, memory: bool = True,
        device: str = "cpu", clock: Callable[[], float] = time.perf_counter) -> list[dict]:
    rows = []
    gates = len(CELLS[cell].gates)
    on_cpu = device == "cpu"
    for H, B, T in shapes:
        row = {"H": H, "B": B, "T": T, "cell": cell, "layers": layers}
        spec = model_spec(cell, V, H, layers)
        names = [name for name in IMPLS if not ((name == "per_char" and B != 1)
                                                or (name in RNN_ONLY and (cell, layers) != ("rnn", 1))
                                                or (name in CPU_ONLY and not on_cpu))]
        row.update(measure_interleaved({name: IMPLS[name](H, B, T, np.random.default_rng(0), spec, device)
                                        for name in names}, B * T, seconds, clock=clock))
        for name in names:
            row[name]["peak_mb"] = peak_memory_mb(name, H, B, T, cell, layers) if memory and on_cpu else math.nan
        if on_cpu:
            flops_per_char = 6 * gates * H * H * layers + 6 * gates * H * (V + H * (layers - 1)) + 6 * H * V
            row["roofline_chars_per_sec"] = gemm_flops_per_sec(H, B, seconds, gates, clock) / flops_per_char
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


PARALLEL_IMPLS = {"numpy": "numpy", "torch loop": "torch", "torch scan": "torch_fused"}


def run_parallel(shapes, seconds: float, cell: str, layers: int = 1,
                 clock: Callable[[], float] = time.perf_counter) -> list[dict]:
    """A parallel cell (mingru, minlstm) on the CPU beside the classic cell it simplifies (gru, lstm) at the
    same H and depth, all in turns in one process: the parallel cell on the NumPy backend, the torch loop and
    the torch scan; the classic one on the NumPy backend, the torch backend's default (its fused kernel on
    the CPU) and stock torch.nn."""
    classic = CELLS[cell].classic
    rows = []
    for H, B, T in shapes:
        ours, theirs = model_spec(cell, V, H, layers), model_spec(classic, V, H, layers)
        steps = {name: IMPLS[impl](H, B, T, np.random.default_rng(0), ours) for name, impl in PARALLEL_IMPLS.items()}
        steps[f"{classic} numpy"] = IMPLS["numpy"](H, B, T, np.random.default_rng(0), theirs)
        steps[f"{classic} torch"] = backend_step("torch", H, B, T, np.random.default_rng(0), theirs)
        steps[f"nn.{CELLS[classic].torch_twin}"] = torch_nn_step(H, B, T, np.random.default_rng(0), theirs)
        row = {"H": H, "B": B, "T": T, "cell": cell, "layers": layers,
               **measure_interleaved(steps, B * T, seconds, clock=clock)}
        rows.append(row)
        print(format_parallel_row(row, classic), flush=True)
    return rows


def parallel_header(cell: str) -> str:
    classic = CELLS[cell].classic
    nn = "nn." + CELLS[classic].torch_twin
    return (f"{'H':>4} {'B':>3} {'T':>4} | {'numpy':>9} {'t.loop':>9} {'t.scan':>9} | {classic + ' np':>9} "
            f"{classic + ' t':>9} {nn:>9} | {'np/np':>6} {'t/t':>6} {'t/nn':>6} {'scan/loop':>9}")


def format_parallel_row(row: dict, classic: str) -> str:
    nn = "nn." + CELLS[classic].torch_twin
    cps = {name: row[name]["chars_per_sec"] for name in row if isinstance(row[name], dict)}
    fastest_torch = max(cps["torch loop"], cps["torch scan"])
    return (f"{row['H']:>4} {row['B']:>3} {row['T']:>4} | {cps['numpy']:>9,.0f} {cps['torch loop']:>9,.0f} "
            f"{cps['torch scan']:>9,.0f} | {cps[classic + ' numpy']:>9,.0f} {cps[classic + ' torch']:>9,.0f} "
            f"{cps[nn]:>9,.0f} | {cps['numpy'] / cps[classic + ' numpy']:>6.2f} "
            f"{fastest_torch / cps[classic + ' torch']:>6.2f} {fastest_torch / cps[nn]:>6.2f} "
            f"{cps['torch scan'] / cps['torch loop']:>9.2f}")


def trainer_overhead(seconds: float) -> dict:
    """chars/s of the whole training loop (data, step, logging, progress bar) at the default config,
    against the same number of bare steps. Two runs of different lengths, each with one evaluation at
    its start and one at its end, differ only by the extra steps: their time difference is the loop's
    cost. Both figures are means (total time over steps), so slow outliers count in both."""
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (imported once, before the clock runs)

    from charrnn.config import compose, to_config
    from charrnn.training.loop import train

    cfg = to_config(compose("train"))
    H, B, T = cfg.model.hidden_size, cfg.train.batch_size, cfg.train.seq_length
    step = backend_step(cfg.backend.name, H, B, T, np.random.default_rng(0),
                        model_spec(cfg.model.cell, V, H, cfg.model.num_layers))
    probe = measure(step, B * T, seconds / 4)
    extra_steps = max(20, int(2 * seconds * probe["chars_per_sec"] / (B * T)))
    started = time.perf_counter()
    for _ in range(extra_steps):
        step()
    bare = extra_steps * B * T / (time.perf_counter() - started)

    def wall(steps: int) -> float:
        cfg.train.max_iters = cfg.train.lr_decay_iters = steps
        cfg.train.eval_interval = steps + 1
        with tempfile.TemporaryDirectory() as run_dir, open(os.devnull, "w") as quiet, \
                contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            started = time.perf_counter()
            train(cfg, Path(run_dir))
            return time.perf_counter() - started
    short = 10
    loop = extra_steps * B * T / (wall(short + extra_steps) - wall(short))
    return {"H": H, "B": B, "T": T, "bare_chars_per_sec": bare, "trainer_chars_per_sec": loop}


def header(cell: str) -> str:
    nn = "nn." + CELLS[cell].torch_twin
    return (f"{'H':>4} {'B':>3} {'T':>3} | {'numpy':>9} {'torch':>9} {'t.fused':>9} {nn:>9} {'t.loop':>9} "
            f"{'per-char':>9} | {'np/' + nn[3:]:>8} {'np/char':>8} {'np%roof':>7} {'tb/nn':>6} {'tf/nn':>6} | "
            f"{'np MB':>6} {'tb MB':>6} {'tf MB':>6} {'nn MB':>6}")


def format_row(row: dict) -> str:
    def cps(name):
        return f"{row[name]['chars_per_sec']:>9,.0f}" if name in row else f"{'-':>9}"

    def ratio(a, b, width=8):
        if a not in row or b not in row:
            return f"{'-':>{width}}"
        return f"{row[a]['chars_per_sec'] / row[b]['chars_per_sec']:>{width}.2f}"

    def mem(name):
        return f"{row[name]['peak_mb']:>6.1f}" if name in row and not math.isnan(row[name]["peak_mb"]) else f"{'-':>6}"
    roof = (f"{100 * row['numpy']['chars_per_sec'] / row['roofline_chars_per_sec']:>6.0f}%"
            if "numpy" in row else f"{'-':>7}")
    return (f"{row['H']:>4} {row['B']:>3} {row['T']:>3} | {cps('numpy')} {cps('torch')} {cps('torch_fused')} "
            f"{cps('torch_nn')} {cps('torch_loop')} {cps('per_char')} | {ratio('numpy', 'torch_nn')} "
            f"{ratio('numpy', 'per_char')} {roof} {ratio('torch', 'torch_nn', 6)} "
            f"{ratio('torch_fused', 'torch_nn', 6)} "
            f"| {mem('numpy')} {mem('torch')} {mem('torch_fused')} {mem('torch_nn')}")


if __name__ == "__main__":
    # The command sits above the bench and the acceptance check built on it (bench_cli.py).
    from charrnn.tools.bench_cli import main

    main()
