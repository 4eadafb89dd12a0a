"""The torch backend's stack on torch's own fused multi-step kernels, for the cells whose record names one
(Cell.kernel, a torch._VF function taking torch.nn's arguments: input, state, weights, has_biases,
num_layers, dropout, train, bidirectional, batch_first): the ones torch.nn.RNN, LSTM and GRU
call (cuDNN's on a GPU; on the CPU oneDNN's LSTM in float32, ATen's C++ loop otherwise), run on charrnn's
parameters, carried state and dropout masks, to the same numbers as the loop of torch_backend.

A kernel computes its torch.nn twin's math, not the cell's file: the two agree only while that file
keeps to torch.nn's equations, which tests/test_fused.py holds them to for every cell with a kernel.

torch.nn keeps two biases per layer, b_ih and b_hh, where charrnn keeps their sum bh and, for the GRU,
b_hn apart as bhn (its reset gate multiplies it). The kernels get charrnn.model.to_torch's mapping, the
cell record's recurrent-bias rule:

    W_ih = Wxh,  W_hh = Whh,  b_ih = bh,  b_hh = 0 (rnn, lstm) or [0, 0, bhn] (gru)

and autograd carries the gradients back through it to Wxh, Whh, bh and bhn. Layer 0 reads the one-hot
x_t, (T, B, V), as torch.nn does: a (T*B, V) x (V, G*H) product in place of the loop's gather, cheap
while V is small beside G*H (V=65 and G*H >= 256 here).

Without dropout the whole stack is one kernel call (num_layers=L). With dropout it is one call per layer,
charrnn's mask applied between them: a kernel draws its own masks, which would break the equality with
the NumPy backend and the bit-exact resume. The kernel returns only the top layer's outputs, so
TorchBackend.gradients, which needs every layer's h_t in the graph, runs the loop.

Under autocast the kernel's inputs, weights and state are cast to the autocast dtype here, and the kernel
runs in it: CPU autocast does not reach inside every kernel (the GRU's stays in float32) and oneDNN's
bfloat16 LSTM needs CPU features this project's hosts lack.
"""

import warnings

import torch

from charrnn.cells import CELLS, Cell
from charrnn.model import ModelSpec, layer_weights

# cuDNN copies the weights it is given into its own layout at every call and warns that this costs a copy;
# here that is by design (the weights are charrnn's own tensors, b_hh is made per call), and small beside
# a chunk's work, so the warning would only alarm.
warnings.filterwarnings("ignore", "RNN module weights are not part of single contiguous chunk", UserWarning)


def recurrent_bias(cell: Cell, W: dict[str, torch.Tensor], hidden_size: int) -> torch.Tensor:
    """torch.nn's b_hh for one layer whose weights W are named as in the cell's equations: the cell's
    recurrent-bias rule (zeros, but the GRU's bhn in the n block)."""
    if not cell.recurrent_bias:
        return W["bh"].new_zeros(W["bh"].shape)
    zeros = W["bh"].new_zeros(hidden_size)
    return torch.cat([W[cell.recurrent_bias[gate]] if gate in cell.recurrent_bias else zeros for gate in cell.gates])


def kernel_weights(weights: dict[str, torch.Tensor], spec: ModelSpec, layers: range) -> list[torch.Tensor]:
    """The flat list a kernel takes, [W_ih, W_hh, b_ih, b_hh] per layer, for the given layers."""
    flat = []
    for layer in layers:
        W = layer_weights(weights, spec, layer)
        flat += [W["Wxh"], W["Whh"], W["bh"], recurrent_bias(CELLS[spec.cell], W, spec.hidden_size)]
    return flat


def run_kernel(spec: ModelSpec, weights: dict[str, torch.Tensor], layers: range, inputs: torch.Tensor,
               state: tuple) -> tuple[torch.Tensor, tuple]:
    """One kernel call for consecutive layers: inputs (T, B, In), state a tuple of (len(layers), B, H)
    tensors -> the top layer's outputs (T, B, H) and the layers' state after the last step."""
    flat = kernel_weights(weights, spec, layers)
    device = inputs.device.type
    if torch.is_autocast_enabled(device):
        low = torch.get_autocast_dtype(device)
        inputs, flat, state = inputs.to(low), [w.to(low) for w in flat], tuple(s.to(low) for s in state)
    # (torch's kernels take a state of one array bare, and of several as a tuple: nn.LSTM's (h, c))
    hx = state if len(state) > 1 else state[0]
    kernel = getattr(torch._VF, CELLS[spec.cell].kernel)
    with torch.autocast(device, enabled=False):
        output, *state_last = kernel(inputs, hx, flat, True, len(layers), 0.0, torch.is_grad_enabled(),
                                                 False, False)
    return output, tuple(state_last)


def fused_stack(weights: dict[str, torch.Tensor], spec: ModelSpec, x: torch.Tensor, state: tuple,
                masks: tuple | None = None) -> tuple[torch.Tensor, None, tuple]:
    """torch_backend.loop_stack's contract on the kernels: x (T, B) int64 ids, state a tuple of (L, B, H)
    tensors, masks None or L (T, B, H) tensors -> the top layer's outputs (T, B, H) after its mask, None
    in place of every layer's h_t, and the state after the last step."""
    V, dtype = spec.vocab_size, weights["Why"].dtype
    inputs = torch.zeros(*x.shape, V, dtype=dtype, device=x.device).scatter_(-1, x.unsqueeze(-1), 1.0)  # (T, B, V)
    if masks is None:
        top, state_last = run_kernel(spec, weights, range(spec.num_layers), inputs, state)
        return top, None, state_last
    finals = []
    for layer, mask in enumerate(masks):
        output, layer_state = run_kernel(spec, weights, range(layer, layer + 1), inputs,
                                         tuple(s[layer:layer + 1] for s in state))
        inputs = output * mask                                                            # (T, B, H)
        finals.append(layer_state)
    return inputs, None, tuple(torch.cat(parts) for parts in zip(*finals))
