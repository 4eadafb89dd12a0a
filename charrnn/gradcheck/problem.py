"""Small random problems to check gradients on, and the one error figure every check reports."""

from dataclasses import dataclass

import numpy as np

from charrnn.model import ModelSpec, dropout_masks, init_params, model_spec

# Against autograd only round-off separates the two; central differences add their own O(eps^2)
# truncation error and are always taken in float64, where a float32 gradient is off by its rounding.
TOLERANCES = {"float64": {"autograd": 1e-10, "finite differences": 1e-6},
              "float32": {"autograd": 1e-5, "finite differences": 1e-4}}
FD_EPS = 1e-6



@dataclass
class Problem:
    spec: ModelSpec
    params: dict           # charrnn.model's names
    inputs: np.ndarray     # (B, T) ids
    targets: np.ndarray    # (B, T) ids
    state: tuple           # (L, B, H) arrays, non-zero
    masks: tuple | None    # L (T, B, H) dropout masks, or None

    @property
    def state_keys(self) -> list[str]:
        """The rows for the initial state's gradient: h_prev, and c_prev for the LSTM."""
        return [f"{name}_prev" for name in self.spec.state_names]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the largest |entry| of either: one figure per array that tiny entries cannot inflate."""
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b)) / scale)


def random_problem(B: int, T: int, H: int, V: int, dtype: str = "float64", seed: int = 0, cell: str = "rnn",
                   num_layers: int = 1, dropout: float = 0.0, **options) -> Problem:
    """torch.nn-style initial params, random ids (B, T), a non-zero state and, with dropout, masks.
    options: the parallel cells' (activation, residual, norm: charrnn.model.model_spec)."""
    rng = np.random.default_rng(seed)
    spec = model_spec(cell, V, H, num_layers, **options)
    params = init_params(spec, "uniform", 0.01, seed, dtype)
    inputs = rng.integers(0, V, (B, T))
    targets = rng.integers(0, V, (B, T))
    state = tuple((0.5 * rng.standard_normal((num_layers, B, H))).astype(dtype) for _ in spec.state_names)
    return Problem(spec, params, inputs, targets, state, dropout_masks(dropout, spec, B, T, seed, 0, dtype))
