"""The tutor's report in words: what was checked, every output and gradient against the exact one,
which are right, the per-step picture of a wrong one, and the diagnosis with the line that fixes it."""

from charrnn.gradcheck.problem import TOLERANCES

ARRAYS = {"numpy": "NumPy arrays", "torch": "torch tensors"}
FAMILIES = {"min-char-rnn": "min-char-rnn's", "cs231n": "CS231n's", "charrnn": "charrnn's"}


def verdict(error: float, passed: bool) -> str:
    return f"{error:.1e}  {'PASS' if passed else 'FAIL'}"


def size(value: float, scale: float) -> str:
    """A term's size; what round-off leaves of a zero reads 0."""
    return f"{0.0 if value <= 1e-12 * scale else value:<13.4e}"


def step_table(name: str, table: dict) -> list[str]:
    lines = []
    scale = max([row["exact"] for row in table["steps"]] + [row["yours"] for row in table["steps"]])
    if table["split"]:
        lines += [f"{name} by time step ({table['problem']}): your term of each step beside autograd's gradient for",
                  "a copy of the weight that only step t uses (yours inferred from your totals on windows of the",
                  "chunk, see docs/model.md)",
                  f"{'t':>5}   {'|yours|':13}{'|exact|':13}relative error"]
    else:
        lines += [f"{name} by loss step ({table['problem']}): the gradient of step s's loss alone, yours beside the",
                  "exact (a chunk here always starts from c = 0, so the steps' terms cannot be separated further)",
                  f"{'s':>5}   {'|yours|':13}{'|exact|':13}relative error"]
    for row in table["steps"]:
        lines.append(f"{row['t']:>5}   {size(row['yours'], scale)}{size(row['exact'], scale)}{row['error']:.1e}")
    if table["by_distance"]:
        lines += ["how far back the gradient travelled: k = s - t, from the loss at step s to the use at step t",
                  f"{'k':>5}   {'|yours|':13}{'|exact|':13}relative error"]
        lines += [f"{row['k']:>5}   {size(row['yours'], scale)}{size(row['exact'], scale)}{row['error']:.1e}"
                  for row in table["by_distance"]]
    return lines


def implementation_report(impl) -> list[str]:
    if impl.status == "not written":
        return [f"{impl.signature}: skipped, {impl.notes[0]} (not written yet)"]
    lines = [f"{impl.signature}: {FAMILIES[impl.family]} shape, {impl.cell}, {ARRAYS[impl.arrays]}; "
             f"problems {'; '.join(impl.problems)}"]
    width = max(len(c.name) for c in impl.outputs + impl.gradients) + 4
    for check in impl.outputs + impl.gradients:
        lines.append(f"  {check.name:{width}}{verdict(check.error, check.passed)}")
    lines += [f"  note: {note}" for note in impl.notes]
    if impl.status == "fail":
        lines += ["", impl.summary]
    if impl.shown is not None:
        lines += [""] + step_table(impl.shown, impl.per_step[impl.shown])
    for d in impl.diagnosis:
        lines += ["", f"diagnosis: {d.code}: {d.title}"]
        if d.detail:
            lines.append(f"  {'where:' if d.code == 'unknown' else 'which:':10}{d.detail}")
        lines += [f"  evidence: {d.evidence}", f"  right:    {d.math}"]
        if d.fix != d.math:
            lines.append(f"  fix:      {d.fix}")
        lines += [f"  {'look at:' if i == 0 else '':10}{line}" for i, line in enumerate(d.lines)]
    return lines


def report(result) -> str:
    if result.status == "error":
        lines = [result.error["output"].rstrip()] if result.error["output"] else []
        lines += [result.error["traceback"].rstrip()] if result.error["traceback"] else []
        return "\n".join(lines + [f"note: {note}" for note in result.notes] + [f"error: {result.error['message']}"])
    problems = max(len(impl.problems) for impl in result.implementations)
    lines = [f"check of {result.file}: each implementation on {problems} random problems in float64 against torch",
             "autograd on the same math; relative error = max |difference| / max |entry|, the largest over the",
             f"problems; bar {TOLERANCES['float64']['autograd']:g}"]
    lines += [f"note: {note}" for note in result.notes]
    for impl in result.implementations:
        lines += [""] + implementation_report(impl)
    lines += ["", "PASS" if result.exit_code == 0 else "FAIL"]
    return "\n".join(lines)
