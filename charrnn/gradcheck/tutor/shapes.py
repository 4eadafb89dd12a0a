"""The shapes a learner's BPTT comes in, found by the names and signatures in their file.

A Shape knows one contract: how to draw a random problem in the learner's own layout, how to call
their code on it (through the sandbox) and check what comes back, the same math in torch for the
exact gradients (exact.py), how to cut a chunk into windows (picture.py), and how to move a problem
and its gradients to and from the tutor's one layout (mistakes.Canon). The shapes themselves live in
shape_minchar.py, shape_cs231n.py, shape_coursera.py and shape_charrnn.py.
"""

import ast
from dataclasses import dataclass, field

import numpy as np

from charrnn.gradcheck.tutor.sandbox import LearnerError
from charrnn.gradcheck.tutor.worker import Opaque, Returned

@dataclass
class Case:
    """One random problem in the learner's layout."""

    seed: int
    sizes: dict                          # B, T, H, and V (characters) or D (input size)
    arrays: dict                         # the learner's arguments (and min-char-rnn's globals), by name
    upstream: dict = field(default_factory=dict)   # gradients given from above (CS231n), not differentiated

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.sizes.items()) + f" seed {self.seed}"


class NotWritten(Exception):
    """The learner's function returns only None: a skeleton still to fill in."""


class Shape:
    family = ""                  # "min-char-rnn", "cs231n", "coursera" or "charrnn"
    signature = ""               # what the learner's function looks like, for the report
    layout = ""                  # the layout in words
    outputs: tuple = ()          # what the forward returns besides the gradients, checked too
    grads: dict = {}             # gradient name -> the argument it is the gradient of, in return order
    weights: tuple = ()          # the arguments that are weights
    roles: dict = {}             # argument -> its name in mistakes.Canon (Wxh, Whh, bh, Why, by, h0, c0, x)
    through_time = True          # False for one step (CS231n's step functions): no per-step picture
    carries_state = True         # False where a chunk cannot start from any state (CS231n's LSTM: c0 = 0)
    window_loss = "all"          # a window's loss covers all its steps ("all") or its last step only ("last")
    call_args: tuple = ()        # the names of the arguments the learner's function is called with, in order

    def __init__(self, cell: str, functions: tuple[str, ...], arrays: str):
        self.cell, self.functions, self.arrays = cell, functions, arrays

    @property
    def name(self) -> str:
        return " / ".join(self.functions)

    def weight_grads(self) -> list[str]:
        return [g for g, arg in self.grads.items() if arg in self.weights]

    def state_grads(self) -> list[str]:
        return [g for g, arg in self.grads.items() if self.roles.get(arg) in ("h0", "c0")]

    def case(self, sizes: dict, seed: int) -> Case:
        """A random problem of sizes {B, T, H, V} in the learner's layout (V is the input size D for CS231n)."""
        raise NotImplementedError

    def run(self, box, loaded, case: Case) -> dict:
        """Their forward's outputs and their gradients on the case, by name, checked (LearnerError, NotWritten)."""
        raise NotImplementedError

    def steps(self, t: dict, upstream: dict, weights_at):
        """The same math in torch: t holds the case's arrays (float ones as tensors), weights_at(s) the
        weights step s uses. Returns each step's loss, the forward's outputs, and after each step the
        state arguments a chunk starting there takes."""
        raise NotImplementedError

    def window(self, case: Case, t0: int, s: int, states: list) -> Case:
        """Steps t0..s of the case, from the exact state after step t0-1 (states: exact.Exact.states)."""
        raise NotImplementedError

    def truncate(self, case: Case, T: int) -> Case:
        """The case's first T steps, every step's loss kept."""
        return self.window(case, 0, T - 1, [])

    def canon(self, case: Case):
        """The case in mistakes.Canon's layout, or None for a cell it has no switches for."""
        raise NotImplementedError

    def learner_layout(self, key: str, value: np.ndarray) -> np.ndarray:
        """A gradient in mistakes.Canon's layout (key: its name there) in the learner's."""
        raise NotImplementedError

    def from_canon(self, arrays: dict) -> dict:
        """Gradients in mistakes.Canon's layout (any of its names) in the learner's, by gradient name."""
        return {grad: self.learner_layout(self.roles[arg], arrays[self.roles[arg]])
                for grad, arg in self.grads.items() if self.roles[arg] in arrays}

    def window_scale(self, t0: int, s: int, T: int) -> float:
        """What turns a window's gradient into the whole chunk's units (a mean over fewer steps)."""
        return 1.0

    def scale_names(self, sizes: dict) -> dict[str, float]:
        """The factors a loss-scale mistake is likely to be, by name: the steps T, the streams (B, or
        CS231n's N), their product, and the reciprocals."""
        batch = "N" if "N" in sizes else "B"
        T, B = sizes.get("T", 1), sizes.get(batch, 1)
        factors = {batch: B, "T": T, f"{batch}*T": B * T} if B > 1 and T > 1 else {batch: B} if B > 1 else {"T": T}
        return {**factors, **{f"1/{name}" if "*" not in name else f"1/({name})": 1 / v for name, v in factors.items()}}


def describe(value) -> str:
    if isinstance(value, Returned):
        return f"an array of shape {tuple(value.value.shape)}"
    if isinstance(value, Opaque):
        return f"a {value.type_name}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return "None" if value is None else f"a {type(value).__name__}"


def unpack(value, names: tuple, what: str, contract: str) -> dict:
    """The learner's returned tuple as {name: value}; refuses another count, and a skeleton's Nones."""
    if value is None or isinstance(value, (tuple, list)) and all(v is None for v in value):
        raise NotWritten(f"{what} returned only None")
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        raise LearnerError(f"{what} returned {describe(value)}; {contract} returns {len(names)} values: "
                           f"{', '.join(names)}")
    return dict(zip(names, value))


def array(value, name: str, shape: tuple, what: str, case: Case, hint: str = "") -> np.ndarray:
    """A returned array checked: an array (or tensor) of the expected shape, all finite."""
    if isinstance(value, (int, float, np.generic)) and shape == ():
        value = Returned("number", np.asarray(value))
    if not isinstance(value, Returned):
        raise LearnerError(f"{what} returned {describe(value)} for {name}; it must be an array of shape {shape}{hint}")
    result = value.value
    if result.shape != shape and not (shape == () and result.size == 1):
        raise LearnerError(f"{what}: {name} has shape {tuple(result.shape)}; it must be {shape}{hint}")
    if not np.issubdtype(result.dtype, np.number) or np.iscomplexobj(result):
        raise LearnerError(f"{what}: {name} holds {result.dtype} values; it must hold real numbers")
    if not np.all(np.isfinite(result)):
        raise LearnerError(f"{what}: {name} holds NaN or inf on a small random problem ({case.label()}); print the "
                           f"values your code computes step by step to find where they first appear")
    return result.reshape(shape)


def torch_functions(source: str) -> set[str]:
    """The names of the file's functions that compute with torch (they are handed tensors)."""
    return {node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)
            and any(isinstance(n, ast.Name) and n.id == "torch" for n in ast.walk(node))}


def one_hot(ids: np.ndarray, V: int) -> np.ndarray:
    return np.eye(V)[ids]


def in_place(shape: Shape, paths: list[str]) -> list[str]:
    """The worker's paths of arrays changed in place ("args[0]['Wxh']", "upstream[0]", "cache[2]") in the
    learner's names: params['Wxh'], dh, the cache."""
    names = []
    for path in paths:
        head, _, rest = path.partition("]")
        where, _, index = head.partition("[")
        if where == "args" and int(index) < len(shape.call_args):
            name = shape.call_args[int(index)] + rest
        elif where == "upstream" and int(index) < len(getattr(shape, "upstream", ())):
            name = shape.upstream[int(index)] + rest
        elif where == "globals":
            name = index.strip("'\"")
        else:
            name = f"the {where}" if where == "cache" else path
        if name not in names:
            names.append(name)
    return names
