"""Check a backward pass through time: `python -m charrnn.gradcheck` checks charrnn's own (cli.py),
`python -m charrnn.gradcheck --yours FILE` a learner's (tutor/; charrnn.check_bptt in a notebook).

    problem.py     small random problems, and the relative error every check reports
    reference.py   the hand-written gradients and what they are checked against (autograd, finite differences)
    report.py      the tables printed
    tutor/         the tutor for a learner's code (its __init__ lists its modules)
"""

from charrnn.gradcheck.cli import main

__all__ = ["main"]
