"""Check a backward pass through time: `python -m charrnn.gradcheck` checks charrnn's own (cli.py).

    problem.py     small random problems, and the relative error every check reports
    reference.py   the hand-written gradients and what they are checked against (autograd, finite differences)
    report.py      the tables printed
"""

from charrnn.gradcheck.cli import main

__all__ = ["main"]
