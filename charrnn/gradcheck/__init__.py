"""Check a backward pass through time: `python -m charrnn.gradcheck` checks charrnn's own (cli.py),
`python -m charrnn.gradcheck --yours FILE` a learner's (tutor.py; charrnn.check_bptt in a notebook).

    problem.py     small random problems, and the relative error every check reports
    reference.py   the hand-written gradients and what they are checked against (autograd, finite differences)
    report.py      the tables printed

The tutor, for a learner's code:
    tutor.py            checks each implementation in the file; the result object
    learner.py          loads the file, finds the implementations by name and signature
    sandbox.py          runs the learner's code in a process of its own (worker.py), under a time limit
    shapes.py           the shapes learners write: shape_minchar.py, shape_cs231n.py, shape_charrnn.py
    exact.py            torch autograd on the same math, in the learner's layout
    picture.py          the per-step picture, inferred from the learner's totals
    mistakes.py         a hand-written backward that makes each classic mistake on purpose
    diagnosis.py        which mistakes explain the learner's numbers
    codes.py            the table of diagnoses: evidence, math, the fix in each shape's words
    pointers.py         the lines of the learner's file to look at
    tutor_report.py     the report in words
"""

from charrnn.gradcheck.cli import main

__all__ = ["main"]
