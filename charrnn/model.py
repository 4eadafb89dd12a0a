"""The model's parameters: names, shapes and initialisation, shared by every backend.

    h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)      x_t one-hot over the V characters
    y_t = Why h_t + by                          logits over the next character
    p_t = softmax(y_t),  loss = -log p_t[target_t]

Shapes are min-char-rnn's, which are also torch's: Wxh (H, V), Whh (H, H), Why (V, H), bh (H,), by (V,).
Initial weights are drawn here, in NumPy, so that both backends start from the same numbers.
"""

import numpy as np

PARAM_NAMES = ("Wxh", "Whh", "Why", "bh", "by")


def param_shapes(vocab_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
    V, H = vocab_size, hidden_size
    return {"Wxh": (H, V), "Whh": (H, H), "Why": (V, H), "bh": (H,), "by": (V,)}


def init_params(vocab_size: int, hidden_size: int, init: str, init_std: float, seed: int,
                dtype: str) -> dict[str, np.ndarray]:
    """Draw the five parameters.

    init="normal": min-char-rnn's N(0, init_std^2) weights and zero biases.
    init="uniform": torch.nn.RNN's U(-1/sqrt(H), 1/sqrt(H)) for every parameter, biases included;
    it keeps tanh out of saturation for any H, which trains faster at H >= 128.
    """
    rng = np.random.default_rng(seed)
    shapes = param_shapes(vocab_size, hidden_size)
    params = {}
    for name in PARAM_NAMES:
        shape = shapes[name]
        if init == "normal":
            value = rng.standard_normal(shape) * init_std if name.startswith("W") else np.zeros(shape)
        elif init == "uniform":
            bound = 1.0 / np.sqrt(hidden_size)
            value = rng.uniform(-bound, bound, shape)
        else:
            raise ValueError(f"unknown init {init!r}")
        params[name] = value.astype(dtype)
    return params
