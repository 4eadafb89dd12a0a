"""Check the hand-written BPTT against autograd and finite differences: python -m charrnn.gradcheck
(and yours: python -m charrnn.gradcheck --yours my_rnn.py, see tutor/)

Builds a small random model (--cell rnn|lstm|gru|mingru|minlstm, --layers N, --dropout P; for mingru and
minlstm the paper's options --activation g, --residual, --norm rms|layer) and chunk, a non-zero
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
import errno
import json
import sys

from charrnn.gradcheck.problem import TOLERANCES, random_problem
from charrnn.gradcheck.reference import numpy_loss
from charrnn.gradcheck.report import gradient_table, per_step_table
from charrnn.gradcheck.tutor.sandbox import MAX_TIME_LIMIT, Sandbox
from charrnn.gradcheck.tutor.check import Options, run_check, split_function
from charrnn.cells import CELLS
from charrnn.model import ACTIVATIONS, NORMS
from charrnn.terminal import Output, OutputFailed, silence
from charrnn.tools.args import Parser


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

    def seconds(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= MAX_TIME_LIMIT:
            raise argparse.ArgumentTypeError(f"must be a whole number of seconds from 1 to {MAX_TIME_LIMIT} (a day), "
                                             f"got {text!r}")
        return int(text)

    parser = Parser(prog="python -m charrnn.gradcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=CELLS, default="rnn", help="the recurrent cell (default rnn)")
    parser.add_argument("--layers", type=positive, default=1, help="stacked layers (default 1)")
    parser.add_argument("--dropout", type=probability, default=0.0, help="dropout between layers (default 0)")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="none",
                        help="mingru and minlstm: the paper's g on the candidate (model.activation; default none)")
    parser.add_argument("--residual", action="store_true",
                        help="mingru and minlstm: a residual path around each layer from 1 up (model.residual)")
    parser.add_argument("--norm", choices=NORMS, default="none",
                        help="mingru and minlstm: pre-norm of each layer's input from 1 up and the head's "
                             "(model.norm; default none)")
    parser.add_argument("--batch-size", type=positive, default=3, help="B streams (default 3)")
    parser.add_argument("--seq-length", type=positive, default=6, help="T time steps (default 6)")
    parser.add_argument("--hidden-size", type=positive, default=5, help="H hidden units (default 5)")
    parser.add_argument("--vocab-size", type=positive, default=7, help="V characters (default 7)")
    parser.add_argument("--dtype", choices=TOLERANCES, default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-step", metavar="NAME",
                        help="also split one weight's gradient by time step (Wxh, Whh, Why, bh, by, bhn for the gru, "
                             "Whh_1 for layer 1, ...; with --yours, your gradient's name: dWhh, dWh, ...)")
    yours = parser.add_argument_group("checking your own BPTT (docs/model.md)")
    yours.add_argument("--yours", metavar="FILE[:FUNCTION]",
                       help="check the backward pass in your file against torch autograd, and say where and why it "
                            "goes wrong: min-char-rnn's lossFun, CS231n's rnn_/lstm_ forward/backward pairs, or "
                            "loss_and_grads (charrnn's contract, also an adapter for any other code)")
    yours.add_argument("--json", action="store_true", help="print the result as one JSON object")
    yours.add_argument("--arrays", choices=("auto", "numpy", "torch"), default="auto",
                       help="hand your code NumPy arrays or torch tensors (default: tensors if it computes with torch)")
    yours.add_argument("--time-limit", type=seconds, default=30, metavar="SECONDS",
                       help="how long one call of your code may take (default 30)")
    return parser.parse_args(argv)


def check_yours(args) -> int:
    if args.layers != 1 or args.dropout or args.dtype != "float64":
        print("error: --yours checks one layer in float64: leave out --layers, --dropout and --dtype", file=sys.stderr)
        return 2
    path, function = split_function(args.yours)
    options = Options(batch_size=args.batch_size, seq_length=args.seq_length, hidden_size=args.hidden_size,
                      vocab_size=args.vocab_size, seed=args.seed, cell=args.cell, arrays=args.arrays,
                      per_step=args.per_step, time_limit=args.time_limit)
    with Sandbox(options.time_limit) as box:
        result = run_check(path, function, options, box)
    if args.json:
        return write(json.dumps(result.to_json(), indent=2), result.exit_code)
    if result.status == "error":
        print(result, file=sys.stderr)
        return result.exit_code
    return write(str(result), result.exit_code)


def write(report: str, exit_code: int) -> int:
    """Print the report; where standard output fails, say so in one line (exit code 2). A reader that stops
    early (`| head`) is the end Unix tools expect: the exit code stays the check's."""
    out = Output(sys.stdout)
    try:
        out.write(report + "\n")
        out.flush()
    except OutputFailed as failed:
        silence(sys.stdout)   # Python's own flush at exit must not fail again
        if failed.__cause__.errno == errno.EPIPE:
            return exit_code
        print(f"error: cannot write the report to standard output: {failed.__cause__.strerror}", file=sys.stderr)
        return 2
    return exit_code


def main(argv=None) -> int:
    args = parse_args(argv)
    if sys.stdout is None:   # started with >&-
        print("error: standard output is closed, so the report has nowhere to go; run the check with its output on "
              "a terminal, a pipe or a file (> FILE)", file=sys.stderr)
        return 2
    if args.yours is not None:
        return check_yours(args)
    options = {"activation": args.activation, "residual": args.residual, "norm": args.norm}
    chosen = [f"--activation {args.activation}"] * (args.activation != "none") + ["--residual"] * args.residual + \
        [f"--norm {args.norm}"] * (args.norm != "none")
    if chosen and not CELLS[args.cell].parallel:
        print(f"error: {chosen[0]} is an option of the parallel cells, not of --cell {args.cell}: leave it out, or "
              f"use --cell mingru or --cell minlstm", file=sys.stderr)
        return 2
    B, T, H, V = args.batch_size, args.seq_length, args.hidden_size, args.vocab_size
    pb = random_problem(B, T, H, V, args.dtype, args.seed, args.cell, args.layers, args.dropout, **options)
    if args.per_step is not None and args.per_step not in pb.params:
        print(f"--per-step {args.per_step}: not a parameter of this model; one of {', '.join(pb.params)}",
              file=sys.stderr)
        return 2
    tolerances = TOLERANCES[args.dtype]
    lines, ok = gradient_table(pb, tolerances)
    if args.per_step:
        step_lines, step_ok = per_step_table(args.per_step, pb, tolerances["autograd"])
        lines += [""] + step_lines
        ok &= step_ok
    head = (f"gradcheck {' '.join([args.cell, *chosen])} x{args.layers} dropout={args.dropout} B={B} T={T} H={H} V={V} "
            f"{args.dtype} seed={args.seed}: loss {numpy_loss(pb):.4f} nats; relative error = max |difference| / max |entry|")
    return write("\n".join([head, *lines, "PASS" if ok else "FAIL"]), 0 if ok else 1)
