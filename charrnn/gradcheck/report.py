"""The tables gradcheck prints: every gradient against its references, one weight's gradient split by
time step, and the state's gradient through time."""

import numpy as np

from charrnn.gradcheck.problem import Problem, relative_error
from charrnn.gradcheck.reference import (autograd_by_step, autograd_gradients, finite_differences, numpy_bptt,
                                         numpy_per_step, term)


def verdict(error: float, tolerance: float) -> str:
    return f"{error:.1e}  {'PASS' if error <= tolerance else 'FAIL'}"


def gradient_table(pb: Problem, tolerances: dict[str, float]) -> tuple[list[str], bool]:
    ours, _, _ = numpy_bptt(pb)
    references = {"autograd": autograd_gradients(pb), "finite differences": finite_differences(pb)}
    width = max(8, *(len(k) + 2 for k in ours))
    lines = [f"{'':{width}}{'shape':14}" + "".join(f"{'NumPy vs ' + ref:30}" for ref in references)]
    ok = True
    for k, grad in ours.items():
        cells = []
        for ref, reference in references.items():
            error = relative_error(grad, reference[k])
            ok &= error <= tolerances[ref]
            cells.append(f"{verdict(error, tolerances[ref]):30}")
        lines.append(f"{k:{width}}{str(grad.shape):14}" + "".join(cells))
    lines.append(f"{'tolerance':{width + 14}}" + "".join(f"{tolerances[ref]:<30.0e}" for ref in references))
    return [line.rstrip() for line in lines], ok


def per_step_table(name: str, pb: Problem, tolerance: float) -> tuple[list[str], bool]:
    _, cache, traces = numpy_bptt(pb)
    ours = numpy_per_step(name, pb, cache)
    theirs, their_traces = autograd_by_step(pb, name)
    total = autograd_gradients(pb)[name]
    lines = [f"dL/d{name} = sum_t {term(pb.spec, name)}: each step's NumPy term beside autograd's gradient",
             f"for a copy of {name} that only step t uses",
             f"{'t':>5}   {'|NumPy term|':14}{'|autograd term|':17}relative error"]
    ok = True
    for t, (a, b) in enumerate(zip(ours, theirs)):
        error = relative_error(a, b)
        ok &= error <= tolerance
        lines.append(f"{t:>5}   {np.linalg.norm(a):<14.4e}{np.linalg.norm(b):<17.4e}{verdict(error, tolerance)}")
    error = relative_error(ours.sum(axis=0), total)
    ok &= error <= tolerance
    lines.append(f"{'sum':>5}   {np.linalg.norm(ours.sum(axis=0)):<14.4e}{np.linalg.norm(total):<17.4e}"
                 f"{verdict(error, tolerance)}   (autograd's term: the whole gradient)")
    state_lines, state_ok = state_table(pb, traces, their_traces, tolerance)
    return lines + [""] + state_lines, ok and state_ok


def state_table(pb: Problem, ours: list, theirs: list, tolerance: float) -> tuple[list[str], bool]:
    """dL/dh_t (and the LSTM's dL/dc_t) of every layer at every step, beside autograd's."""
    names = pb.spec.state_names
    lines = [f"the state's gradient through time, every use counted ({', '.join(f'd{n}' for n in names)}: "
             f"|NumPy|, |autograd|, relative error)"]
    ok = True
    for layer in range(pb.spec.num_layers):
        lines.append(f"layer {layer}")
        for t in range(pb.inputs.shape[1]):
            cells = []
            for n in names:
                a, b = ours[layer][n][t], theirs[layer][n][t]
                error = relative_error(a, b)
                ok &= error <= tolerance
                cells.append(f"{np.linalg.norm(a):<11.4e}{np.linalg.norm(b):<11.4e}{verdict(error, tolerance):16}")
            lines.append(f"{'t=' + str(t):>5}   " + "   ".join(cells))
    return [line.rstrip() for line in lines], ok
