"""Where to look in the learner's file: the lines that compute what a diagnosis names, read from its
syntax tree. They say where to look, not what is wrong there (the diagnosis says that).

The backward part of the file is every function or method named *backward* or *bptt*, and, inside
the shape's own functions (lossFun, loss_and_grads), their loops over reversed(...) steps.
"""

import ast

ZEROS = {"zeros", "zeros_like", "empty", "empty_like"}
CLIPS = {"clip", "clamp", "clip_grad_norm_", "clip_grad_value_", "clamp_"}
MAX_LINES = 4


def _reversed_loop(node) -> bool:
    if not isinstance(node, ast.For):
        return False
    steps = ast.unparse(node.iter).replace(" ", "")
    return "reversed(" in steps or steps.endswith("-1,-1)")


def _backward_parts(tree: ast.Module, shape) -> list[ast.AST]:
    """CS231n: the shape's backward (and, for a sequence, its cell's step backward); otherwise the
    reversed loops of the shape's functions and every function or method named *backward* or *bptt*."""
    layers = shape.family in ("cs231n", "coursera")
    if layers:
        step = f"{shape.cell}_step_backward" if shape.family == "cs231n" else f"{shape.cell}_cell_backward"
        names = {shape.functions[1].rpartition(".")[2]} | (set() if shape.step else {step})
    parts = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        if layers:
            parts += [node] if node.name in names else []
        elif "backward" in node.name or "bptt" in node.name:
            parts.append(node)
        elif node.name in {f.rpartition(".")[2] for f in shape.functions}:
            parts += [loop for loop in ast.walk(node) if _reversed_loop(loop)]
    return parts


def _in_loops(part: ast.AST) -> set[int]:
    """The ids of every node inside a for loop of this part (the part itself counts if it is one)."""
    return {id(n) for loop in ast.walk(part) if isinstance(loop, ast.For) for n in ast.walk(loop) if n is not loop}


def _returned_names(tree: ast.Module, function: str) -> list[str | None]:
    """The names a function returns, in order (None where the value is not a plain name)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            returns = [n for n in ast.walk(node) if isinstance(n, ast.Return) and isinstance(n.value, ast.Tuple)]
            if returns:
                return [e.id if isinstance(e, ast.Name) else None for e in returns[-1].value.elts]
    return []


def _assigned(node) -> set[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = set()
    for target in targets:
        for part in ast.walk(target):
            if isinstance(part, ast.Name):
                names.add(part.id)
    return names


def _is_zeros(value) -> bool:
    return isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] in ZEROS


def _variables(tree: ast.Module, shape, grads: tuple, step_too: bool) -> set[str]:
    """The learner's own variable names for these gradients, read off their return statements (and,
    with step_too, CS231n's step backward's)."""
    names = set(grads)
    backward = shape.functions[-1]
    order = ["loss", *shape.grads, "h_last"] if shape.family == "min-char-rnn" else list(shape.grads)
    returned = _returned_names(tree, backward)
    names |= {returned[order.index(g)] for g in grads if g in order and order.index(g) < len(returned)} - {None}
    if step_too and shape.family == "cs231n" and not shape.step:
        step = _returned_names(tree, f"{shape.cell}_step_backward")
        step_order = ["dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"] if shape.cell == "lstm" else \
            ["dx", "dprev_h", "dWx", "dWh", "db"]
        for g in grads:
            g = "dprev_h" if g == "dh0" else g
            if g in step_order and step_order.index(g) < len(step):
                names.add(step[step_order.index(g)])
    return names - {None}


def _recurrent_names(tree: ast.Module, shape) -> set[str]:
    """The names the recurrent weight goes by: its argument's, and aliases of params["Whh"] (none for a
    cell without one)."""
    arg = next((a for a, role in shape.roles.items() if role == "Whh"), None)
    if arg is None:
        return set()
    names = {arg}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = zip(target.elts, node.value.elts) if isinstance(target, ast.Tuple) and isinstance(
                    node.value, ast.Tuple) else [(target, node.value)]
                for t, v in pairs:
                    if isinstance(t, ast.Name) and isinstance(v, ast.Subscript) and ast.unparse(v.slice) in (
                            repr(arg), f'"{arg}"'):
                        names.add(t.id)
    return names


def _wanted(node, code: str, shape, variables: set, recurrent: set, looped: set) -> bool:
    text = ast.unparse(node)
    if code in ("h-index", "not-accumulated", "state-gradient"):
        if not isinstance(node, (ast.Assign, ast.AugAssign)) or not _assigned(node) & variables:
            return False
        return not (isinstance(node, ast.Assign) and _is_zeros(node.value)) and (
            code != "not-accumulated" or isinstance(node, ast.Assign) and id(node) in looped)
    if code in ("transposed-whh", "elementwise-chain"):
        return isinstance(node, (ast.Assign, ast.AugAssign)) and any(
            isinstance(n, ast.Name) and n.id in recurrent and isinstance(n.ctx, ast.Load) for n in ast.walk(node.value))
    if code == "tanh-derivative":
        return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and isinstance(node.left, ast.Constant) \
            and node.left.value == 1 and ("** 2" in text or "square" in text or _squares(node.right))
    if code == "missing-dh-next":
        return isinstance(node, (ast.Assign, ast.AugAssign)) and (
            "step_backward(" in ast.unparse(node.value) or any(
                isinstance(n, ast.Name) and shape.roles.get(n.id) == "Why" for n in ast.walk(node.value)))
    if code == "missing-dc-path":
        return isinstance(node, (ast.Assign, ast.AugAssign)) and not _is_zeros(node.value) and any(
            name.startswith("dc") or name in ("dprev_c", "dnext_c") for name in _assigned(node))
    if code == "clipped":
        return isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in CLIPS
    return False


def _squares(node) -> bool:
    """a * a: the same expression twice."""
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and ast.dump(node.left) == ast.dump(node.right)


def pointers(source: str, shape, code: str, grads: tuple) -> list[str]:
    """Up to MAX_LINES lines of the learner's file, "line N: text", where a mistake of this code lives."""
    tree = ast.parse(source)
    lines = source.splitlines()
    parts = _backward_parts(tree, shape) if code != "clipped" else [tree]
    variables = _variables(tree, shape, grads, step_too=code != "state-gradient")
    recurrent = _recurrent_names(tree, shape)
    found = sorted({node.lineno for part in parts for looped in [_in_loops(part)] for node in ast.walk(part)
                    if hasattr(node, "lineno") and _wanted(node, code, shape, variables, recurrent, looped)})
    return [f"line {n}: {lines[n - 1].strip()}" for n in found[:MAX_LINES]]


SINGLE = {"f", "f4", "float32", "single", "float16", "half", "bfloat16"}


def _single(node) -> bool:
    """dtype='f', np.float32, torch.float, .float(), .astype('f4'): where float32 (or less) is made."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return False
    if isinstance(node, ast.keyword) and node.arg == "dtype":
        value = node.value
        return (isinstance(value, ast.Constant) and value.value in SINGLE) or (
            isinstance(value, ast.Attribute) and value.attr in SINGLE | {"float"})
    if isinstance(node, ast.Attribute) and node.attr in SINGLE - {"f", "f4", "single", "half"}:
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in ("float", "half") and not node.args:
            return True
        if node.func.attr in ("astype", "to", "type") and node.args:
            arg = node.args[0]
            return (isinstance(arg, ast.Constant) and arg.value in SINGLE) or (
                isinstance(arg, ast.Attribute) and arg.attr in SINGLE | {"float"})
    return False


def single_precision(source: str) -> list[str]:
    """The lines of the learner's file that make float32 (or smaller) arrays, "line N: text"."""
    lines = source.splitlines()
    found = sorted({node.lineno for node in ast.walk(ast.parse(source)) if hasattr(node, "lineno") and _single(node)}
                   | {node.value.lineno for node in ast.walk(ast.parse(source))
                      if isinstance(node, ast.keyword) and _single(node)})
    return [f"line {n}: {lines[n - 1].strip()}" for n in found]
