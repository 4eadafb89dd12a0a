"""The BPTT tutor: checks a learner's own backward pass and says where and why it goes wrong.

    charrnn.check_bptt("my_rnn.py")           python -m charrnn.gradcheck --yours my_rnn.py

It loads their file in a sandbox (learner.py, sandbox.py), finds each implementation by its shape
(shapes.py), runs it on a few small random problems in float64 (a non-zero carried state where the
shape has one) and compares every output and gradient with torch autograd on the same math in their
layout (exact.py). When one is wrong it shows the per-step picture (picture.py) and names the
mistake from the table of classic ones (diagnosis.py, codes.py). report.py prints it all.
"""

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from charrnn.gradcheck.tutor import learner
from charrnn.gradcheck.tutor.codes import CODES
from charrnn.gradcheck.tutor.diagnosis import Finding, diagnose
from charrnn.gradcheck.tutor.exact import exact, exact_terms
from charrnn.gradcheck.tutor.picture import MAX_STEPS, first_step_only, pictures
from charrnn.gradcheck.tutor.pointers import pointers, single_precision
from charrnn.gradcheck.problem import TOLERANCES, relative_error
from charrnn.gradcheck.tutor.sandbox import LearnerError, Sandbox
from charrnn.gradcheck.tutor.shapes import NotWritten, Shape, in_place

# The other problems each check runs, beside the one the options describe: other sizes (so that a
# factor of T is told from one of B*T, and a transposed matrix from a square one) and other seeds.
OTHER_SIZES = ({"B": 2, "T": 4, "H": 3, "V": 4}, {"B": 4, "T": 3, "H": 4, "V": 3})


@dataclass
class Options:
    batch_size: int = 3
    seq_length: int = 6
    hidden_size: int = 5
    vocab_size: int = 7
    seed: int = 0
    cell: str = "rnn"            # for charrnn's contract with spec
    arrays: str = "auto"         # "numpy", "torch", or by what the learner's functions compute with
    per_step: str | None = None  # the gradient whose per-step table is printed (and computed when all pass)
    time_limit: float = 30.0


@dataclass
class Check:
    name: str
    error: float        # the largest relative error over the problems
    passed: bool


@dataclass
class Diagnosis:
    code: str
    detail: str
    gradients: list
    title: str
    evidence: str
    math: str
    fix: str
    lines: list         # "line N: text" of the learner's file where to look


@dataclass
class Implementation:
    function: str
    signature: str
    layout: str
    family: str
    cell: str
    arrays: str
    status: str                      # "pass", "fail", "error", "not written", "no partner" or "not a shape"
    problems: list = field(default_factory=list)
    tolerance: float = 0.0
    outputs: list = field(default_factory=list)     # Check of each forward output
    gradients: list = field(default_factory=list)   # Check of each gradient
    summary: str = ""                               # which gradients are right and wrong, in words
    per_step: dict = field(default_factory=dict)    # gradient -> {"split", "problem", "steps", "by_distance"}
    shown: str | None = None                        # the gradient whose per-step table the report prints
    diagnosis: list = field(default_factory=list)   # Diagnosis
    notes: list = field(default_factory=list)
    error: dict | None = None       # {"message", "traceback", "output"} when status is "error"


@dataclass
class TutorResult:
    """What check_bptt found (--json prints the same as one object; docs/model.md lists the fields)."""

    file: str
    status: str                      # "pass", "fail" or "error"
    exit_code: int                   # 0, 1, 2
    implementations: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    error: dict | None = None        # {"message", "traceback", "output"} when the code could not be checked

    def to_json(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        from charrnn.gradcheck.tutor.report import report

        return report(self)


def problems(shape: Shape, options: Options) -> list:
    sizes = [{"B": options.batch_size, "T": options.seq_length, "H": options.hidden_size, "V": options.vocab_size},
             *OTHER_SIZES]
    return [shape.case(s, options.seed + i) for i, s in enumerate(sizes)]


def summary(shape: Shape, checks: list[Check]) -> str:
    """Which gradients are right and which wrong, in words a learner can act on."""
    wrong = [c.name for c in checks if not c.passed]
    right = [c.name for c in checks if c.passed]
    by_role = {c.name: shape.roles.get(shape.grads[c.name]) for c in checks}
    head = [g for g in right if by_role[g] in ("Why", "by")]
    recurrence = [g for g in shape.grads if by_role[g] in ("Wxh", "Whh", "bh")]
    if not wrong:
        return "every gradient is right"
    if not right:
        return f"every gradient is wrong ({', '.join(wrong)})"
    if head and len(head) == len(right) and set(recurrence) <= set(wrong):
        return (f"{' and '.join(head)} {'are' if len(head) > 1 else 'is'} right: the output layer is fine; every "
                f"gradient that flows through the recurrence is wrong ({', '.join(wrong)})")
    if set(wrong) <= set(shape.state_grads()):
        return f"every weight's gradient is right; only the carried state's is wrong ({', '.join(wrong)})"
    return f"right: {', '.join(right)}; wrong: {', '.join(wrong)}"


def shown_gradient(shape: Shape, checks: list[Check], asked: str | None) -> str | None:
    if asked is not None:
        return asked
    weights = shape.weight_grads()
    wrong = [c.name for c in checks if not c.passed and c.name in weights]
    recurrent = [g for g in weights if shape.roles.get(shape.grads[g]) == "Whh"]
    return recurrent[0] if recurrent and (not wrong or recurrent[0] in wrong) else (wrong or weights)[0]


def where_they_part(table: dict, tolerance: float) -> str:
    """What the per-step picture shows, in words, for a mistake the table has no code for."""
    if not table["split"]:
        wrong = [row["s"] for row in table["steps"] if row["error"] > tolerance]
        if not wrong:
            return "the picture's weight is right: compare the other gradients"
        return (f"the gradient of step s's loss is right up to s = {wrong[0] - 1} and wrong from s = {wrong[0]}"
                if wrong[0] else "wrong already for the first step's loss")
    rows = table["by_distance"]
    wrong = [row["k"] for row in rows if row["error"] > tolerance]
    if not wrong:
        return "every term of the picture's weight is right: compare the other gradients"
    if wrong[0] == 0:
        return ("wrong already for each step's own loss (k = 0): look at what step t computes on its own (the "
                "derivative through the nonlinearity, the products with x_t and h_{t-1}, the loss's gradient dy_t)")
    right = "right for each step's own loss (k = 0)" if wrong[0] == 1 else f"right up to k = {wrong[0] - 1} steps back"
    words = f"{right}, wrong from k = {wrong[0]}: look at what carries the gradient from h_t back to h_{{t-1}}"
    ratios = [row["yours"] / row["exact"] for row in rows[1:] if row["exact"] > 0]
    r = ratios[0] if ratios else 0.0
    if r > 0 and all(abs(q - r ** (k + 1)) <= 1e-6 * r ** (k + 1) for k, q in enumerate(ratios)):
        words += f"; your terms k steps back are {r:.6g}^k times the exact ones, a factor {r:.6g} per step back"
    return words


def compare(names, yours: list[dict], truth: list[dict], tolerance: float) -> list[Check]:
    """Each value against the exact one, its largest relative error over the problems."""
    errors = {name: max(relative_error(y[name], t[name]) for y, t in zip(yours, truth)) for name in names}
    return [Check(name, error, error <= tolerance) for name, error in errors.items()]


def per_step(shape: Shape, box: Sandbox, loaded, case) -> tuple[dict, str]:
    """The picture of every weight gradient on the case's first MAX_STEPS steps (picture.py), and its problem."""
    case = shape.truncate(case, min(case.sizes["T"], MAX_STEPS))
    return pictures(shape, box, loaded, case, exact(shape, case).states, exact_terms(shape, case)), case.label()


def tables(found: dict, problem: str) -> dict:
    return {g: {"split": p.split, "problem": problem, "steps": p.rows(), "by_distance": p.by_distance()}
            for g, p in found.items()}


def signature(table: dict, tolerance: float) -> Finding | None:
    """elementwise-chain named by its signature where no hypothesis reproduces the numbers (the learner's
    own form of the chain, per-step vectors or matrices multiplied elementwise): right for each step's own
    loss and one step back, and clearly wrong (far beyond round-off) at every distance from two steps back.
    No other code of the table is right one step back and wrong two back, so the signature names this one."""
    errors = [row["error"] for row in table["by_distance"] if row["exact"] > 0]
    if len(errors) < 4 or max(errors[:2]) > tolerance or min(errors[2:]) <= 100 * tolerance:
        return None
    return Finding("elementwise-chain", "by its signature: right at k = 0 and 1, wrong at every k from 2 (relative "
                                        f"errors {', '.join(f'{e:.1e}' for e in errors[2:])})")


def diagnoses(shape: Shape, loaded, result: Implementation, cases, yours, exacts) -> list[Diagnosis]:
    wrong_outputs = [c.name for c in result.outputs if not c.passed]
    if all(c.passed for c in result.gradients):
        findings = [Finding("unknown", f"every gradient is right, but what your forward returns "
                                       f"({', '.join(wrong_outputs)}) is not the exact value")]
    else:
        findings = diagnose(shape, cases, [{g: y[g] for g in shape.grads} for y in yours], [e.grads for e in exacts])
        named = signature(result.per_step[result.shown], result.tolerance) if result.shown is not None else None
        if [f.code for f in findings] == ["unknown"] and named is not None:
            findings = [named]
    out = []
    for f in findings:
        if f.code == "unknown" and not f.detail and result.shown is not None:
            f.detail = where_they_part(result.per_step[result.shown], result.tolerance)
        code = CODES[f.code]
        out.append(Diagnosis(f.code, f.detail, list(f.grads), code.title, code.evidence, code.math,
                             code.fix(shape.family, shape.cell), pointers(loaded.source, shape, f.code, f.grads)))
    return out


def single_inside(shape: Shape, loaded, yours: list[dict], exacts) -> list[str]:
    """Where the file makes float32 arrays, when that is all that parts its values from the exact ones:
    every output and gradient agrees to the float32 bar, and one at least is off by more than float64's."""
    names = list(shape.outputs) + list(shape.grads)
    truth = [{**e.outputs, **e.grads} for e in exacts]
    errors = [relative_error(y[n], t[n]) for n in names for y, t in zip(yours, truth)]
    if max(errors) <= TOLERANCES["float64"]["autograd"] or max(errors) > TOLERANCES["float32"]["autograd"]:
        return []
    return single_precision(loaded.source)[:3]


def check_implementation(shape: Shape, box: Sandbox, loaded, options: Options) -> Implementation:
    if options.per_step is not None and options.per_step not in shape.weight_grads():
        raise LearnerError(f"--per-step {options.per_step}: not a weight gradient of {shape.name}; one of "
                           f"{', '.join(shape.weight_grads())}")
    cases = problems(shape, options)
    yours, touched = [], []
    for case in cases:
        yours.append(shape.run(box, loaded, case))
        touched += [name for name in in_place(shape, box.changed) if name not in touched]
    exacts = [exact(shape, case) for case in cases]
    single = any(a.dtype == np.float32 for y in yours for a in y.values())
    tolerance = TOLERANCES["float32" if single else "float64"]["autograd"]
    result = Implementation(shape.name, shape.signature, shape.layout, shape.family, shape.cell, shape.arrays, "pass",
                            [case.label() for case in cases], tolerance)
    if single:
        result.notes.append(f"your code returned float32 arrays: checked against the float32 bar {tolerance:g}; "
                            f"compute in float64 to be held to 1e-10")
    elif inside := single_inside(shape, loaded, yours, exacts):
        result.tolerance = tolerance = TOLERANCES["float32"]["autograd"]
        result.notes.append(f"your code returned float64 arrays, but rounds to float32 inside ({'; '.join(inside)}): "
                            f"every value agrees to float32's round-off, so it is checked against the float32 bar "
                            f"{tolerance:g}; make those arrays float64 to be held to 1e-10")
    if touched:
        result.notes.append(f"warning: your code changes arrays it was handed, in place: {', '.join(touched)}. The "
                            f"gradients above are checked on what it returned, but a caller that uses "
                            f"{'them' if len(touched) > 1 else 'it'} afterwards (a numeric gradient check, the next "
                            f"step) sees other numbers: work on a copy (.copy()), or add with a + b, not +=")
    result.outputs = compare(shape.outputs, yours, [e.outputs for e in exacts], tolerance)
    result.gradients = compare(shape.grads, yours, [e.grads for e in exacts], tolerance)
    result.summary = summary(shape, result.gradients)
    failed = not all(c.passed for c in result.outputs + result.gradients)
    if shape.through_time and (failed or options.per_step):
        found, problem = per_step(shape, box, loaded, cases[0])
        result.per_step = tables(found, problem)
        result.shown = shown_gradient(shape, result.gradients, options.per_step)
    if failed:
        result.status = "fail"
        wrong_outputs = [c.name for c in result.outputs if not c.passed]
        if wrong_outputs and not all(c.passed for c in result.gradients):
            result.notes.append(f"your forward pass already differs ({', '.join(wrong_outputs)}): the gradients are "
                                f"checked against the exact forward, so fix the forward first")
        result.diagnosis = diagnoses(shape, loaded, result, cases, yours, exacts)
        if any(d.code == "first-step-wrap" for d in result.diagnosis) and result.per_step:
            result.per_step = tables({g: first_step_only(p) for g, p in found.items()}, problem)
            result.notes.append("the per-step table puts at step 0 all that parts each loss step's gradient from the "
                                "exact one: the inference's windows each have a first step of their own, and the "
                                "diagnosis shows the mistake is in the first step")
    return result


def not_checked(shape: Shape, status: str, note: str, error: dict | None = None) -> Implementation:
    return Implementation(shape.name, shape.signature, shape.layout, shape.family, shape.cell, shape.arrays, status,
                          notes=[note], error=error)


def with_hint(error: LearnerError, dropped: set) -> str:
    """The message, with what the learner can do about the usual causes of a raised exception."""
    message = error.message
    if error.raised is None:
        return message
    if re.search(r"dtype|[Dd]ouble|[Ff]loat", error.raised):
        message += "; the check hands your code float64 arrays: make the ones it creates float64 too"
    if "Missing parentheses in call to 'print'" in error.raised or re.match(
            r"NameError: name '(xrange|unicode|raw_input|basestring)' is not defined", error.raised):
        message += ("; this is Python 2 code: make it Python 3 (print(...), range for xrange; the 2to3 tool does "
                    "both) and run the check again")
    missing = re.match(r"NameError: name '(\w+)' is not defined", error.raised)
    if missing and missing.group(1) in dropped:
        message += (f"; {missing.group(1)} is set by the script part of your file, which the check left out: set it "
                    f"inside the function, or from the arguments")
    return message


def run_check(path, function: str | None, options: Options, box: Sandbox) -> TutorResult:
    """Each implementation on its own: one's exception, skeleton or missing partner never hides another's result."""
    path = Path(path)
    result = TutorResult(str(path), "pass", 0)
    dropped: set = set()
    try:
        if not path.is_file():
            raise LearnerError(f"{path}: no such file; give the path of your .py file")
        loaded, result.notes, dropped = learner.load(box, path)
        shapes = learner.find_shapes(loaded, path, function, options.cell, options.arrays)
        alone = function is not None or len(shapes) == 1
        for shape in shapes:
            if isinstance(shape, learner.Skipped):
                result.implementations.append(Implementation(shape.name, shape.signature, "", "", "", "", shape.status,
                                                             notes=[shape.why]))
                continue
            try:
                result.implementations.append(check_implementation(shape, box, loaded, options))
            except NotWritten as skeleton:
                if alone:
                    raise LearnerError(f"{skeleton}: write it first (a skeleton has nothing to check)") from None
                result.implementations.append(not_checked(shape, "not written", str(skeleton)))
            except LearnerError as error:
                if alone:
                    raise
                result.implementations.append(not_checked(shape, "error", with_hint(error, dropped), {
                    "message": with_hint(error, dropped), "traceback": error.traceback, "output": error.output}))
    except LearnerError as error:
        return TutorResult(str(path), "error", 2, result.implementations, result.notes,
                           {"message": with_hint(error, dropped), "traceback": error.traceback,
                            "output": error.output})
    checked = [i for i in result.implementations if i.status in ("pass", "fail")]
    errors = [i for i in result.implementations if i.status == "error"]
    if any(i.status == "fail" for i in checked):
        result.status, result.exit_code = "fail", 1
    elif errors:
        first = errors[0]
        result.status, result.exit_code = "error", 2
        result.error = {"message": f"{first.function}: {first.error['message']}", "traceback": None, "output": ""}
    elif not checked:
        message = "every implementation in the file is a skeleton that returns None: write one first"
        if any(i.status != "not written" for i in result.implementations):
            message = "nothing in the file could be checked: " + "; ".join(
                i.notes[0] for i in result.implementations)
        return TutorResult(str(path), "error", 2, result.implementations, result.notes,
                           {"message": message, "traceback": None, "output": ""})
    return result


def split_function(path: str) -> tuple[str, str | None]:
    """FILE:FUNCTION -> (FILE, FUNCTION); FILE -> (FILE, None)."""
    head, colon, tail = str(path).rpartition(":")
    return (head, tail) if colon and head and tail.isidentifier() else (str(path), None)


def check_bptt(path, function: str | None = None, *, quiet: bool = False, **options) -> TutorResult:
    """Check the BPTT in the learner's file `path` (FILE or FILE:FUNCTION) against torch autograd.

    Prints the report unless quiet, and returns it as a TutorResult (str() is the report, .to_json()
    the --json object, .exit_code 0 pass, 1 fail, 2 could not check). Options: batch_size, seq_length,
    hidden_size, vocab_size, seed (the first problem), cell (for charrnn's contract with spec),
    arrays ("numpy"/"torch"/"auto"), per_step (a weight gradient's name), time_limit (seconds a call may take).
    """
    if function is None:
        path, function = split_function(path)
    opts = Options(**options)
    with Sandbox(opts.time_limit) as box:
        result = run_check(path, function, opts, box)
    if not quiet:
        print(result)
    return result
