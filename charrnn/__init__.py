"""charrnn: character-level language models (a tanh RNN, LSTM and GRU cells, stacked, with dropout)
trained by truncated backpropagation through time, on a hand-written NumPy backend and a PyTorch one.

    m = charrnn.load("runs/...")         a trained model: m.sample, m.score, m.predict, m.trace, m.explore
    charrnn.train(overrides=[...])       the same run as python train.py ... (api.py)
    charrnn.check_bptt("my_rnn.py")      check your own hand-written BPTT (gradcheck/tutor/)
"""

__all__ = ["check_bptt", "load", "train"]


def __getattr__(name: str):
    # Imported on first use: the entry scripts import charrnn.* modules and must not pay for these imports
    # (torch among them) before they can handle a Ctrl-C or refuse a bad key.
    if name in ("load", "train"):
        from charrnn import api

        return getattr(api, name)
    if name == "check_bptt":
        from charrnn.gradcheck.tutor.check import check_bptt

        return check_bptt
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
