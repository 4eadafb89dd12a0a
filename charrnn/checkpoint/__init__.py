"""Checkpoints: the file format (format.py), what each field must hold (fields.py), a checkpoint's
model back on a backend (restore.py), and a trained model loaded for use (loaded.py)."""

from charrnn.checkpoint.format import Checkpoint, load_checkpoint, reading_once, save_checkpoint
from charrnn.checkpoint.loaded import LoadedModel, load_model
from charrnn.checkpoint.restore import (BEST_THEN_LAST, resolve_checkpoint, restore_backend, resume_path,
                                        saved_config)

__all__ = ["BEST_THEN_LAST", "Checkpoint", "LoadedModel", "load_checkpoint", "load_model", "reading_once",
           "resolve_checkpoint", "restore_backend", "resume_path", "save_checkpoint", "saved_config"]
