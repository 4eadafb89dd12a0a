"""The NumPy backend's layers, each a forward/backward pair: one recurrent cell per module (rnn, lstm,
gru), the output layer and loss (head), and the input projection every cell shares (projection).

    out, cache = cell.forward(W, x, state0, reuse)       W: one layer's weights by their names in the
    grads, dx, dstate0 = cell.backward(dout, cache)       cell's equations (Wxh, Whh, bh, ...)
"""

from charrnn.backends.numpy_layers import gru, lstm, mingru, minlstm, rnn

CELL_LAYERS = {"rnn": rnn, "lstm": lstm, "gru": gru, "mingru": mingru, "minlstm": minlstm}
