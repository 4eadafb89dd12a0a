"""What a run shows a person: the progress bar and TensorBoard's curves (monitor.py), TensorBoard's
curated page and HPARAMS table (dashboard.py), and the gradient-flow picture (grad_flow.py)."""

from charrnn.monitor.monitor import Monitor

__all__ = ["Monitor"]
