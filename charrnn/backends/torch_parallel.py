"""The parallel cells (minGRU, minLSTM: Cell.parallel) on the torch backend, differentiated by autograd:
the coefficients of all T steps at once (their file's torch_coefficients), then the linear recurrence
h_t = a_t * h_{t-1} + b_t, solved one of two ways to the same numbers:

- loop (recurrence=loop, and auto on the CPU): one addcmul per step, the readable reference;
- scan (recurrence=fused, and auto on a GPU): a doubling scan, log2(T) passes over the whole (T, B, H)
  block, each step t folding in the step 2^k before it; nothing in it waits on the previous step, so
  it runs in parallel over T. It multiplies and adds the same numbers in another order (no division, no
  logarithm), so it is exact to rounding for any sign of h~ and any carried state, where the paper's
  log-space scan needs h~ > 0 and h_0 > 0 (its activation g).

On the 2-core CPU host the loop is the faster (docs/cells.md, "The parallel RNNs"): torch pays little
per small kernel there and the scan does O(T log T) work in place of O(T). On a GPU auto takes the scan
on the reasoning every cell's kernel is taken there, that the loop's launches per step would dominate;
that has not been measured (no GPU was at hand).
"""

import torch

from charrnn.cells import Cell


def loop(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> list[torch.Tensor]:
    """a, b (T, B, H), h (B, H) the carried state -> the T outputs h_t, each (B, H) and each a node of the
    graph (so autograd can give dL/dh_t)."""
    hs = []
    for a_t, b_t in zip(a.unbind(0), b.unbind(0)):   # unbind: indexing a[t] would cost a (T, B, H) zero
        h = torch.addcmul(b_t, a_t, h)               # gradient per step in backward
        hs.append(h)
    return hs


def scan(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """loop's recurrence as a doubling scan: a, b (T, B, H), h (B, H) -> every h_t, (T, B, H).

    After the pass with offset d, b_t holds what steps t-2d+1..t contribute to h_t (h_0's too, once that
    window reaches step 1) and a_t the product of their a's; composing (a, b) at t with (a, b) at t-d:
    b_t <- b_t + a_t * b_{t-d},  a_t <- a_t * a_{t-d}."""
    T = a.shape[0]
    b = torch.cat([torch.addcmul(b[:1], a[:1], h), b[1:]])    # h_0 folded into step 1
    offset = 1
    while offset < T:
        b = torch.cat([b[:offset], torch.addcmul(b[offset:], a[offset:], b[:-offset])])
        if 2 * offset < T:
            a = torch.cat([a[:offset], a[offset:] * a[:-offset]])
        offset *= 2
    return b


def scan_by_default(device: torch.device) -> bool:
    """What backend.recurrence=auto runs for a parallel cell: the scan on a GPU, the loop on the CPU."""
    return device.type != "cpu"


def parallel_recurrence(cell: Cell, xw: torch.Tensor, state: tuple, fused: bool, options: dict | None = None
                        ) -> tuple[list[torch.Tensor] | torch.Tensor, tuple]:
    """One layer of a parallel cell: xw (T, B, G*H) Wxh x_t + bh, state (h_prev (B, H),), options the
    cell's (ModelSpec.cell_options) -> its outputs (loop: a list of T (B, H) tensors; scan: one (T, B, H)
    tensor) and the state after the last step."""
    a, b = cell.code.torch_coefficients(xw, **(options or {}))
    hs = (scan if fused else loop)(a, b, state[0])
    return hs, (hs[-1],)
