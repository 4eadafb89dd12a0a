"""Backends behind one interface (interface.Backend), chosen by name from the config."""

from charrnn.backends.guard import StepGuard
from charrnn.backends.interface import Backend, Gradients, StepResult

BACKENDS = ("numpy", "torch")


def make_backend(cfg, spec, params: dict) -> Backend:
    """Build the backend named by cfg.backend.name for the model spec (charrnn.model.ModelSpec) around
    initial params (NumPy arrays).

    torch is imported only when asked for, so the NumPy backend starts fast.
    """
    name = cfg.backend.name
    common = dict(optim_cfg=cfg.optim, clip_mode=cfg.train.clip_mode, grad_clip=cfg.train.grad_clip,
                  loss_reduction=cfg.train.loss_reduction, guard=StepGuard.from_config(cfg.train, spec.vocab_size))
    if name == "numpy":
        from charrnn.backends.numpy_backend import NumpyBackend
        return NumpyBackend(spec, params, **common)
    if name == "torch":
        from charrnn.backends.torch_backend import TorchBackend
        return TorchBackend(spec, params, device=cfg.backend.device, **common)
    raise ValueError(f"unknown backend {name!r}")


__all__ = ["BACKENDS", "Backend", "Gradients", "StepResult", "make_backend"]
