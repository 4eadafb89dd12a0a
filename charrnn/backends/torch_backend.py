"""The PyTorch backend: the model of numpy_backend, differentiated by autograd instead of by hand.

Same parameters (charrnn.model's names, shapes and initial values), same float32/float64 switch
(the dtype of the params handed in), same loss. Inside, ids and states are time-major (T, B, ...)
like the NumPy backend's, so both sum the same numbers in nearly the same order.

The recurrence is a Python loop over T steps with everything else hoisted out of it: one gather
for Wxh x_t + bh over the whole chunk, then per step one addmm and one tanh. It was measured against
torch's fused rnn_tanh (what torch.nn.RNN runs; a one-hot (T, B, V) input, b_ih = bh, b_hh = 0
frozen), both exact, in whole training steps on 2 CPU cores, float32, V=65, chars/s:

    (H, B, T)        loop    fused
    (128, 32, 64)    329k    292k
    (256, 64, 64)    218k    211k
    (512, 64, 64)     80k     77k

On a GPU, where each small step is a kernel launch, the backend runs torch's fused multi-step kernel
instead (cuDNN's, through the rnn_tanh that torch.nn.RNN calls) on the same hoisted projection: see
`fused_rnn_tanh`. A test proves it equal to the loop on the CPU; no GPU was at hand to time it.
"""

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.backends.interface import Gradients, StepResult, finite
from charrnn.backends.torch_optim import clip_gradients, export_state, load_state, make_torch_optimizer
from charrnn.distributed import SOLO
from charrnn.errors import UserError


def resolve_device(name: str) -> torch.device:
    """backend.device: "auto" is CUDA when torch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("backend.device=cuda but torch sees no CUDA device; use backend.device=auto or cpu")
    return torch.device(name)


def time_major(ids: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    """(B, T) ids as a (T, B) int64 tensor."""
    return torch.as_tensor(ids.T, dtype=torch.long).to(device)


def loop_rnn_tanh(xw: torch.Tensor, h_prev: torch.Tensor, Whh: torch.Tensor) -> list[torch.Tensor]:
    """h_t = tanh(xw_t + Whh h_{t-1}) step by step: xw (T, B, H) Wxh x_t + bh, h_prev (B, H) -> the T
    hidden states, each (B, H) and each a node of the graph (so autograd can give dL/dh_t)."""
    WhhT = Whh.t()
    h, hs = h_prev, []
    for xw_t in xw.unbind(0):
        # tanh in place is safe: addmm's backward needs its inputs, not its output.
        h = torch.addmm(xw_t, h, WhhT).tanh_()                              # (B, H) h_t
        hs.append(h)
    return hs


def fused_rnn_tanh(xw: torch.Tensor, h_prev: torch.Tensor, Whh: torch.Tensor) -> list[torch.Tensor]:
    """The same recurrence in one call of torch's fused kernel (cuDNN's on a GPU): the kernel computes
    tanh(W_ih u_t + b_ih + W_hh h_{t-1} + b_hh), here with u_t = xw_t, W_ih = I and no biases (bh is in
    xw already), so the input stays the hoisted gather, never a (T, B, V) one-hot. The states come out
    as views of one (T, B, H) output, not graph nodes: fine for training, not for dL/dh_t."""
    H = Whh.shape[0]
    identity = torch.eye(H, dtype=Whh.dtype, device=Whh.device)
    # arguments: input, h_0 (layers, B, H), weights, has_biases, layers, dropout, train, bidirectional, batch_first
    output, _ = torch._VF.rnn_tanh(xw, h_prev.unsqueeze(0), [identity, Whh], False, 1, 0.0,
                                   torch.is_grad_enabled(), False, False)
    return list(output.unbind(0))


# torch's fused multi-step kernel for each cell that it computes exactly (issue 10's lstm and gru:
# torch._VF.lstm and torch._VF.gru, one entry each).
FUSED = {"rnn": fused_rnn_tanh}


def rnn_forward(weights: dict[str, torch.Tensor], x: torch.Tensor, h_prev: torch.Tensor,
                recurrence=loop_rnn_tanh) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """x (T, B) int64 ids, h_prev (B, H) -> logits (T, B, V) for the next characters, and the hidden
    states h_0 ... h_{T-1}, each (B, H): the last is the next chunk's h_prev. recurrence: the loop, or a
    fused kernel from FUSED."""
    # Wxh x_t for a one-hot x_t is column x_t of Wxh: one gather for all T*B columns.
    xw = F.embedding(x, weights["Wxh"].t()) + weights["bh"]                # (T, B, H) Wxh x_t + bh
    hs = recurrence(xw, h_prev, weights["Whh"])
    logits = F.linear(torch.stack(hs), weights["Why"], weights["by"])       # (T, B, V)
    return logits, hs


def chunk_loss(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, h_prev: torch.Tensor,
               reduction: str = "mean", recurrence=loop_rnn_tanh) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Cross-entropy (nats) of the chunk, x and y (T, B) ids: the mean over its T*B predictions or,
    with reduction="sum", their sum (min-char-rnn's). Returns (loss, the hidden states as rnn_forward)."""
    logits, hs = rnn_forward(weights, x, h_prev, recurrence)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction=reduction), hs


def loss_and_grads(params: dict, inputs: np.ndarray, targets: np.ndarray,
                   h_prev: np.ndarray) -> tuple[float, dict, np.ndarray]:
    """numpy_backend.loss_and_grads computed by autograd: the same arguments and results, as NumPy.

    params: {"Wxh" (H, V), "Whh" (H, H), "Why" (V, H), "bh" (H,), "by" (V,)}, all float32 or all
    float64. inputs, targets: (B, T) int arrays. h_prev: (B, H). Returns (mean loss, grads of the
    mean loss keyed like params, h_last (B, H)).
    """
    weights = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    loss, hs = chunk_loss(weights, time_major(inputs), time_major(targets), torch.tensor(h_prev))
    grads = torch.autograd.grad(loss, list(weights.values()))
    return loss.item(), {k: g.numpy() for k, g in zip(weights, grads)}, hs[-1].detach().numpy()


class TorchBackend:
    """The Backend interface (see interface.py) on autograd, torch.optim and torch.nn.utils clipping."""

    def __init__(self, params: dict, device: str, optim_cfg, clip_mode: str, grad_clip: float, loss_reduction: str):
        self.device = resolve_device(device)
        self.weights = {k: torch.tensor(v, device=self.device, requires_grad=True) for k, v in params.items()}
        self.dtype = self.weights["Whh"].dtype
        self.optim_name = optim_cfg.name
        self.optimizer = make_torch_optimizer(optim_cfg, list(self.weights.values()))
        self.steps = 0
        self.clip_mode = clip_mode
        self.grad_clip = grad_clip
        self.loss_reduction = loss_reduction
        self.replicas = SOLO
        # On a GPU, one fused kernel per chunk instead of T small steps (the module's docstring).
        self.recurrence = FUSED["rnn"] if self.device.type == "cuda" else loop_rnn_tanh

    def _state(self, h: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(h).to(self.device, self.dtype)

    def train_step(self, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray, lr: float) -> StepResult:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, hs = self._loss(inputs, targets, h_prev, self.loss_reduction)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss = self.replicas.average_(loss.detach(), [w.grad for w in self.weights.values()], self.loss_reduction)
        # Clipping writes only .grad, so it may come before the check; the optimizer may not.
        before, after = clip_gradients(list(self.weights.values()), self.clip_mode, self.grad_clip)
        # One device-to-host copy for all the figures: each .item() would wait for the device again.
        stats = torch.cat([loss.detach().reshape(1), before, after]).cpu().numpy().astype(np.float64)
        loss_value = float(stats[0] / inputs.size if self.loss_reduction == "sum" else stats[0])
        P = len(self.weights)
        grad_norms = dict(zip(self.weights, stats[1:1 + P].tolist()))
        skipped = not finite(loss_value, grad_norms)
        if not skipped:
            self.optimizer.step()
            self.steps += 1
        return StepResult(loss=loss_value, h_last=hs[-1].detach().cpu().numpy(), grad_norms=grad_norms,
                          clipped_grad_norms=dict(zip(self.weights, stats[1 + P:].tolist())), skipped=skipped)

    def _loss(self, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray, reduction: str = "mean",
              recurrence=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # h_prev comes in as NumPy, with no history: truncated BPTT's cut at the chunk boundary.
        return chunk_loss(self.weights, time_major(inputs, self.device), time_major(targets, self.device),
                          self._state(h_prev), reduction, recurrence or self.recurrence)

    def gradients(self, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray) -> Gradients:
        # The loop: dL/dh_t needs every h_t as a node of the graph.
        loss, hs = self._loss(inputs, targets, h_prev, self.loss_reduction, loop_rnn_tanh)
        weights = list(self.weights.values())
        # The gradient with respect to each h_t sums both of its uses: the output y_t and the step to h_{t+1}.
        grads = torch.autograd.grad(loss, weights + hs)
        dh = torch.stack(grads[len(weights):])                              # (T, B, H)
        return Gradients(params={k: g.cpu().numpy() for k, g in zip(self.weights, grads)},
                         dh_norms=torch.linalg.vector_norm(dh, dim=2).mean(dim=1).cpu().numpy())

    @torch.inference_mode()
    def evaluate(self, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray) -> tuple[float, np.ndarray]:
        loss, hs = self._loss(inputs, targets, h_prev)
        return loss.item(), hs[-1].cpu().numpy()

    @torch.inference_mode()
    def step_logits(self, x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, hs = rnn_forward(self.weights, time_major(x[:, None], self.device), self._state(h))
        return logits[0].cpu().numpy(), hs[-1].cpu().numpy()

    def export_params(self) -> dict[str, np.ndarray]:
        return {k: w.detach().cpu().numpy().copy() for k, w in self.weights.items()}

    def export_optimizer_state(self) -> dict[str, np.ndarray]:
        return export_state(self.optimizer, self.optim_name, self.weights, self.steps)

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self.steps = load_state(self.optimizer, self.optim_name, self.weights, state)
