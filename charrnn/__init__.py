"""charrnn: a character-level vanilla RNN language model, trained by truncated BPTT."""

__all__ = ["load", "train"]


def __getattr__(name: str):
    # charrnn.load and charrnn.train (charrnn/api.py) are imported on first use: the entry scripts import
    # charrnn.* modules, and must not pay for the API's imports before they can handle a Ctrl-C.
    if name in ("load", "train"):
        from charrnn import api
        return getattr(api, name)
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
