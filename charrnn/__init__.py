"""charrnn: character-level language models (a tanh RNN, LSTM and GRU cells, stacked, with dropout)
trained by truncated backpropagation through time, on a hand-written NumPy backend and a PyTorch one."""
