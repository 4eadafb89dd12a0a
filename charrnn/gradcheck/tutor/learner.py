"""The learner's file: loaded in the sandbox, and the implementations in it found by name and signature.

A file that is a whole training script (min-char-rnn.py reads input.txt and trains forever at import)
is not run as a script: a loop at module level, or an import that fails, has only the file's imports,
definitions and constant assignments run, and a note says so. The functions under check run as written.
"""

import ast
from pathlib import Path

from charrnn.gradcheck.tutor.sandbox import LearnerError, Loaded, Sandbox
from charrnn.gradcheck.tutor.shape_charrnn import CharRNN
from charrnn.gradcheck.tutor.shape_cs231n import PAIRS, CS231n
from charrnn.gradcheck.tutor.shape_minchar import MinChar
from charrnn.gradcheck.tutor.shapes import Shape, torch_functions

SHAPES_UNDERSTOOD = ("lossFun(inputs, targets, hprev) (min-char-rnn's); rnn_step_forward/rnn_step_backward, "
                     "rnn_forward/rnn_backward, lstm_step_forward/lstm_step_backward, lstm_forward/lstm_backward "
                     "(CS231n's); loss_and_grads(params, inputs, targets, h_prev[, spec]) (charrnn's, also the "
                     "adapter for any other code: see docs/model.md)")
MINCHAR_PARAMS = ["inputs", "targets", "hprev"]
CHARRNN_PARAMS = [["params", "inputs", "targets", state] for state in ("h_prev", "hprev", "state")]


def script_loop(source: str) -> int | None:
    """The line of a loop at module level (a training script's), or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    return next((node.lineno for node in tree.body if isinstance(node, (ast.For, ast.While))), None)


def load(box: Sandbox, path: Path) -> tuple[Loaded, list[str]]:
    source = path.read_text(encoding="utf-8", errors="replace")
    line = script_loop(source)
    if line is not None:
        note = (f"{path.name} runs a loop at module level (line {line}); its imports, definitions and constants were "
                f"loaded, not its script part")
        return box.load(path, definitions_only=True), [note]
    try:
        return box.load(path), []
    except LearnerError as error:
        if error.raised is None:
            raise
        failed = LearnerError(f"{path.name} does not load: {error.raised}; the traceback above is from your file",
                              error.traceback, error.output)
    try:
        loaded = box.load(path, definitions_only=True)
    except LearnerError:
        raise failed from None
    if not loaded.functions:
        raise failed
    note = (f"importing {path.name} raised {failed.traceback.strip().splitlines()[-1]}; its imports, definitions and "
            f"constants were loaded, not its script part")
    return loaded, [note]


def _shape_for(name: str, by_name: dict, explicit: bool, cell: str) -> Shape | None:
    params = by_name[name]["params"]
    for pair, pair_cell in PAIRS.items():
        if name in pair:
            partner = pair[1 - pair.index(name)]
            if partner not in by_name:
                raise LearnerError(f"{name} needs its partner {partner}, which the file does not define")
            return CS231n(pair_cell, pair, "numpy")
    if name == "lossFun" or params[:3] == MINCHAR_PARAMS or explicit and by_name[name]["required"] == 3:
        if by_name[name]["required"] != 3:
            raise LearnerError(f"{name}({', '.join(params)}) does not match min-char-rnn's lossFun(inputs, targets, "
                               f"hprev)")
        return MinChar("rnn", (name,), "numpy")
    if (name == "loss_and_grads" or params[:4] in CHARRNN_PARAMS
            or explicit and by_name[name]["required"] in (4, 5)):
        takes_spec = "spec" in params or len(params) >= 5
        if by_name[name]["required"] not in (4, 5):
            raise LearnerError(f"{name}({', '.join(params)}) does not match charrnn's loss_and_grads(params, inputs, "
                               f"targets, h_prev[, spec])")
        if cell != "rnn" and not takes_spec:
            raise LearnerError(f"--cell {cell}: {name} takes no spec, so it can only be the rnn; give it a spec "
                               f"argument (charrnn.model.model_spec) or leave --cell out")
        return CharRNN(cell, (name,), "numpy", takes_spec)
    return None


def find_shapes(loaded: Loaded, path: Path, function: str | None, cell: str, arrays: str) -> list[Shape]:
    """The implementations to check: the one named, or every one the file's names and signatures show."""
    by_name = {f["name"]: f for f in loaded.functions}
    if function is not None:
        if function not in by_name:
            raise LearnerError(f"{path.name} defines no function {function}; it defines "
                               f"{', '.join(by_name) or 'no functions'}")
        shape = _shape_for(function, by_name, True, cell)
        if shape is None:
            raise LearnerError(f"{function}({', '.join(by_name[function]['params'])}) matches none of the shapes "
                               f"understood: {SHAPES_UNDERSTOOD}")
        shapes = [shape]
    else:
        shapes, seen = [], set()
        for name in by_name:
            shape = _shape_for(name, by_name, False, cell)
            if shape is not None and shape.functions not in seen:
                seen.add(shape.functions)
                shapes.append(shape)
        if not shapes:
            raise LearnerError(f"{path.name} defines no function of a shape the check understands (it defines "
                               f"{', '.join(by_name) or 'no functions'}); the shapes understood: {SHAPES_UNDERSTOOD}")
    with_torch = torch_functions(loaded.source)
    for shape in shapes:
        # A CS231n sequence computes with whatever its step functions compute with.
        names = set(shape.functions) | {n for n in by_name if n.endswith(("step_forward", "step_backward"))}
        shape.arrays = arrays if arrays != "auto" else "torch" if names & with_torch else "numpy"
    return shapes
