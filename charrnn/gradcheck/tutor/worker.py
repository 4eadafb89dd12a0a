"""The process a learner's file runs in, started by sandbox.py as `python .../worker.py PARENT LIFELINE`.

It runs as a script, not as part of charrnn, so that it starts with NumPy alone (torch only if the
learner's file imports it) and the learner's imports see their own directory, not charrnn's.
Requests come on stdin and answers go out on what was stdout; whatever the learner's code prints goes
to stderr, which sandbox.py keeps aside, and their input() meets the end of an empty file.

Each message is data only, so that reading one runs no code (pickle would run whatever the learner's
code put in it): an 8-byte length, a JSON header, then the bytes of each array it holds. The header is
{"value": TREE, "arrays": [[dtype, shape], ...]}; TREE is JSON, with the Python types JSON lacks
tagged ({"tuple": [...]}, {"dict": [[key, value], ...]}, {"array": i}, ...; encode() lists them all).

    once started, unasked                                 -> ("ready",)
    ("load", path, definitions_only)  -> ("loaded", key, source, [function, ...])
    ("prepare",)                      -> ("ok",) once torch is imported
    ("call", key, name, args, globals, arrays)            -> ("ok", result)
    ("pair", key, forward, args, backward, upstream, arrays) -> ("ok", forward's outputs, backward's result)
    an exception in the learner's code                    -> ("raised", traceback, "ValueError: ...")
    what the worker itself could not do with their code   -> ("failed", "what went wrong, in one line")

arrays "torch" hands the learner float64 torch tensors instead of NumPy arrays; tensors that come
back are turned into NumPy arrays (Returned keeps what they were).
"""

import ast
import builtins
import importlib
import importlib.util
import inspect
import json
import math
import os
import signal
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


# Arrays of these kinds travel as bytes: booleans, integers, floats, complex numbers. Any other (objects,
# strings, records, dates) would need code to rebuild; one that the learner returns travels as its dtype and
# shape only, enough for the check to say what it is.
NUMBERS = "biufc"


def encode(value, arrays: list):
    """value as JSON, each array's data appended to `arrays`."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, complex):
        return {"complex": [encode(value.real, arrays), encode(value.imag, arrays)]}
    if isinstance(value, np.generic) and value.dtype.kind not in NUMBERS:
        return {"opaque": type(value).__name__}
    if isinstance(value, (np.ndarray, np.generic)):
        arrays.append(np.asarray(value, order="C"))   # 0-d stays 0-d (ascontiguousarray makes it 1-d)
        return {"scalar" if isinstance(value, np.generic) else "array": len(arrays) - 1}
    if isinstance(value, Returned):
        if value.value.dtype.kind in NUMBERS and value.value.dtype.fields is None:
            return {"returned": value.kind, "array": encode(value.value, arrays)["array"]}
        return {"returned": value.kind, "dtype": str(value.value.dtype), "shape": list(value.value.shape)}
    if isinstance(value, Opaque):
        return {"opaque": value.type_name}
    if type(value).__name__ == "ModelSpec" and type(value).__module__ == "charrnn.model":
        return {"model_spec": [value.cell, value.vocab_size, value.hidden_size, value.num_layers]}
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [encode(v, arrays) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[encode(k, arrays), encode(v, arrays)] for k, v in value.items()]}
    raise TypeError(f"a {type(value).__name__} cannot be sent")


def decode(node, arrays: list):
    """encode's inverse, checking as it goes: a malformed message raises ValueError."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list) or not isinstance(node, dict) or len(node) not in (1, 2, 3):
        raise ValueError(f"not a message: {str(node)[:80]}")
    tag = next(iter(node))
    body = node[tag]
    if tag == "float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "complex" and isinstance(body, list) and len(body) == 2:
        return complex(*(decode(part, arrays) for part in body))
    if tag in ("array", "scalar") and type(body) is int and 0 <= body < len(arrays):
        return arrays[body] if tag == "array" else arrays[body][()]
    if tag == "returned" and isinstance(body, str):
        if "array" in node:
            return Returned(body, decode({"array": node["array"]}, arrays))
        if isinstance(node.get("dtype"), str) and shape_of(node.get("shape")) is not None:
            # Its dtype's name and its shape, without its data: a view of one None, no memory taken.
            return Returned(body, np.broadcast_to(np.array(node["dtype"], dtype=object), shape_of(node["shape"])))
    if tag == "opaque" and isinstance(body, str):
        return Opaque(body)
    if tag == "model_spec" and isinstance(body, list) and len(body) == 4:
        # charrnn's contract hands the learner a charrnn.model.ModelSpec (model_spec checks each field)
        return tool_import("charrnn.model").model_spec(*body)
    if tag in ("tuple", "list") and isinstance(body, list):
        items = [decode(v, arrays) for v in body]
        return tuple(items) if tag == "tuple" else items
    if tag == "dict" and isinstance(body, list) and all(isinstance(kv, list) and len(kv) == 2 for kv in body):
        keys = [decode(k, arrays) for k, _ in body]
        if not all(isinstance(k, (str, int, float, bool, tuple)) or k is None for k in keys):
            raise ValueError("not a message: a dict key that is not a plain value")
        return {k: decode(v, arrays) for k, (_, v) in zip(keys, body)}
    raise ValueError(f"not a message: {str(node)[:80]}")


def shape_of(value) -> tuple | None:
    if isinstance(value, list) and len(value) <= 64 and all(type(n) is int and n >= 0 for n in value):
        return tuple(value)
    return None


def dtype_of(name) -> np.dtype:
    """A dtype named in a header: a plain number type only (np.dtype would build records and objects too)."""
    if not isinstance(name, str) or len(name) > 8:
        raise ValueError(f"not a message: dtype {str(name)[:20]}")
    dtype = np.dtype(name)
    if dtype.kind not in NUMBERS or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"not a message: dtype {name}")
    return dtype


def send(stream, message) -> None:
    arrays: list = []
    value = encode(message, arrays)
    header = json.dumps({"value": value, "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]},
                        allow_nan=False).encode()
    stream.write(struct.pack("!Q", len(header)) + header)
    for a in arrays:
        stream.write(a.tobytes())
    stream.flush()


def receive(read):
    """The next message, from read(n) (n bytes, or None at the end of the stream); None at the end.
    A header that does not describe a message raises ValueError."""
    length = read(8)
    if length is None:
        return None
    header = read(struct.unpack("!Q", length)[0])
    if header is None:
        return None
    try:
        header = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"not a message: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
        raise ValueError("not a message: no arrays")
    arrays = []
    for entry in header["arrays"]:
        shape = shape_of(entry[1]) if isinstance(entry, list) and len(entry) == 2 else None
        if shape is None:
            raise ValueError(f"not a message: array {str(entry)[:80]}")
        dtype = dtype_of(entry[0])
        data = read(math.prod(shape) * dtype.itemsize)
        if data is None:
            return None
        arrays.append(np.frombuffer(data, dtype).reshape(shape))
    return decode(header.get("value"), arrays)


def reader(stream):
    """read(n) for receive(), from a blocking binary stream: writable bytes, so the arrays are too."""
    def read(n: int) -> bytearray | None:
        data = bytearray(n)
        return data if stream.readinto(data) == n else None

    return read


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
    """The module's statements kept (imports, functions, classes, and assignments that call nothing and
    read only names kept before them) and those left out: its script part. An assignment that reads a
    name the script part sets, or one set nowhere in the file (Wxh = model["Wxh"] after model =
    pickle.load(f); n = Xtrain.shape[1] with Xtrain from a notebook) is left out too, or it would fail."""
    def calls(node) -> bool:
        return any(isinstance(n, ast.Call) for n in ast.walk(node) if not isinstance(n, ast.Lambda))

    def reads(node) -> set:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}

    def sets(node) -> set:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            return {(a.asname or a.name).split(".")[0] for a in node.names}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return {node.name}
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if hasattr(node, "target") else []
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}

    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    kept, left_out = [], []
    bound = set(dir(builtins)) | {"__name__", "__file__", "__doc__"}
    star = False                                     # from x import *: any name may be bound
    for node in tree.body:
        constant = isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and not calls(
            node.value) and (star or reads(node.value) <= bound)
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if isinstance(node, keep) or constant or docstring:
            kept.append(node)
            bound |= sets(node)
            star |= isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
        else:
            left_out.append(node)
    return kept, left_out


def definitions(tree: ast.Module) -> ast.Module:
    """The module's imports, functions, classes and constant assignments: its script part left out."""
    return ast.Module(body=split(tree)[0], type_ignores=[])


def load(modules: dict, path: str, definitions_only: bool):
    key = f"learner_{len(modules)}"
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    with open(path, "rb") as f:
        raw = f.read()
    module = types.ModuleType(key)
    module.__file__ = path
    sys.modules[key] = module
    try:
        tree = ast.parse(raw, path)   # bytes: read in the encoding its coding line names (PEP 263), as Python does
        source = importlib.util.decode_source(raw)
        code = compile(definitions(tree) if definitions_only else tree, path, "exec")
        exec(code, module.__dict__)
    except BaseException as error:
        raise Raised(learner_traceback(error), traceback.format_exception_only(error)[-1].strip()) from None
    modules[key] = module
    functions = []
    for name, obj in vars(module).items():
        if inspect.isfunction(obj) and not name.startswith("__"):
            # another file's functions (from rnn_forward import *) can be partners, not shapes of their own
            functions.append(dict(_described(name, obj, 0), imported=not _defined_in(obj, path)))
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
    torch = tool_import("torch")

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


def arrays_in(value, path: str) -> dict:
    """A copy of every array (or tensor) inside value, by its path ("args[0]['Wxh']")."""
    if isinstance(value, np.ndarray):
        return {path: value.copy()}
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return {path: value.detach().cpu().numpy().copy()}
    found = {}
    if isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            found.update(arrays_in(v, f"{path}[{i}]"))
    elif isinstance(value, dict):
        for k, v in value.items():
            found.update(arrays_in(v, f"{path}[{k!r}]"))
    return found


def changed(before: dict, value, path: str) -> list[str]:
    """The paths whose arrays the learner's code changed in place since `before` was taken."""
    after = arrays_in(value, path)
    return [p for p, a in before.items()
            if p not in after or after[p].shape != a.shape or not np.array_equal(after[p], a, equal_nan=True)]


def call(modules: dict, key: str, name: str, args: tuple, set_globals: dict, arrays: str):
    """-> ("ok", what it returned, the paths of what it was handed that it changed in place)"""
    module = modules[key]
    convert = to_torch if arrays == "torch" else (lambda v: v)
    for k, v in set_globals.items():
        setattr(module, k, convert(v))
    (function,) = resolve(module, (name,), {k: getattr(module, k) for k in set_globals})
    args = convert(args)
    handed = {k: getattr(module, k) for k in set_globals}
    before_args, before_globals = arrays_in(args, "args"), arrays_in(handed, "globals")
    result = run_learner(function, *args)
    return ("ok", plain(result), changed(before_args, args, "args") + changed(before_globals, handed, "globals"))


def pair(modules: dict, key: str, forward: str, args: tuple, backward: str, upstream: tuple, arrays: str):
    """CS231n's pairs: out..., cache = forward(*args); grads = backward(*upstream, cache). The cache
    stays here: it may hold anything. -> ("ok", outputs, gradients, the paths changed in place)"""
    module = modules[key]
    convert = to_torch if arrays == "torch" else (lambda v: v)
    forward_function, backward_function = resolve(module, (forward, backward), {})
    args = convert(args)
    before_args = arrays_in(args, "args")
    out = run_learner(forward_function, *args)
    if not isinstance(out, tuple) or len(out) < 2 or all(v is None for v in out):
        return ("ok", plain(out), None, [])   # a skeleton's Nones: its backward is never called
    upstream = convert(upstream)
    before_upstream, before_cache = arrays_in(upstream, "upstream"), arrays_in(out[-1], "cache")
    grads = run_learner(backward_function, *upstream, out[-1])
    return ("ok", plain(out[:-1]), plain(grads), changed(before_args, args, "args") + changed(
        before_upstream, upstream, "upstream") + changed(before_cache, out[-1], "cache"))


def prepare(modules: dict):
    tool_import("torch")   # before the learner's time limit starts: it takes seconds
    return ("ok",)


def tool_import(name: str):
    """Import one of the tool's own modules with the learner's folders off the import path: their random.py
    must not become the random torch imports."""
    if name in sys.modules:
        return sys.modules[name]
    saved = sys.path[:]
    sys.path[:] = TOOL_PATH
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved


def stay_in_the_room(parent: int, lifeline: int) -> None:
    """End with the process that started this one, and take everything the learner's code starts along.

    sandbox.py started this process in a process group of its own and holds the writing end of the
    lifeline pipe. A guardian forked here, before any learner code runs, waits for that end to close
    (the parent ended, however it ended: even kill -9) and then kills the whole group: this process, the
    learner's subprocesses and forks, and itself. This process also asks the kernel for SIGKILL when its
    parent ends, should the guardian itself have been killed."""
    if os.fork() == 0:
        os.closerange(0, lifeline)
        os.closerange(lifeline + 1, os.sysconf("SC_OPEN_MAX"))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while os.read(lifeline, 1024):
                pass
        finally:
            os.killpg(0, signal.SIGKILL)
            os._exit(0)
    os.close(lifeline)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)   # the parent ended before the kernel was asked


def limit_memory(limit: int) -> None:
    """Cap the data this process and its children may map: a learner's shape gone wrong (an array of
    20 GB) then fails with MemoryError in their code instead of taking the user's machine down."""
    import resource

    if limit > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def main() -> None:
    parent, lifeline, memory = (int(a) for a in sys.argv[1:4])
    stay_in_the_room(parent, lifeline)
    limit_memory(memory)
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)                   # the learner's input() reads an empty file, not the requests
    os.close(null)
    os.dup2(2, 1)                      # the learner's prints must not reach the replies
    sys.stdout = sys.stderr
    read = reader(requests)
    send(replies, ("ready",))          # started: the learner's time limits count from here
    handlers = {"load": load, "prepare": prepare, "call": call, "pair": pair}
    modules: dict = {}
    while (request := receive(read)) is not None:
        try:
            reply = handlers[request[0]](modules, *request[1:])
        except Raised as error:
            reply = ("raised", *error.args)
        except Exception as error:   # the tool's own part failed on what their code did: one line, and on
            reply = ("failed", traceback.format_exception_only(error)[-1].strip())
        if os.getpid() != WORKER_PID:
            os._exit(0)   # the child of an os.fork() in their code, back here: only the worker itself answers
        try:
            send(replies, reply)
        except (TypeError, ValueError, RecursionError) as error:
            send(replies, ("failed", traceback.format_exception_only(error)[-1].strip()))


TOOL_PATH = sys.path[:]   # as the worker started, this directory left out: where the tool's own imports look

if __name__ == "__main__":
    WORKER_PID = os.getpid()
    main()
