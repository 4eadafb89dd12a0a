"""torch.optim and torch.nn.utils clipping for the torch backend, set up and saved as charrnn.optim's are.

The same config keys build the same update (charrnn.optim copies torch.optim's arithmetic), and
the state goes in and out under charrnn.optim's flat names ("step", "<state>/<param>"), so a
checkpoint written by either backend continues in the other.
"""

import numpy as np
import torch

from charrnn.optim import OPTIMIZERS



def make_torch_optimizer(cfg, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """The torch.optim optimizer that cfg (one of charrnn.optim.OPTIMIZERS' configs) describes."""
    kind = OPTIMIZERS[cfg.name]
    return getattr(torch.optim, kind.torch_class)(params, lr=cfg.lr, **kind.torch_args(cfg))


def _norms(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.linalg.vector_norm(p.grad) for p in params])


def clip_gradients(params: list[torch.Tensor], mode: str, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip the params' .grad in place as charrnn.optim.clip_gradients does, with torch.nn.utils.
    Returns each gradient's L2 norm before and after, as (P,) tensors left on the device."""
    before = _norms(params)
    if mode == "none":
        return before, before
    if mode == "norm":
        # clip_grad_norm_ in its two public halves, so that it reuses the per-parameter norms.
        torch.nn.utils.clip_grads_with_norm_(params, threshold, torch.linalg.vector_norm(before))
    elif mode == "value":
        torch.nn.utils.clip_grad_value_(params, threshold)
    else:
        raise ValueError(f"unknown clip mode {mode!r}")
    return before, _norms(params)


def export_state(optimizer: torch.optim.Optimizer, optim_name: str, weights: dict[str, torch.Tensor],
                 step: int) -> dict[str, np.ndarray]:
    """The flat state charrnn.optim.Optimizer.state_dict writes. torch creates some state lazily
    (Adam's before its first step, SGD's momentum_buffer never without momentum): zeros then, as NumPy has."""
    flat = {"step": np.array(step, dtype=np.int64)}
    for state_name in OPTIMIZERS[optim_name].state_names:
        for k, w in weights.items():
            value = optimizer.state[w].get(state_name)
            if value is None:
                value = torch.zeros_like(w)
            flat[f"{state_name}/{k}"] = value.detach().cpu().numpy().copy()
    return flat


def load_state(optimizer: torch.optim.Optimizer, optim_name: str, weights: dict[str, torch.Tensor],
               flat: dict[str, np.ndarray]) -> int:
    """Load a flat state written by either backend; returns its step count."""
    step = int(flat["step"])
    kind = OPTIMIZERS[optim_name]
    state = {}
    for i, k in enumerate(weights):
        # Copies: torch's loader keeps a tensor that already has the right dtype and device, and the
        # optimizer then updates it in place, which would write through into the caller's arrays.
        per_param = {name: torch.tensor(flat[f"{name}/{k}"]) for name in kind.state_names}
        if kind.torch_counts_steps:
            per_param["step"] = torch.tensor(float(step))    # per parameter, in torch's default dtype
        elif step == 0:
            per_param = {}   # (torch's SGD copies the first gradient into a missing momentum_buffer)
        state[i] = per_param
    # torch's own loader casts each array to its parameter's dtype and device.
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return step
