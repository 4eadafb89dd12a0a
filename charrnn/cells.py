"""Every recurrent cell, one record each: the one place a cell's facts live (docs/cells.md, "Adding a cell").

A cell is its file, its row in CELLS, and conf/model/<name>.yaml. Its file (Cell.module) holds its
math for both backends:

    forward(W, x, state0, reuse=None) -> (out, cache)       the NumPy layer: W one layer's weights by
    backward(dout, cache, trace=None) -> (grads, dx, dstate0)   their names in the cell's equations
    GRADIENT_TERMS                                          each weight's per-step term, for gradcheck
    torch_step(W, xw_t, state) -> state                     one step for the torch backend's loop, in
                                                            tensor methods only (the file imports no torch)

and everything the rest of charrnn needs to know about it is a field here, read where it is needed:
no table elsewhere is keyed by a cell's name. Nothing here imports the cells' files until a backend asks
for one, so the record sits below every module that reads it.
"""

import functools
import importlib
from dataclasses import dataclass, field
from types import ModuleType


@dataclass(frozen=True)
class Quantity:
    """A per-unit value the explorer traces: a state array or a gate, named as in the cell's record."""

    name: str
    about: str                                   # its label on the explorer's page
    bounds: tuple[float, float] | None = (-1, 1)  # the range it lies in; None: unbounded, shown scaled per unit


H = Quantity("h", "h (output)")
GATE = (0, 1)   # a sigmoid's range


@dataclass(frozen=True)
class Cell:
    name: str
    module: str                  # the dotted name of its file (above)
    gates: tuple[str, ...]       # the H-sized blocks of Wxh, Whh and bh, in their order (G = len(gates))
    state: tuple[str, ...]       # the arrays its state carries, h (its output) first
    extra: tuple[str, ...] = ()  # its per-layer (H,) parameters beyond Wxh, Whh and bh
    # The recurrent-bias rule: torch.nn keeps b_hh beside b_ih, where charrnn keeps only their sum bh. A
    # gate named here has its b_hh block apart, as the parameter given (the GRU's reset gate multiplies
    # b_hn, so b_hn is not part of a sum); every other block of b_hh is zero.
    recurrent_bias: dict[str, str] = field(default_factory=dict)
    forget_gate: str | None = None        # the gate whose bias model.forget_bias shifts
    quantities: tuple[Quantity, ...] = (H,)  # what the explorer traces, each named from state or gates
    torch_twin: str | None = None         # its stock torch.nn module, the outside referee of its math
    # torch's fused multi-step kernel for it (a torch._VF function with torch.nn's arguments), or None:
    # then the torch backend runs its loop on every device.
    kernel: str | None = None
    # A parallel cell's gates read x_t alone (no Whh), so its update is h_t = a_t * h_{t-1} + b_t, its
    # file's torch_coefficients(xw) giving a_t and b_t for all T steps at once; the torch backend runs it
    # as torch_parallel's loop, or as its scan where recurrence=fused (auto: torch_parallel.scan_by_default).
    parallel: bool = False
    classic: str | None = None            # the classic cell a parallel one simplifies (the bench compares them)

    @functools.cached_property
    def code(self) -> ModuleType:
        """Its file: forward, backward, GRADIENT_TERMS and torch_step (imported at the first use)."""
        return importlib.import_module(self.module)

    def gate_block(self, gate: str, hidden_size: int) -> slice:
        """Where gate's block lies in a (G*H,) row of bh, or of a_t."""
        k = self.gates.index(gate)
        return slice(k * hidden_size, (k + 1) * hidden_size)


_LAYERS = "charrnn.backends.numpy_layers."

CELLS = {cell.name: cell for cell in [
    Cell("rnn", _LAYERS + "rnn", gates=("a",), state=("h",), torch_twin="RNN", kernel="rnn_tanh"),
    Cell("lstm", _LAYERS + "lstm", gates=("i", "f", "g", "o"), state=("h", "c"), forget_gate="f",
         quantities=(H, Quantity("c", "c (cell state)", bounds=None), Quantity("i", "i (input gate)", GATE),
                     Quantity("f", "f (forget gate)", GATE), Quantity("g", "g (candidate)"),
                     Quantity("o", "o (output gate)", GATE)),
         torch_twin="LSTM", kernel="lstm"),
    Cell("gru", _LAYERS + "gru", gates=("r", "z", "n"), state=("h",), extra=("bhn",), recurrent_bias={"n": "bhn"},
         quantities=(H, Quantity("r", "r (reset gate)", GATE), Quantity("z", "z (update gate)", GATE),
                     Quantity("n", "n (candidate)")),
         torch_twin="GRU", kernel="gru"),
    # Feng et al. 2024, "Were RNNs All We Needed?". On the CPU their loop beat their scan (docs/cells.md).
    Cell("mingru", _LAYERS + "mingru", gates=("z", "cand"), state=("h",),
         quantities=(Quantity("h", "h (output)", bounds=None), Quantity("z", "z (update gate)", GATE),
                     Quantity("cand", "h~ (candidate, linear in x)", bounds=None)),
         parallel=True, classic="gru"),
    Cell("minlstm", _LAYERS + "minlstm", gates=("f", "i", "cand"), state=("h",), forget_gate="f",
         quantities=(Quantity("h", "h (output)", bounds=None), Quantity("f", "f (forget gate)", GATE),
                     Quantity("i", "i (input gate)", GATE),
                     Quantity("cand", "h~ (candidate, linear in x)", bounds=None)),
         parallel=True, classic="lstm"),
]}


def state_names() -> tuple[str, ...]:
    """Every name a cell's state uses, as checkpoints store the state."""
    return tuple(dict.fromkeys(name for cell in CELLS.values() for name in cell.state))


def with_twin() -> list[str]:
    """The cells that have a stock torch.nn twin."""
    return [name for name, cell in CELLS.items() if cell.torch_twin]


def with_kernel() -> list[str]:
    """The cells that have a fused kernel."""
    return [name for name, cell in CELLS.items() if cell.kernel]
