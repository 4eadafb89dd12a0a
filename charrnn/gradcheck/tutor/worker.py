"""The process a learner's file runs in, started by sandbox.py as `python .../worker.py`.

It runs as a script, not as part of charrnn, so that it starts with NumPy alone (torch only if the
learner's file imports it) and the learner's imports see their own directory, not charrnn's.
Requests come on stdin and answers go out on what was stdout, each a pickled tuple behind an 8-byte
length; whatever the learner's code prints goes to stderr, which sandbox.py keeps aside.

    ("load", path, definitions_only)  -> ("loaded", key, source, [function, ...])
    ("prepare",)                      -> ("ok",) once torch is imported
    ("call", key, name, args, globals, arrays)            -> ("ok", result)
    ("pair", key, forward, args, backward, upstream, arrays) -> ("ok", forward's outputs, backward's result)
    an exception in the learner's code                    -> ("raised", traceback, "ValueError: ...")

arrays "torch" hands the learner float64 torch tensors instead of NumPy arrays; tensors that come
back are turned into NumPy arrays (Returned keeps what they were).
"""

import ast
import inspect
import os
import pickle
import struct
import sys
import traceback
import types
from dataclasses import dataclass

if __name__ == "__main__":
    sys.path.pop(0)   # this directory: a learner's `import problem` must not find charrnn's

import numpy as np


@dataclass
class Returned:
    """An array the learner's code returned, and what it was: "ndarray" or "tensor"."""

    kind: str
    value: np.ndarray


@dataclass
class Opaque:
    """Anything else it returned, by its type's name."""

    type_name: str


class Raised(Exception):
    """The learner's code raised: its traceback, from the learner's frames only."""


def send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("!Q", len(data)) + data)
    stream.flush()


def receive(stream):
    header = stream.read(8)
    if len(header) < 8:
        return None
    return pickle.loads(stream.read(struct.unpack("!Q", header)[0]))


def learner_traceback(error: BaseException) -> str:
    """The traceback without this file's frames and the import machinery's."""
    report = traceback.TracebackException.from_exception(error)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if frame.filename != __file__ and not frame.filename.startswith("<frozen")])
    return "".join(report.format())


def run_learner(function, *args):
    try:
        return function(*args)
    except BaseException as error:   # SystemExit and KeyboardInterrupt too: it is their code
        raise Raised(learner_traceback(error), traceback.format_exception_only(error)[-1].strip()) from None


def split(tree: ast.Module) -> tuple[list, list]:
    """The module's statements kept (imports, functions, classes, and assignments that call nothing and read
    nothing left out) and those left out: its script part. An assignment that reads a name the script
    part sets is left out too, or it would fail on it (Wxh = model["Wxh"] after model = pickle.load(f))."""
    def calls(node) -> bool:
        return any(isinstance(n, ast.Call) for n in ast.walk(node) if not isinstance(n, ast.Lambda))

    def reads(node) -> set:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}

    def sets(node) -> set:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if hasattr(node, "target") else []
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}

    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    kept, left_out, dropped_names = [], [], set()
    for node in tree.body:
        constant = isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and not calls(
            node.value) and not reads(node.value) & dropped_names
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if isinstance(node, keep) or constant or docstring:
            kept.append(node)
        else:
            left_out.append(node)
            dropped_names |= sets(node)
    return kept, left_out


def definitions(tree: ast.Module) -> ast.Module:
    """The module's imports, functions, classes and constant assignments: its script part left out."""
    return ast.Module(body=split(tree)[0], type_ignores=[])


def load(modules: dict, path: str, definitions_only: bool):
    key = f"learner_{len(modules)}"
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    module = types.ModuleType(key)
    module.__file__ = path
    sys.modules[key] = module
    try:
        tree = ast.parse(source, path)
        code = compile(definitions(tree) if definitions_only else tree, path, "exec")
        exec(code, module.__dict__)
    except BaseException as error:
        raise Raised(learner_traceback(error), traceback.format_exception_only(error)[-1].strip()) from None
    modules[key] = module
    functions = []
    for name, obj in vars(module).items():
        if inspect.isfunction(obj) and _defined_in(obj, path):
            functions.append(_described(name, obj, 0))
        elif inspect.isclass(obj) and obj.__module__ == key:
            # A class's methods are listed as "Class.method", without self: the check can call them on an
            # instance made without __init__ (call and pair below).
            functions += [_described(f"{name}.{method}", f, 1) for method, f in vars(obj).items()
                          if inspect.isfunction(f) and _defined_in(f, path)]
    return ("loaded", key, source, functions)


def _defined_in(function, path: str) -> bool:
    return os.path.abspath(function.__code__.co_filename) == os.path.abspath(path)


def _described(name: str, function, skip: int) -> dict:
    params = list(inspect.signature(function).parameters.values())[skip:]
    return {"name": name, "params": [p.name for p in params],
            "required": sum(p.default is p.empty and p.kind <= p.POSITIONAL_OR_KEYWORD for p in params),
            "line": function.__code__.co_firstlineno}


def resolve(module, names: tuple, attributes: dict) -> list:
    """The learner's functions by name; "Class.method" is the method of one instance of Class, made
    without calling __init__ (whose arguments the check cannot know), with `attributes` set on it."""
    instances = {}
    found = []
    for name in names:
        owner, dot, method = name.rpartition(".")
        if not dot:
            found.append(getattr(module, name))
            continue
        if owner not in instances:
            cls = getattr(module, owner)
            instances[owner] = cls.__new__(cls)
            for k, v in attributes.items():
                setattr(instances[owner], k, v)
        found.append(getattr(instances[owner], method))
    return found


def to_torch(value):
    import torch

    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, tuple):
        return tuple(to_torch(v) for v in value)
    if isinstance(value, dict):
        return {k: to_torch(v) for k, v in value.items()}
    return value


def plain(value):
    """What the learner returned, in terms the parent can unpickle without their modules or torch."""
    if isinstance(value, np.ndarray):
        return Returned("ndarray", value)
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return Returned("tensor", value.detach().cpu().numpy())
    if isinstance(value, (tuple, list)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, complex, str, np.generic)):
        return value
    return Opaque(type(value).__name__)


def call(modules: dict, key: str, name: str, args: tuple, set_globals: dict, arrays: str):
    module = modules[key]
    convert = to_torch if arrays == "torch" else (lambda v: v)
    for k, v in set_globals.items():
        setattr(module, k, convert(v))
    (function,) = resolve(module, (name,), {k: getattr(module, k) for k in set_globals})
    return ("ok", plain(run_learner(function, *convert(args))))


def pair(modules: dict, key: str, forward: str, args: tuple, backward: str, upstream: tuple, arrays: str):
    """CS231n's pairs: out..., cache = forward(*args); grads = backward(*upstream, cache). The cache
    stays here: it may hold anything."""
    module = modules[key]
    convert = to_torch if arrays == "torch" else (lambda v: v)
    forward_function, backward_function = resolve(module, (forward, backward), {})
    out = run_learner(forward_function, *convert(args))
    if not isinstance(out, tuple) or len(out) < 2 or all(v is None for v in out):
        return ("ok", plain(out), None)   # a skeleton's Nones: its backward is never called
    grads = run_learner(backward_function, *convert(upstream), out[-1])
    return ("ok", plain(out[:-1]), plain(grads))


def prepare(modules: dict):
    import torch  # noqa: F401  (before the learner's time limit starts: it takes seconds)

    return ("ok",)


def main() -> None:
    # The parent unpickles Returned and Opaque from charrnn.gradcheck.tutor.worker: name them so here too.
    sys.modules["charrnn.gradcheck.tutor.worker"] = sys.modules[__name__]
    for cls in (Returned, Opaque):
        cls.__module__ = "charrnn.gradcheck.tutor.worker"
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                      # the learner's prints must not reach the replies
    sys.stdout = sys.stderr
    handlers = {"load": load, "prepare": prepare, "call": call, "pair": pair}
    modules: dict = {}
    while (request := receive(requests)) is not None:
        try:
            reply = handlers[request[0]](modules, *request[1:])
        except Raised as error:
            reply = ("raised", *error.args)
        send(replies, reply)


if __name__ == "__main__":
    main()
