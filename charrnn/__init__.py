"""charrnn: a character-level vanilla RNN language model, trained by truncated BPTT."""
