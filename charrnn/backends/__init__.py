"""Backends behind one interface (interface.Backend), chosen by name: BACKENDS is the one list of them."""

import importlib

from charrnn.backends.guard import StepGuard
from charrnn.backends.interface import Backend, Gradients, StepResult, StepSettings
from charrnn.model import ModelSpec
from charrnn.distributed import SOLO, Ranks

# name -> the module and class that implement it, imported only when asked for: torch takes 4 to 6 s to
# import on the 2-core host, which sampling on the NumPy backend never pays.
BACKENDS = {
    "numpy": ("charrnn.backends.numpy_backend", "NumpyBackend"),
    "torch": ("charrnn.backends.torch_backend", "TorchBackend"),
}


def make_backend(name: str, spec: ModelSpec, params: dict, settings: StepSettings, device: str = "cpu",
                 replicas: Ranks = SOLO) -> Backend:
    """The backend `name` for the model spec around initial params (NumPy arrays, which it copies),
    training as settings say, on device (the torch backend's; NumPy runs on the CPU), its gradients
    averaged over replicas (charrnn.distributed) at every step."""
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)(spec, params, settings, device, replicas)


__all__ = ["BACKENDS", "Backend", "Gradients", "StepGuard", "StepResult", "StepSettings", "make_backend"]
