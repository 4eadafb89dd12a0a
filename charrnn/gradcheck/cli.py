"""Check the hand-written BPTT against autograd and finite differences: python -m charrnn.gradcheck

Builds a small random model (--cell rnn|lstm|gru, --layers N, --dropout P) and chunk, a non-zero
carried state included, then prints, for each parameter and each part of the initial state (h_prev,
and c_prev for the LSTM), the largest relative error of the NumPy backend's gradient against torch
autograd and against central finite differences, with PASS or FAIL; exits 1 on any FAIL.

--per-step NAME splits one weight's gradient into the terms the time steps contribute
(dL/dWhh = sum_t dh_raw_t h_{t-1}^T for the rnn, sum_t da_t h_{t-1}^T for the LSTM's gates a, ...) and
sets each beside autograd's own per-step term: the gradient for a copy of the weight that only step t
uses. A hand-derived formula that is wrong at some steps and right at others (a forgotten dh_next is
right at the last step only) shows there. It then follows the state back through time: dL/dh_t (and
the LSTM's cell-state path dL/dc_t) of every layer at every step, beside autograd's.
"""

import argparse
import sys

from charrnn.gradcheck.problem import TOLERANCES, random_problem
from charrnn.gradcheck.reference import numpy_loss
from charrnn.gradcheck.report import gradient_table, per_step_table
from charrnn.model import CELLS


def parse_args(argv):
    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
        return int(text)

    def probability(text: str) -> float:
        try:
            p = float(text)
        except ValueError:
            p = -1.0
        if not 0 <= p < 1:
            raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
        return p

    parser = argparse.ArgumentParser(prog="python -m charrnn.gradcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=CELLS, default="rnn", help="the recurrent cell (default rnn)")
    parser.add_argument("--layers", type=positive, default=1, help="stacked layers (default 1)")
    parser.add_argument("--dropout", type=probability, default=0.0, help="dropout between layers (default 0)")
    parser.add_argument("--batch-size", type=positive, default=3, help="B streams (default 3)")
    parser.add_argument("--seq-length", type=positive, default=6, help="T time steps (default 6)")
    parser.add_argument("--hidden-size", type=positive, default=5, help="H hidden units (default 5)")
    parser.add_argument("--vocab-size", type=positive, default=7, help="V characters (default 7)")
    parser.add_argument("--dtype", choices=TOLERANCES, default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-step", metavar="NAME",
                        help="also split one weight's gradient by time step (Wxh, Whh, Why, bh, by, bhn for the gru, "
                             "Whh_1 for layer 1, ...)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    B, T, H, V = args.batch_size, args.seq_length, args.hidden_size, args.vocab_size
    pb = random_problem(B, T, H, V, args.dtype, args.seed, args.cell, args.layers, args.dropout)
    if args.per_step is not None and args.per_step not in pb.params:
        print(f"--per-step {args.per_step}: not a parameter of this model; one of {', '.join(pb.params)}",
              file=sys.stderr)
        return 2
    tolerances = TOLERANCES[args.dtype]
    print(f"gradcheck {args.cell} x{args.layers} dropout={args.dropout} B={B} T={T} H={H} V={V} {args.dtype} "
          f"seed={args.seed}: loss {numpy_loss(pb):.4f} nats; relative error = max |difference| / max |entry|")
    lines, ok = gradient_table(pb, tolerances)
    if args.per_step:
        step_lines, step_ok = per_step_table(args.per_step, pb, tolerances["autograd"])
        lines += [""] + step_lines
        ok &= step_ok
    print("\n".join(lines))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1
