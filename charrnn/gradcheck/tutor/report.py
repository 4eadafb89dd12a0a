"""The tutor's report in words: what was checked, every output and gradient against the exact one,
which are right, the per-step picture of a wrong one, and the diagnosis with the line that fixes it."""

import textwrap

from charrnn.gradcheck.problem import TOLERANCES

WIDTH = 104
ARRAYS = {"numpy": "NumPy arrays", "torch": "torch tensors"}
FAMILIES = {"min-char-rnn": "min-char-rnn's", "cs231n": "CS231n's", "coursera": "Coursera's", "charrnn": "charrnn's"}
# What the report says of an implementation that was not checked, by its status.
NOT_CHECKED = {"not written": "skipped, {note} (not written yet)", "no partner": "not checked: {note}",
               "not a shape": "not checked: {note}", "error": "could not be checked: {note}"}


def wrapped(label: str, text: str) -> list[str]:
    """A labelled paragraph, its lines after the first indented under the text."""
    return textwrap.wrap(text, WIDTH, initial_indent=f"  {label:10}", subsequent_indent=" " * 12,
                         break_on_hyphens=False)


def verdict(error: float, passed: bool) -> str:
    return f"{error:.1e}  {'PASS' if passed else 'FAIL'}"


def size(value: float, scale: float) -> str:
    """A term's size; what round-off leaves of a zero reads 0."""
    return f"{0.0 if value <= 1e-12 * scale else value:<13.4e}"


def step_table(name: str, table: dict) -> list[str]:
    scale = max([row["exact"] for row in table["steps"]] + [row["yours"] for row in table["steps"]])
    if table["split"]:
        title = (f"{name} by time step ({table['problem']}): your term of each step beside autograd's gradient for "
                 f"a copy of the weight that only step t uses (yours inferred from your totals on windows of the "
                 f"chunk, see docs/model.md)")
    else:
        title = (f"{name} by loss step ({table['problem']}): the gradient of step s's loss alone, yours beside the "
                 f"exact (a chunk here always starts from c = 0, so the steps' terms cannot be separated further)")
    step = "t" if table["split"] else "s"
    lines = textwrap.wrap(title, WIDTH) + [f"{step:>5}   {'|yours|':13}{'|exact|':13}relative error"]
    for row in table["steps"]:
        lines.append(f"{row[step]:>5}   {size(row['yours'], scale)}{size(row['exact'], scale)}{row['error']:.1e}")
    if table["by_distance"]:
        lines += ["how far back the gradient travelled: k = s - t, from the loss at step s to the use at step t",
                  f"{'k':>5}   {'|yours|':13}{'|exact|':13}relative error"]
        lines += [f"{row['k']:>5}   {size(row['yours'], scale)}{size(row['exact'], scale)}{row['error']:.1e}"
                  for row in table["by_distance"]]
    return lines


def implementation_report(impl) -> list[str]:
    if impl.status in NOT_CHECKED:
        lines = textwrap.wrap(f"{impl.signature}: {NOT_CHECKED[impl.status].format(note=impl.notes[0])}", WIDTH,
                              subsequent_indent="  ")
        if impl.error:
            lines += [f"  | {line}" for part in (impl.error["output"], impl.error["traceback"]) if part
                      for line in part.rstrip().splitlines()]
        return lines
    lines = textwrap.wrap(f"{impl.signature}: {FAMILIES[impl.family]} shape ({impl.layout}), {impl.cell}, "
                          f"{ARRAYS[impl.arrays]}", WIDTH, subsequent_indent="  ")
    lines.append(f"  on {'; '.join(impl.problems)}")
    width = max(len(c.name) for c in impl.outputs + impl.gradients) + 4
    for check in impl.outputs + impl.gradients:
        lines.append(f"  {check.name:{width}}{verdict(check.error, check.passed)}")
    lines += [f"  note: {note}" for note in impl.notes]
    if impl.status == "fail":
        lines += [""] + textwrap.wrap(impl.summary, WIDTH)
    if impl.shown is not None:
        lines += [""] + step_table(impl.shown, impl.per_step[impl.shown])
    for d in impl.diagnosis:
        lines += [""] + textwrap.wrap(f"diagnosis: {d.code}: {d.title}", WIDTH, subsequent_indent="  ")
        if d.detail:
            lines += wrapped("where:" if d.code == "unknown" else "which:", d.detail)
        lines += wrapped("evidence:", d.evidence) + wrapped("right:", d.math)
        if d.fix != d.math:
            lines += wrapped("fix:", d.fix)
        lines += [f"  {'look at:' if i == 0 else '':10}{line}" for i, line in enumerate(d.lines)]
    return lines


def report(result) -> str:
    if result.status == "error" and not result.implementations:
        lines = [result.error["output"].rstrip()] if result.error["output"] else []
        lines += [result.error["traceback"].rstrip()] if result.error["traceback"] else []
        return "\n".join(lines + [f"note: {note}" for note in result.notes] + [f"error: {result.error['message']}"])
    problems = max([len(impl.problems) for impl in result.implementations] + [3])
    lines = textwrap.wrap(f"check of {result.file}: each implementation on {problems} random problems in float64 "
                          f"against torch autograd on the same math; relative error = max |difference| / max |entry|, "
                          f"the largest over the problems; bar {TOLERANCES['float64']['autograd']:g}", WIDTH)
    lines += [f"note: {note}" for note in result.notes]
    for impl in result.implementations:
        lines += [""] + implementation_report(impl)
    lines += ["", {0: "PASS", 1: "FAIL"}.get(result.exit_code) or f"error: {result.error['message']}"]
    return "\n".join(lines)
