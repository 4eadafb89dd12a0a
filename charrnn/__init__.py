"""charrnn: character-level language models (a tanh RNN, LSTM and GRU cells, stacked, with dropout)
trained by truncated backpropagation through time, on a hand-written NumPy backend and a PyTorch one."""


def __getattr__(name):
    # Imported on first use: check_bptt needs torch, and `import charrnn` must not load it (the NumPy
    # backend starts without it).
    if name == "check_bptt":
        from charrnn.gradcheck.tutor.check import check_bptt

        return check_bptt
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")


__all__ = ["check_bptt"]
