"""The learner's file: loaded in the sandbox, and the implementations in it found by name and signature.

A file that is a whole training script (min-char-rnn.py reads input.txt and trains forever at import)
is not run as a script: a loop at module level, or an import that fails, has only the file's imports,
definitions and constant assignments run, and a note says so. The functions under check run as written.
"""

import ast
from dataclasses import dataclass
from pathlib import Path

from charrnn.gradcheck.tutor.sandbox import LearnerError, Loaded, Sandbox
from charrnn.gradcheck.tutor.shape_charrnn import CharRNN
from charrnn.gradcheck.tutor import shape_coursera, shape_cs231n, shape_minchar, worker
from charrnn.gradcheck.tutor.shape_coursera import Coursera
from charrnn.gradcheck.tutor.shape_cs231n import CS231n
from charrnn.gradcheck.tutor.shape_minchar import MinChar
from charrnn.gradcheck.tutor.shapes import Shape, torch_functions

SHAPES_UNDERSTOOD = ("lossFun(inputs, targets, hprev) (min-char-rnn's); rnn_step_forward/rnn_step_backward, "
                     "rnn_forward/rnn_backward, lstm_step_forward/lstm_step_backward, lstm_forward/lstm_backward "
                     "(CS231n's); rnn_cell_forward/rnn_cell_backward, rnn_forward(x, a0, parameters)/rnn_backward, "
                     "lstm_cell_forward/lstm_cell_backward, lstm_forward(x, a0, parameters)/lstm_backward (Coursera's); "
                     "loss_and_grads(params, inputs, targets, h_prev[, spec]) (charrnn's, also the adapter for any "
                     "other code: see docs/model.md); any of them as methods of a class")


@dataclass(frozen=True)
class LayerPair:
    """A family's pair of layer functions: their names, cell, and signatures in words."""

    family: str
    cell: str
    names: tuple            # (forward, backward)
    signatures: tuple       # ("rnn_forward(x, h0, Wx, Wh, b)", ...)

    def arity(self, name: str) -> int:
        return self.signatures[self.names.index(name)].count(",") + 1

    def argument_names(self) -> set[str]:
        return {n.strip() for sig in self.signatures for n in sig[sig.index("(") + 1:-1].split(",")}


LAYER_PAIRS = [LayerPair(family, cell, pair, tuple(f"{name}{sig}" for name, sig in zip(pair, sigs)))
               for family, table in (("CS231n", shape_cs231n.PAIRS), ("Coursera", shape_coursera.PAIRS))
               for pair, (cell, sigs) in table.items()]
_FAMILY_NAMES = {family: set().union(*(p.argument_names() for p in LAYER_PAIRS if p.family == family))
                 for family in ("CS231n", "Coursera")}
# The argument names that tell one family's layer functions from the other's (x and cache tell nothing).
TELLING = {family: names - set().union(*(n for f, n in _FAMILY_NAMES.items() if f != family))
           for family, names in _FAMILY_NAMES.items()}
# A class with one of these methods is one the learner meant to be checked.
CLASS_METHODS = ("forward", "backward", "forward_propagation", "lossFun", "loss", "calculate_loss", "bptt", "backprop",
                 "train", "train_step", "step")
MINCHAR_PARAMS = ["inputs", "targets", "hprev"]
CHARRNN_PARAMS = [["params", "inputs", "targets", state] for state in ("h_prev", "hprev", "state")]


def script_loop(source: str) -> int | None:
    """The line of a loop at module level (a training script's), or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    return next((node.lineno for node in tree.body if isinstance(node, (ast.For, ast.While))), None)


def left_out(source: str) -> tuple[str, set[str]]:
    """What loading only the definitions leaves out, in words, and the names it would have set."""
    left = worker.split(ast.parse(source))[1]
    names = []
    for node in left:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign, ast.For)) else []
        names += [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name) and n.id not in names]
    lines = sorted({node.lineno for node in left})
    spans = []
    for n in lines:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    where = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans[:6]) + (", ..." if len(spans) > 6 else "")
    words = f"left out: {len(left)} statement{'s' if len(left) != 1 else ''} (line{'s' if len(lines) > 1 else ''} {where})"
    if names:
        shown = names[:8]
        words += f", which set {', '.join(shown)}{', ...' if len(names) > len(shown) else ''}"
    return words, set(names)


def load(box: Sandbox, path: Path) -> tuple[Loaded, list[str], set[str]]:
    """The loaded file, the notes on how it was loaded, and the names its left-out script part sets."""
    source = path.read_text(encoding="utf-8", errors="replace")
    line = script_loop(source)
    if line is not None:
        words, names = left_out(source)
        note = (f"{path.name} runs a loop at module level (line {line}); its imports, definitions and constants were "
                f"loaded, not its script part ({words})")
        return box.load(path, definitions_only=True), [note], names
    try:
        return box.load(path), [], set()
    except LearnerError as error:
        if error.raised is None:
            raise
        failed = LearnerError(f"{path.name} does not load: {error.raised}; the traceback above is from your file",
                              error.traceback, error.output, raised=error.raised)
    try:
        loaded = box.load(path, definitions_only=True)
    except LearnerError:
        raise failed from None
    if not loaded.functions:
        raise failed
    words, names = left_out(source)
    note = (f"importing {path.name} raised {failed.traceback.strip().splitlines()[-1]}; its imports, definitions and "
            f"constants were loaded, not its script part ({words})")
    return loaded, [note], names


@dataclass
class Skipped:
    """A function the check found but cannot check: why, in one line, and its status for the report."""

    name: str
    signature: str
    status: str          # "no partner" or "not a shape"
    why: str


def _signature(name: str, by_name: dict) -> str:
    return f"{name}({', '.join(by_name[name]['params'])})"


def _takes(function: dict, count: int) -> bool:
    """Whether it can be called with exactly `count` positional arguments."""
    return function["required"] <= count <= len(function["params"])


def _pair_for(name: str, by_name: dict) -> Shape | Skipped | None:
    """A layer pair (CS231n's or Coursera's) that `name` belongs to, matched by name and arity; a
    method's partner is a method of the same class."""
    owner, dot, base = name.rpartition(".")
    prefix = owner + dot
    named = [pair for pair in LAYER_PAIRS if base in pair.names]
    if not named:
        return None
    for pair in named:
        mine = pair.names.index(base)
        params = set(by_name[name]["params"])
        others = set().union(*(n for f, n in TELLING.items() if f != pair.family))
        if not _takes(by_name[name], pair.arity(base)) or params & others and not params & TELLING[pair.family]:
            continue
        partner = prefix + pair.names[1 - mine]
        if partner not in by_name:
            return Skipped(name, _signature(name, by_name), "no partner",
                           f"{name} needs its partner {partner}, which the file does not define (define it there, "
                           f"or import it from the file that does)")
        if not _takes(by_name[partner], pair.arity(pair.names[1 - mine])):
            return Skipped(name, _signature(name, by_name), "not a shape",
                           f"{_signature(partner, by_name)} does not take the arguments of {pair.family}'s "
                           f"{pair.signatures[1 - mine]}")
        functions = tuple(prefix + f for f in pair.names)
        return (CS231n if pair.family == "CS231n" else Coursera)(pair.cell, functions, "numpy")
    expected = " or ".join(f"{pair.family}'s {pair.signatures[pair.names.index(base)]}" for pair in named)
    return Skipped(name, _signature(name, by_name), "not a shape",
                   f"{_signature(name, by_name)} is named like {expected}, but takes other arguments")


def _shape_for(name: str, by_name: dict, explicit: bool, cell: str) -> Shape | Skipped | None:
    params = by_name[name]["params"]
    pair = _pair_for(name, by_name)
    if pair is not None:
        return pair
    base = name.rpartition(".")[2]
    required = by_name[name]["required"]
    if shape_minchar.takes(params, required):
        return MinChar("rnn", (name,), "numpy", params[:required])
    if base == "lossFun" or params[:3] == MINCHAR_PARAMS or explicit and required == 3:
        if required != 3:
            raise LearnerError(f"{name}({', '.join(params)}) does not match min-char-rnn's lossFun(inputs, targets, "
                               f"hprev)")
        return MinChar("rnn", (name,), "numpy")
    if (base == "loss_and_grads" or params[:4] in CHARRNN_PARAMS
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


def classes(by_name: dict) -> dict[str, list[str]]:
    """{class: ["method(params)", ...]} of the file's classes."""
    found: dict[str, list[str]] = {}
    for name in by_name:
        owner, dot, method = name.rpartition(".")
        if dot:
            found.setdefault(owner, []).append(f"{method}({', '.join(by_name[name]['params'])})")
    return found


def adapter(path: Path, owner: str, layer: bool) -> str:
    """The adapter a learner writes to have a class checked, shown above the message: CS231n's pair
    for a layer (no targets anywhere), charrnn's contract for a model with its loss."""
    head = f"the adapter to add to {path.name}"
    if layer:
        return f"""{head}, in CS231n's shape (docs/model.md, "Your own code"):

def rnn_forward(x, h0, Wx, Wh, b):
    # x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,): rows (transpose for column vectors)
    layer = {owner}(...)      # built from Wx, Wh, b
    h = ...                   # its forward from h0: every hidden state, (N, T, H)
    return h, layer           # the layer itself is the cache

def rnn_backward(dh, cache):
    # dh (N, T, H): the gradient of every hidden state from above
    dx, dh0, dWx, dWh, db = ...   # its backward on dh, each the shape of what it is the gradient of
    return dx, dh0, dWx, dWh, db
"""
    return f"""{head}, in charrnn's contract (docs/model.md, "Your own code"):

def loss_and_grads(params, inputs, targets, h_prev):
    # params: Wxh (H, V), Whh (H, H), bh (H,), Why (V, H), by (V,), rows (transpose for column vectors);
    # inputs, targets: (B, T) ids; h_prev: (B, H). Return the mean loss over the B*T predictions, the
    # gradients in a dict keyed like params, and the last hidden state (B, H).
    model = {owner}(...)      # built from params
    loss = ...                # its forward on inputs from h_prev (divided by B*T if it sums)
    grads = ...               # its backward, each gradient divided the same way
    return loss, grads, h_last
"""


def _no_shape(path: Path, by_name: dict) -> LearnerError:
    found = classes(by_name)
    meant = {owner: methods for owner, methods in found.items()
             if any(m.split("(")[0] in CLASS_METHODS for m in methods)}
    if meant:
        owner = list(meant)[-1]   # a sequence layer is usually written after the step it repeats
        targets = {"targets", "target", "y", "t", "labels", "Y", "ts"}
        layer = not any(targets & set(by_name[n]["params"]) for n in by_name if n.startswith(tuple(meant)))
        described = "; ".join(f"class {o} ({', '.join(m)})" for o, m in meant.items())
        return LearnerError(f"{path.name} defines {described}: the check cannot drive a class whose contract it does "
                            f"not know (what its constructor takes, what forward and backward return); add the "
                            f"adapter shown above around your class, and run again", output=adapter(
                                path, owner, layer))
    functions = [n for n in by_name if "." not in n and not by_name[n].get("imported")]
    defined = functions + [f"class {o} ({', '.join(m)})" for o, m in found.items()]
    return LearnerError(f"{path.name} defines no function of a shape the check understands (it defines "
                        f"{', '.join(defined) or 'no functions'}); the shapes understood: {SHAPES_UNDERSTOOD}")


def find_shapes(loaded: Loaded, path: Path, function: str | None, cell: str, arrays: str) -> list[Shape | Skipped]:
    """The implementations to check: the one named, or every one the file's names and signatures show
    (with the functions named like one that cannot be checked, as Skipped)."""
    by_name = {f["name"]: f for f in loaded.functions}
    if function is not None:
        if function not in by_name:
            methods = [n for n in by_name if n.rpartition(".")[2] == function]
            if len(methods) != 1:
                own = [n for n in by_name if not by_name[n].get("imported")]
                raise LearnerError(f"{path.name} defines no function {function}; it defines "
                                   f"{', '.join(own) or 'no functions'}")
            function = methods[0]
        shape = _shape_for(function, by_name, True, cell)
        if shape is None:
            raise LearnerError(f"{function}({', '.join(by_name[function]['params'])}) matches none of the shapes "
                               f"understood: {SHAPES_UNDERSTOOD}")
        if isinstance(shape, Skipped):
            raise LearnerError(shape.why)
        shapes = [shape]
    else:
        shapes, seen = [], set()
        own = [n for n in by_name if not by_name[n].get("imported")]
        # a file that only imports (a notebook's two halves brought together) is checked on what it imports
        shaped = [n for n in own if _shape_for(n, by_name, False, cell) is not None]
        for name in own if shaped else list(by_name):
            shape = _shape_for(name, by_name, False, cell)
            key = shape.functions if isinstance(shape, Shape) else None
            if isinstance(shape, Shape) and any(name in s.functions for s in shapes if isinstance(s, Shape)):
                continue
            if shape is not None and (key is None or key not in seen):
                seen.add(key)
                shapes.append(shape)
        if not any(isinstance(s, Shape) for s in shapes):
            if shapes:
                raise LearnerError("; ".join(s.why for s in shapes))
            raise _no_shape(path, by_name)
        # a backward whose forward is listed already is that pair, not a pair of its own
        shapes = [s for s in shapes if not (isinstance(s, Skipped) and any(
            s.name in t.functions for t in shapes if isinstance(t, Shape)))]
    with_torch = torch_functions(loaded.source)
    for shape in shapes:
        if isinstance(shape, Skipped):
            continue
        # A layer sequence computes with whatever its step functions compute with.
        names = {n.rpartition(".")[2] for n in shape.functions} | {
            n.rpartition(".")[2] for n in by_name if n.endswith(("step_forward", "step_backward", "cell_forward",
                                                                 "cell_backward"))}
        shape.arrays = arrays if arrays != "auto" else "torch" if names & with_torch else "numpy"
    return shapes
