"""Check a backward pass through time: `python -m charrnn.gradcheck` checks charrnn's own (cli.py),
`python -m charrnn.gradcheck --yours FILE` a learner's (tutor/; charrnn.check_bptt in a notebook).

    problem.py     small random problems, and the relative error every check reports
    reference.py   the hand-written gradients and what they are checked against (autograd, finite differences)
    report.py      the tables printed
    stops.py       every signal to the command ends it in one line
    tutor/         the tutor for a learner's code (its __init__ lists its modules)
"""

__all__ = ["main"]


def main(argv=None) -> int:
    # Imported here, not above: `python -m charrnn.gradcheck` imports this package before its __main__ can
    # take the current folder off the import path and handle signals.
    from charrnn.gradcheck.cli import main as cli_main

    return cli_main(argv)
