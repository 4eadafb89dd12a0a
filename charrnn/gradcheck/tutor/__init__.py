"""The BPTT tutor: checks a learner's own backward pass and says where and why it goes wrong.

    check.py        checks each implementation in the file (check_bptt); the result object
    learner.py      loads the file, finds the implementations by name and signature
    sandbox.py      runs the learner's code in a process of its own (worker.py), under a time limit
    shapes.py       the shapes learners write: shape_minchar.py, shape_cs231n.py,
                    shape_coursera.py, shape_charrnn.py
    exact.py        torch autograd on the same math, in the learner's layout
    picture.py      the per-step picture, inferred from the learner's totals
    mistakes.py     a hand-written backward that makes each classic mistake on purpose
    diagnosis.py    which mistakes explain the learner's numbers
    codes.py        the table of diagnoses: evidence, math, the fix in each shape's words
    pointers.py     the lines of the learner's file to look at
    report.py       the report in words
"""
