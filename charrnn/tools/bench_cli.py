"""The bench's command: python -m charrnn.tools.bench (its options are in bench.py's docstring). Apart
from bench.py so that the bench's measurements sit below the acceptance check that uses them, and the
command, which runs either, above both."""

import argparse
import json
import sys
import time

from charrnn.cells import CELLS, with_kernel
from charrnn.cli import fail
from charrnn.devices import resolve_device
from charrnn.errors import UserError
from charrnn.tools import acceptance
from charrnn.tools.args import Parser, output_file, positive_int, positive_seconds, shape
from charrnn.tools.bench import (SHAPES, __doc__ as BENCH_DOC, _own_peak_memory_mb, header, parallel_header, run,
                                 run_parallel, trainer_overhead)


def main(argv=None) -> None:
    parser = Parser(prog="python -m charrnn.tools.bench", description=BENCH_DOC.splitlines()[0])
    parser.add_argument("--seconds", type=positive_seconds, default=2.0, help="timed seconds per measurement")
    parser.add_argument("--shapes", nargs="+", type=shape, help="H,B,T triples (default: the four reference shapes)")
    # the table measures each cell against its stock torch.nn twin and torch's fused kernel, and each parallel
    # cell against the classic one it simplifies
    parallel = [name for name, cell in CELLS.items() if cell.classic]
    parser.add_argument("--cell", choices=[*with_kernel(), *parallel], default="rnn",
                        help="the recurrent cell (default rnn): one with a stock torch.nn twin and a fused kernel, "
                             "or a parallel one (mingru, minlstm), timed beside the classic cell it simplifies")
    parser.add_argument("--layers", type=positive_int, default=1, help="stacked layers (default 1)")
    parser.add_argument("--no-trainer", action="store_true", help="skip the trainer loop's overhead")
    parser.add_argument("--json", type=output_file, help="also write the figures to this file")
    parser.add_argument("--device", default="cpu", help="where the torch implementations run: cpu (default), "
                                                        "cuda, cuda:N or mps")
    parser.add_argument("--cpu-time", action="store_true", help="time each step by this process's CPU time, "
                        "not the wall's: for a machine shared with other work, with OMP_NUM_THREADS=1")
    parser.add_argument("--check", action="store_true", help="run the torch backend's acceptance check on "
                                                             "--device (charrnn.tools.acceptance) instead")
    parser.add_argument("--peak-memory-of", nargs=2, metavar=("IMPL", "H,B,T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_memory_of:
        impl, dims = args.peak_memory_of
        print(_own_peak_memory_mb(impl, *shape(dims), args.cell, args.layers))
        return
    try:
        # a device this machine lacks is one line, before anything runs
        device = str(resolve_device(args.device, "--device"))
    except UserError as e:
        fail(str(e))
    clock = time.process_time if args.cpu_time else time.perf_counter
    if args.check:
        sys.exit(0 if acceptance.run(device, args.seconds, clock=clock) else 1)
    shapes = args.shapes or SHAPES
    if args.cell in parallel:
        parallel_table(args, shapes, device, clock)
        return
    print(f"chars/s of a full float32 training step (fwd, bwd, clip, Adam), V=65, {args.cell} x{args.layers}, "
          f"on {device}; medians{' of CPU time' if args.cpu_time else ''}")
    print(header(args.cell))
    rows = run(shapes, args.seconds, args.cell, args.layers, device=device, clock=clock)
    try:
        overhead = None if args.no_trainer or device != "cpu" else trainer_overhead(args.seconds)
    except UserError as e:
        overhead = None
        print(f"trainer loop: not measured ({e})")
    if overhead:
        print(f"trainer loop at the default config (H={overhead['H']}, B={overhead['B']}, T={overhead['T']}): "
              f"{overhead['trainer_chars_per_sec']:,.0f} chars/s against {overhead['bare_chars_per_sec']:,.0f} "
              f"for the bare step ({overhead['trainer_chars_per_sec'] / overhead['bare_chars_per_sec']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": rows, "trainer": overhead}, f, indent=2)


def parallel_table(args, shapes, device: str, clock) -> None:
    classic = CELLS[args.cell].classic
    if device != "cpu":
        fail(f"--cell {args.cell} is timed on the CPU only: leave out --device")
    print(f"chars/s of a full float32 training step (fwd, bwd, clip, Adam), V=65, {args.cell} x{args.layers} beside "
          f"{classic} x{args.layers} in one process, on the CPU; medians{' of CPU time' if args.cpu_time else ''}; "
          f"np/np, t/t, t/nn: {args.cell}'s chars/s over {classic}'s (torch: the faster of loop and scan)")
    print(parallel_header(args.cell))
    rows = run_parallel(shapes, args.seconds, args.cell, args.layers, clock)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": rows}, f, indent=2)
