"""charrnn: character-level language models (a tanh RNN, LSTM and GRU cells, stacked, with dropout)
trained by truncated backpropagation through time, on a hand-written NumPy backend and a PyTorch one.

    m = charrnn.load("runs/...")         a trained model: m.sample, m.score, m.predict, m.trace, m.explore
    charrnn.train(overrides=[...])       the same run as python train.py ... (api.py)
    charrnn.check_bptt("my_rnn.py")      check your own hand-written BPTT (gradcheck/tutor/)

A mistake raises charrnn.UserError (charrnn.errors) with the line the command line prints.
"""

from charrnn.errors import UserError

__all__ = ["Model", "UserError", "check_bptt", "load", "train"]
_FROM_API = ("Model", "load", "train")


def __dir__() -> list[str]:
    # The names imported on first use (below) are listed too, so that dir(), help() and a notebook's
    # completion show them before they are used.
    return sorted(set(__all__) | {name for name in globals() if not name.startswith("_")})


def __getattr__(name: str):
    # Imported on first use: the entry scripts import charrnn.* modules and must not pay for these imports
    # (torch among them) before they can handle a Ctrl-C or refuse a bad key.
    if name in _FROM_API:
        from charrnn import api

        return getattr(api, name)
    if name == "check_bptt":
        from charrnn.gradcheck.tutor.check import check_bptt

        return check_bptt
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
