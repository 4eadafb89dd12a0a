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

On a GPU cuDNN's fused kernel may well win; that has not been measured.
"""

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.backends.guard import StepGuard
from charrnn.backends.interface import Gradients, StepResult
from charrnn.backends.torch_optim import clip_gradients, export_state, load_state, make_torch_optimizer
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


def rnn_forward(weights: dict[str, torch.Tensor], x: torch.Tensor,
                h_prev: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """x (T, B) int64 ids, h_prev (B, H) -> logits (T, B, V) for the next characters, and the hidden
    states h_0 ... h_{T-1}, each (B, H): the last is the next chunk's h_prev."""
    # Wxh x_t for a one-hot x_t is column x_t of Wxh: one gather for all T*B columns.
    xw = (F.embedding(x, weights["Wxh"].t()) + weights["bh"]).unbind(0)   # T x (B, H) Wxh x_t + bh
    WhhT = weights["Whh"].t()
    h, hs = h_prev, []
    for xw_t in xw:
        # tanh in place is safe: addmm's backward needs its inputs, not its output.
        h = torch.addmm(xw_t, h, WhhT).tanh_()                              # (B, H) h_t
        hs.append(h)
    logits = F.linear(torch.stack(hs), weights["Why"], weights["by"])       # (T, B, V)
    return logits, hs


def chunk_loss(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, h_prev: torch.Tensor,
               reduction: str = "mean") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Cross-entropy (nats) of the chunk, x and y (T, B) ids: the mean over its T*B predictions or,
    with reduction="sum", their sum (min-char-rnn's). Returns (loss, the hidden states as rnn_forward)."""
    logits, hs = rnn_forward(weights, x, h_prev)
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

    def __init__(self, params: dict, device: str, optim_cfg, clip_mode: str, grad_clip: float, loss_reduction: str,
                 guard: StepGuard = StepGuard()):
        self.device = resolve_device(device)
        self.weights = {k: torch.tensor(v, device=self.device, requires_grad=True) for k, v in params.items()}
        self.dtype = self.weights["Whh"].dtype
        self.optim_name = optim_cfg.name
        self.optimizer = make_torch_optimizer(optim_cfg, list(self.weights.values()))
        self.steps = 0
        self.clip_mode = clip_mode
        self.grad_clip = grad_clip
        self.loss_reduction = loss_reduction
        self.guard = guard

    def _state(self, h: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(h).to(self.device, self.dtype)

    def train_step(self, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray, lr: float) -> StepResult:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, hs = self._loss(inputs, targets, h_prev, self.loss_reduction)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Clipping writes only .grad, so it may come before the check; the optimizer may not.
        before, after = clip_gradients(list(self.weights.values()), self.clip_mode, self.grad_clip)
        # One device-to-host copy for all the figures: each .item() would wait for the device again.
        stats = torch.cat([loss.detach().reshape(1), before, after]).cpu().numpy().astype(np.float64)
        loss_value = float(stats[0] / inputs.size if self.loss_reduction == "sum" else stats[0])
        P = len(self.weights)
        grad_norms = dict(zip(self.weights, stats[1:1 + P].tolist()))
        cause = self.guard.refusal(loss_value, grad_norms) or self._update()
        return StepResult(loss=loss_value, h_last=hs[-1].detach().cpu().numpy(), grad_norms=grad_norms,
                          clipped_grad_norms=dict(zip(self.weights, stats[1 + P:].tolist())), skipped=bool(cause),
                          cause=cause)

    @torch.no_grad()
    def _update(self) -> str | None:
        """The optimizer step, checked: "update" if it left a non-finite weight or state (then undone
        when the guard asks for it), else None."""
        undo = None
        if self.guard.undo:
            undo = ([w.clone() for w in self.weights.values()],
                    {w: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
                     for w, s in self.optimizer.state.items()})
        try:
            self.optimizer.step()
        except RuntimeError as e:
            # torch refuses a step size beyond the weights' dtype (lr 1e39 in float32) partway through the
            # parameters, some already updated: the same case as an update that came out non-finite
            if "overflow" not in str(e):
                raise
        else:
            if self._finite():
                self.steps += 1
                return None
        if undo:
            for w, saved in zip(self.weights.values(), undo[0]):
                w.copy_(saved)
            self.optimizer.state.clear()
            self.optimizer.state.update(undo[1])
        return "update"

    def _finite(self) -> bool:
        """Whether the weights and optimizer state are all finite: one reduction per tensor and one
        device-to-host copy; a sum carries any NaN or infinity through, so only one that overflowed
        needs the full test."""
        # (Adam's and Adagrad's 0-d step counters aside: they are counts, in another dtype.)
        tensors = [*self.weights.values(), *(v for s in self.optimizer.state.values() for v in s.values()
                                            if torch.is_tensor(v) and v.dim() > 0)]
        return (bool(torch.isfinite(torch.stack([t.sum() for t in tensors])).all())
                or all(bool(torch.isfinite(t).all()) for t in tensors))

    def _loss(self, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray,
              reduction: str = "mean") -> tuple[torch.Tensor, list[torch.Tensor]]:
        # h_prev comes in as NumPy, with no history: truncated BPTT's cut at the chunk boundary.
        return chunk_loss(self.weights, time_major(inputs, self.device), time_major(targets, self.device),
                          self._state(h_prev), reduction)

    def gradients(self, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray) -> Gradients:
        loss, hs = self._loss(inputs, targets, h_prev, self.loss_reduction)
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
