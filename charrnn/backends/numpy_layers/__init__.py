"""The NumPy backend's layers, each a forward/backward pair: one recurrent cell per module (rnn, lstm,
gru, each named by its record in charrnn.cells), the output layer and loss (head), and the input
projection every cell shares (projection).

    out, cache = cell.forward(W, x, state0, reuse)       W: one layer's weights by their names in the
    grads, dx, dstate0 = cell.backward(dout, cache)       cell's equations (Wxh, Whh, bh, ...)

A cell's module also holds its torch_step, the torch backend's loop step, written in tensor methods so
that the module imports no torch: each cell's math for both backends sits in its one file.
"""
