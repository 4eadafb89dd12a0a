"""Data-parallel throughput: python -m charrnn.tools.bench_distributed [--backend numpy|torch] [--rounds R] [--steps N].

One process with 2 BLAS threads against torchrun's 2 ranks with 1 thread each (and one process with 1
thread, for scale), on the default shape
(H=384, B=64 streams in all, T=64, float32, V=65, Adam, norm clipping), alternated in one sitting so
that both see the same load on a shared machine. Each run is a fresh subprocess timing N full training
steps after 3 warm-up steps: forward, backward, the gradient all-reduce, clipping, the update, and the
check for a stop that the trainer makes. Prints chars/s of each, the ratio per round, the share of a
2-rank step spent in the gradient all-reduce, and the all-reduce's own time when the ranks arrive
together.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from charrnn.backends import BACKENDS, make_backend
from charrnn.distributed import join, leave
from charrnn.tools.args import Parser, positive_int
from charrnn.tools.bench import LR, SETTINGS, V
from charrnn.model import init_params, model_spec, zero_state

H, B, T = 384, 64, 64


def worker(backend_name: str, steps: int) -> None:
    """One rank (or the one process): time `steps` training steps on its share of the B streams."""
    replicas = join(B)
    spec = model_spec("rnn", V, H)
    backend = make_backend(backend_name, spec, init_params(spec, "uniform", 0.01, 0, "float32"), SETTINGS, "cpu",
                           replicas)
    rng = np.random.default_rng(0)
    inputs, targets = replicas.local(rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T)))
    state = zero_state(spec, len(inputs), np.float32)
    for i in range(3 + steps):
        if i == 3:
            started, reduce_before = time.perf_counter(), getattr(replicas, "reduce_seconds", 0.0)
        state = backend.train_step(inputs, targets, state, LR).state_last
        replicas.agree(None, 0.0, clock=False)
    wall = time.perf_counter() - started
    reduce_seconds = getattr(replicas, "reduce_seconds", 0.0) - reduce_before
    figures = {"world_size": replicas.world_size, "chars_per_sec": B * T * steps / wall,
               "reduce_fraction": reduce_seconds / wall, "step_ms": 1000 * wall / steps}
    if replicas.world_size > 1:
        figures["bare_reduce_ms"] = bare_all_reduce_ms(sum(p.size for p in backend.export_params().values()))
    if replicas.is_main:
        print(json.dumps(figures))


def bare_all_reduce_ms(num_floats: int, repeats: int = 20) -> float:
    """Median time of the gradient's all-reduce alone, the ranks lined up by a barrier first: the
    transfer, without the wait for a slower rank that the in-step figure includes."""
    import torch
    import torch.distributed as dist

    flat, times = torch.zeros(num_floats + 1, dtype=torch.float32), []
    for _ in range(repeats):
        dist.barrier()
        started = time.perf_counter()
        dist.all_reduce(flat)
        times.append(time.perf_counter() - started)
    return 1000 * sorted(times)[repeats // 2]


def launch(world_size: int, threads: int, backend_name: str, steps: int) -> dict:
    """Time one run in a fresh process (or torchrun's world_size), `threads` BLAS threads each."""
    threads = str(threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    args = ["-m", "charrnn.tools.bench_distributed", "--worker", "--backend", backend_name, "--steps", str(steps)]
    if world_size > 1:
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world_size}", *args]
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise SystemExit(f"the {world_size}-process run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = Parser(prog="python -m charrnn.tools.bench_distributed", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", choices=tuple(BACKENDS))
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--steps", type=positive_int, default=30)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        try:
            worker(args.backend, args.steps)
        finally:
            leave()
        return
    print(f"{args.backend}, H={H} B={B} T={T} float32, {args.steps} steps a run; chars/s")
    print("round  1 process x 1 thread  1 process x 2 threads  2 ranks x 1 thread  ratio  all-reduce  2-rank step"
          "  bare all-reduce")
    for r in range(args.rounds):
        single = launch(1, 1, args.backend, args.steps)
        one, two = launch(1, 2, args.backend, args.steps), launch(2, 1, args.backend, args.steps)
        print(f"{r:5d}  {single['chars_per_sec']:20,.0f}  {one['chars_per_sec']:21,.0f}  "
              f"{two['chars_per_sec']:18,.0f}  "
              f"{two['chars_per_sec'] / one['chars_per_sec']:5.2f}  {two['reduce_fraction']:10.1%}  "
              f"{two['step_ms']:8.1f} ms  {two['bare_reduce_ms']:11.2f} ms")


if __name__ == "__main__":
    main()
