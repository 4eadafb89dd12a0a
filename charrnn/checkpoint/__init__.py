"""Checkpoints: the file format (format.py), what each field must hold (fields.py), and a checkpoint's
model back on a backend (restore.py)."""

from charrnn.checkpoint.format import Checkpoint, load_checkpoint, save_checkpoint
from charrnn.checkpoint.restore import BEST_THEN_LAST, LoadedModel, load_model, resolve_checkpoint, restore_backend

__all__ = ["BEST_THEN_LAST", "Checkpoint", "LoadedModel", "load_checkpoint", "load_model", "resolve_checkpoint",
           "restore_backend", "save_checkpoint"]
