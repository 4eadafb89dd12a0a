"""The model: its description (ModelSpec), parameter names and shapes, initial weights and zero state,
shared by every backend, and its export to stock torch.nn modules.

    layer 0 reads x_t (one-hot over the V characters), layer l > 0 reads layer l-1's h_t;
    each layer is one recurrent cell (charrnn.cells: rnn, lstm, gru, mingru, minlstm); the head reads the
    top layer's h_t:
    y_t = Why h_t + by,  p_t = softmax(y_t),  loss = -log p_t[target_t]

Parameters, for each layer l (names end in _l for l >= 1, so a one-layer rnn keeps min-char-rnn's
names Wxh, Whh, Why, bh, by), G = the cell's gate count, In = V for layer 0 and H above it:

    Wxh (G*H, In)   input weights, the gates stacked in the cell's order (torch.nn's)
    Whh (G*H, H)    recurrent weights, the same order (none for the parallel cells, mingru and minlstm)
    bh  (G*H,)      the gates' biases (torch's b_ih + b_hh: the sum is all the math sees)
    the cell's extra (H,) parameters, such as the GRU's bhn (b_hn, inside its reset gate's product)
    Why (V, H), by (V,)   the head, once

Each cell's gates, state and extra parameters are its record's (charrnn.cells).

The parallel cells take three options (ModelSpec; docs/cells.md, "The paper's options"), off by default:
    activation = "g"   the candidate h~_t = g(u_h) with the paper's g(x) = x + 1/2 (x >= 0), sigmoid(x) (x < 0)
    residual   = True  layer l >= 1 adds its input to its output: s^{l+1} = s^l + h^l (layer 0 reads the
                       one-hot x_t, of size V, not H, so it has no such path)
    norm       = "rms" or "layer"   each layer above 0 and the head read their input normalised over its H
                       units (pre-norm), with no gain or bias: the Wxh or Why that follows absorbs both

The recurrent state is a tuple of arrays, one per entry of the cell's state, each (L, B, H) for L
layers and B streams: torch.nn's layout (nn.LSTM's (h0, c0)). zero_state builds it.

The public contract of both backends' loss_and_grads (see numpy_backend):
    loss_and_grads(params, inputs, targets, state, spec=model_spec(...), masks=None)
        -> (loss, grads keyed like params, state_last)
Initial weights are drawn here, in NumPy, so that both backends start from the same numbers.
"""

import functools
from dataclasses import dataclass

import numpy as np

from charrnn.cells import CELLS

HEAD = ("Why", "by")


@dataclass(frozen=True)
class ModelSpec:
    cell: str
    vocab_size: int
    hidden_size: int
    num_layers: int = 1
    activation: str = "none"    # the parallel cells' options, above
    residual: bool = False
    norm: str = "none"

    @property
    def cell_options(self) -> dict:
        """The keyword arguments a parallel cell's forward and torch_coefficients take: {} with none set."""
        return {} if self.activation == "none" else {"activation": self.activation}

    @property
    def options_text(self) -> str:
        """The parallel cells' options that are on, in words ("residual, rms norm"); "" with none."""
        return ", ".join([*(["g"] if self.activation == "g" else []), *(["residual"] if self.residual else []),
                          *([f"{self.norm} norm"] if self.norm != "none" else [])])

    @property
    def state_names(self) -> tuple[str, ...]:
        return CELLS[self.cell].state

    def layer_names(self, layer: int) -> dict[str, str]:
        """{"Wxh": "Wxh_1", ...}: the names of one layer's parameters, by their name in the cell's equations."""
        return _layer_names(self.cell, layer)


@functools.cache
def _layer_names(cell: str, layer: int) -> dict[str, str]:
    suffix = f"_{layer}" if layer else ""
    weights = ("Wxh", "bh") if CELLS[cell].parallel else ("Wxh", "Whh", "bh")
    return {base: base + suffix for base in (*weights, *CELLS[cell].extra)}


def layer_weights(params: dict, spec: ModelSpec, layer: int) -> dict:
    """One layer's weights (NumPy arrays or tensors) under their names in its cell's equations: Wxh, Whh, bh, ..."""
    return {base: params[name] for base, name in spec.layer_names(layer).items()}


ACTIVATIONS = ("none", "g")
NORMS = ("none", "rms", "layer")
NORM_EPS = 1e-5   # inside the square root of every norm, as torch.nn.LayerNorm's default


def model_spec(cell: str = "rnn", vocab_size: int = 65, hidden_size: int = 100, num_layers: int = 1,
               activation: str = "none", residual: bool = False, norm: str = "none") -> ModelSpec:
    """The model's description, checked. The one public way to build one."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; one of {', '.join(CELLS)}")
    if min(vocab_size, hidden_size, num_layers) < 1:
        raise ValueError(f"vocab_size, hidden_size and num_layers must be positive, got "
                         f"{vocab_size}, {hidden_size}, {num_layers}")
    problem = options_problem(cell, activation, residual, norm)
    if problem:
        raise ValueError(problem)
    return ModelSpec(cell, vocab_size, hidden_size, num_layers, activation, bool(residual), norm)


def options_problem(cell: str, activation: str, residual: bool, norm: str) -> str | None:
    """What is wrong with the parallel cells' options for this cell, in one line, or None."""
    if activation not in ACTIVATIONS:
        return f"model.activation={activation!r} is not one of {', '.join(ACTIVATIONS)}"
    if norm not in NORMS:
        return f"model.norm={norm!r} is not one of {', '.join(NORMS)}"
    if not CELLS[cell].parallel and (activation != "none" or residual or norm != "none"):
        chosen = [f"{key}={value}" for key, value, off in (("activation", activation, "none"),
                  ("residual", residual, False), ("norm", norm, "none")) if value != off]
        return (f"model.{chosen[0]} is an option of the parallel cells (mingru, minlstm), not of model.cell={cell}: "
                f"leave it out, or use model=mingru or model=minlstm")
    return None


def spec_of(model_cfg, vocab_size: int) -> ModelSpec:
    """The spec a config's model section (charrnn.config.ModelConfig) describes."""
    return model_spec(model_cfg.cell, vocab_size, model_cfg.hidden_size, model_cfg.num_layers,
                      model_cfg.activation, model_cfg.residual, model_cfg.norm)


def param_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape, weights first and biases after (the order initial values are drawn in)."""
    V, H, G = spec.vocab_size, spec.hidden_size, len(CELLS[spec.cell].gates)
    weights, biases = {}, {}
    for layer in range(spec.num_layers):
        names = spec.layer_names(layer)
        weights[names["Wxh"]] = (G * H, V if layer == 0 else H)
        if "Whh" in names:
            weights[names["Whh"]] = (G * H, H)
        biases[names["bh"]] = (G * H,)
        for extra in CELLS[spec.cell].extra:
            biases[names[extra]] = (H,)
    return {**weights, "Why": (V, H), **biases, "by": (V,)}


def init_params(spec: ModelSpec, init: str, init_std: float, seed: int, dtype: str,
                forget_bias: float = 0.0) -> dict[str, np.ndarray]:
    """Draw every parameter.

    init="normal": min-char-rnn's N(0, init_std^2) weights and zero biases.
    init="uniform": torch.nn's U(-1/sqrt(H), 1/sqrt(H)) for every parameter, biases included;
    it keeps tanh out of saturation for any H, which trains faster at H >= 128.
    forget_bias is added to the LSTM's forget-gate bias (char-rnn uses 1; torch 0).
    """
    rng = np.random.default_rng(seed)
    H = spec.hidden_size
    params = {}
    for name, shape in param_shapes(spec).items():
        if init == "normal":
            value = rng.standard_normal(shape) * init_std if name.startswith("W") else np.zeros(shape)
        elif init == "uniform":
            bound = 1.0 / np.sqrt(H)
            value = rng.uniform(-bound, bound, shape)
        else:
            raise ValueError(f"unknown init {init!r}")
        params[name] = value.astype(dtype)
    cell = CELLS[spec.cell]
    if cell.forget_gate is not None:
        for layer in range(spec.num_layers):
            params[spec.layer_names(layer)["bh"]][cell.gate_block(cell.forget_gate, H)] += forget_bias
    return params


def zero_state(spec: ModelSpec, batch_size: int, dtype) -> tuple[np.ndarray, ...]:
    """The state at the start of a stream: a zero (L, B, H) array for each name in the cell's state."""
    return tuple(np.zeros((spec.num_layers, batch_size, spec.hidden_size), dtype) for _ in spec.state_names)


def to_torch(spec: ModelSpec, params: dict[str, np.ndarray]):
    """Stock torch modules holding exactly these weights: (the cell's torch.nn twin, nn.RNN / nn.LSTM /
    nn.GRU, with num_layers and batch_first=True; an nn.Linear head). The recurrent module reads one-hot
    inputs (B, T, V) and a state in the layout above; head(out) are the logits. torch keeps two biases per
    layer: b_ih gets bh, and b_hh the cell's recurrent-bias rule (zeros, but the GRU's bhn in its n block)."""
    import torch

    cell = CELLS[spec.cell]
    if cell.torch_twin is None:
        raise ValueError(f"cell {spec.cell!r} has no stock torch.nn module")
    module = getattr(torch.nn, cell.torch_twin)
    dtype = getattr(torch, str(params["Why"].dtype))
    H = spec.hidden_size
    rnn = module(spec.vocab_size, H, num_layers=spec.num_layers, batch_first=True, dtype=dtype)
    head = torch.nn.Linear(H, spec.vocab_size, dtype=dtype)
    with torch.no_grad():
        for layer in range(spec.num_layers):
            W = layer_weights(params, spec, layer)
            getattr(rnn, f"weight_ih_l{layer}").copy_(torch.as_tensor(W["Wxh"]))
            getattr(rnn, f"weight_hh_l{layer}").copy_(torch.as_tensor(W["Whh"]))
            getattr(rnn, f"bias_ih_l{layer}").copy_(torch.as_tensor(W["bh"]))
            b_hh = getattr(rnn, f"bias_hh_l{layer}")
            b_hh.zero_()
            for gate, name in cell.recurrent_bias.items():
                b_hh[cell.gate_block(gate, H)] = torch.as_tensor(W[name])
        head.weight.copy_(torch.as_tensor(params["Why"]))
        head.bias.copy_(torch.as_tensor(params["by"]))
    return rnn, head


def dropout_masks(p: float, spec: ModelSpec, batch_size: int, seq_length: int, seed: int, step: int,
                  dtype) -> tuple[np.ndarray, ...] | None:
    """L masks (T, B, H), each entry 0 or 1/(1-p), for training step `step`; None when p is 0.

    Drawn in NumPy, so that both backends apply the same ones. model.dropout = p zeroes each layer's
    output h_t (before the next layer, and the top layer's before the head) with probability p and
    scales what is kept by 1/(1-p) (inverted dropout: evaluation and sampling use the weights as they
    are). A step's masks depend on (seed, step, layer) alone, so a resumed run draws the same masks as
    an unbroken one and needs no generator saved."""
    if p == 0:
        return None
    shape = (seq_length, batch_size, spec.hidden_size)
    # float32 draws whatever the model's dtype: half the cost, and float32 and float64 runs share masks.
    return tuple(np.multiply(np.random.default_rng([seed, step, layer]).random(shape, np.float32) >= p,
                             1.0 / (1.0 - p), dtype=dtype)
                 for layer in range(spec.num_layers))
