"""The PyTorch backend: the model of numpy_backend, differentiated by autograd instead of by hand.

Same parameters (charrnn.model's names, shapes and initial values), same float32/float64 switch
(the dtype of the params handed in), same cells, dropout masks and loss. Inside, ids and states are
time-major (T, B, ...) like the NumPy backend's, so both sum the same numbers in nearly the same order.

The recurrence runs one of two ways (backend.recurrence), to the same numbers:
- the loop below, the readable reference (recurrence=loop): each layer's steps in Python, with all it
  can hoisted out of them, one gather (layer 0) or one product (layers above) for Wxh x_t + bh over the
  whole chunk, then per step one addmm for the fused gates and the cell's elementwise math;
- torch's own fused multi-step kernels (recurrence=fused), the ones torch.nn.RNN / LSTM / GRU call:
  cuDNN's on a GPU, where the loop's many small kernel launches would dominate (torch_fused.py).
recurrence=auto takes the kernel on every device for every cell that has one (a cell without one runs
the loop everywhere): on the CPU it was never more than about 5% behind the loop and up to 2.4x ahead
of it, by host (docs/cells.md), so no host needs the loop for speed. For the parallel cells (mingru,
minlstm) "fused" is torch_parallel's scan of their linear recurrence, which auto takes on a GPU only.
Each cell's step for the loop is its file's torch_step (charrnn.cells). backend.precision adds autocast
and, for fp16, a gradient scaler (torch_precision.py); backend.device says where (charrnn.devices).
"""

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.devices import check_precision, resolve_device
from charrnn.backends.interface import Gradients, StepResult, StepSettings
from charrnn.backends.torch_fused import fused_stack, recurrent_bias
from charrnn.backends.torch_parallel import parallel_recurrence, scan_by_default
from charrnn.backends.torch_optim import clip_gradients, export_state, load_state, make_torch_optimizer
from charrnn.backends.torch_precision import Precision
from charrnn.cells import CELLS, Cell
from charrnn.distributed import SOLO, Ranks
from charrnn.errors import UserError
from charrnn.model import NORM_EPS, ModelSpec, layer_weights, model_spec


def time_major(ids: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    """(B, T) ids as a (T, B) int64 tensor."""
    return torch.as_tensor(ids.T, dtype=torch.long).to(device)


def loop_recurrence(cell: Cell, W: dict, xw: torch.Tensor, state: tuple) -> tuple[list[torch.Tensor], tuple]:
    """The cell's step (its file's torch_step) over the chunk: xw (T, B, G*H) Wxh x_t + bh, state the
    layer's (B, H) arrays -> the T outputs h_t, each (B, H) and each a node of the graph (so autograd can
    give dL/dh_t), and the state after the last step."""
    step, hs = cell.code.torch_step, []
    for xw_t in xw.unbind(0):
        state = step(W, xw_t, state)
        hs.append(state[0])
    return hs, state


def prepared_layer(weights: dict[str, torch.Tensor], spec: ModelSpec, layer: int) -> dict[str, torch.Tensor]:
    """One layer's weights by their names in the cell's equations, with what every step reuses made once:
    Whh^T, and the recurrent bias bhh (torch.nn's b_hh) of a cell whose rule keeps one."""
    W = layer_weights(weights, spec, layer)
    if "Whh" in W:
        W["WhhT"] = W["Whh"].t()
    if CELLS[spec.cell].recurrent_bias:
        W["bhh"] = recurrent_bias(CELLS[spec.cell], W, spec.hidden_size)
    return W


def loop_stack(weights: dict[str, torch.Tensor], spec: ModelSpec, x: torch.Tensor, state: tuple,
               masks: tuple | None = None, scan: bool = False) -> tuple[torch.Tensor, list[list[torch.Tensor]], tuple]:
    """x (T, B) int64 ids, state a tuple of (L, B, H) tensors, masks None or L (T, B, H) tensors -> the top
    of the stack, what the head reads (T, B, H), every layer's h_t (L lists of T (B, H) tensors, each a node
    of the graph), and the state after the last step (a tuple of (L, B, H) tensors). A parallel cell runs
    torch_parallel's loop, or with scan its scan, whose outputs come as one (T, B, H) tensor per layer; its
    options (charrnn.model) as numpy_backend.layers_forward: layer l >= 1 reads norm(s^l), the head
    norm(s^L), and with residual s^{l+1} = s^l + h^l * m^l for l >= 1."""
    cell = CELLS[spec.cell]
    inputs, outputs, finals = None, [], []
    for layer in range(spec.num_layers):
        W = prepared_layer(weights, spec, layer)
        if layer == 0:
            # Wxh x_t for a one-hot x_t is column x_t of Wxh: one gather for all T*B columns.
            xw = F.embedding(x, W["Wxh"].t()) + W["bh"]         # (T, B, G*H)
        else:
            xw = F.linear(normed(inputs, spec.norm), W["Wxh"], W["bh"])   # (T, B, G*H)
        layer_state = tuple(s[layer] for s in state)
        if cell.parallel:
            hs, layer_state = parallel_recurrence(cell, xw, layer_state, scan, spec.cell_options)
        else:
            hs, layer_state = loop_recurrence(cell, W, xw, layer_state)
        outputs.append(hs)
        finals.append(layer_state)
        out = hs if torch.is_tensor(hs) else torch.stack(hs)     # (T, B, H)
        if masks is not None:
            out = out * masks[layer]
        inputs = inputs + out if layer and spec.residual else out
    return normed(inputs, spec.norm), outputs, tuple(torch.stack(arrays) for arrays in zip(*finals))


def normed(s: torch.Tensor, norm: str) -> torch.Tensor:
    """s (T, B, H) normalised over H as model.norm says (none, rms, layer), with no gain and no bias."""
    if norm == "none":
        return s
    norm_of = F.rms_norm if norm == "rms" else F.layer_norm
    return norm_of(s, s.shape[-1:], eps=NORM_EPS)


def stack_logits(weights: dict[str, torch.Tensor], spec: ModelSpec, x: torch.Tensor, state: tuple,
                 masks: tuple | None = None, fused: bool = False) -> tuple[torch.Tensor, list | None, tuple]:
    """logits (T, B, V) for the next characters, and loop_stack's other two results (with fused, the
    kernels' of torch_fused.fused_stack: None in place of every layer's h_t; a parallel cell's scan)."""
    if CELLS[spec.cell].parallel:
        top, outputs, state_last = loop_stack(weights, spec, x, state, masks, scan=fused)
    else:
        top, outputs, state_last = (fused_stack if fused else loop_stack)(weights, spec, x, state, masks)
    return F.linear(top, weights["Why"], weights["by"]), outputs, state_last    # (T, B, V)


def chunk_loss(weights: dict[str, torch.Tensor], spec: ModelSpec, x: torch.Tensor, y: torch.Tensor, state: tuple,
               masks: tuple | None = None, reduction: str = "mean",
               fused: bool = False) -> tuple[torch.Tensor, list, tuple]:
    """Cross-entropy (nats) of the chunk, x and y (T, B) ids: the mean over its T*B predictions or,
    with reduction="sum", their sum (min-char-rnn's). Returns (loss, outputs, state_last) as stack_logits."""
    logits, outputs, state_last = stack_logits(weights, spec, x, state, masks, fused)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction=reduction)
    return loss, outputs, state_last


def loss_and_grads(params: dict, inputs: np.ndarray, targets: np.ndarray, state: tuple, spec: ModelSpec,
                   masks: tuple | None = None, fused: bool = False) -> tuple[float, dict, tuple]:
    """numpy_backend.loss_and_grads computed by autograd (on the loop, or with fused on torch's kernels):
    the same arguments and results, as NumPy."""
    weights = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    loss, _, state_last = chunk_loss(weights, spec, time_major(inputs), time_major(targets),
                                     tuple(torch.tensor(s) for s in state), as_tensors(masks), fused=fused)
    grads = torch.autograd.grad(loss, list(weights.values()))
    return (loss.item(), {k: g.numpy() for k, g in zip(weights, grads)},
            tuple(s.detach().numpy() for s in state_last))


def rnn_loss_and_grads(params: dict, inputs: np.ndarray, targets: np.ndarray, h_prev: np.ndarray
                       ) -> tuple[float, dict, np.ndarray]:
    """numpy_backend.rnn_loss_and_grads computed by autograd."""
    spec = model_spec("rnn", *params["Why"].shape)
    loss, grads, (h_last,) = loss_and_grads(params, inputs, targets, (h_prev[None],), spec)
    return loss, grads, h_last[0]


def as_tensors(arrays: tuple | None, device: torch.device | None = None, dtype: torch.dtype | None = None):
    """NumPy arrays (a state, or masks) as tensors, None as None."""
    return None if arrays is None else tuple(torch.as_tensor(a).to(device, dtype) for a in arrays)


class TorchBackend:
    """The Backend interface (see interface.py) on autograd, torch.optim and torch.nn.utils clipping."""

    def __init__(self, spec: ModelSpec, params: dict, settings: StepSettings, device: str = "auto",
                 replicas: Ranks = SOLO):
        self.spec = spec
        self.settings = settings
        self.replicas = replicas
        self.device = resolve_device(device)
        check_precision(settings.precision, self.device.type, str(params["Why"].dtype))
        self.weights = {k: torch.tensor(v, device=self.device, requires_grad=True) for k, v in params.items()}
        self.dtype = self.weights["Why"].dtype
        self.precision = Precision(settings.precision, self.device)
        self.optim_name = settings.optim.name
        self.optimizer = make_torch_optimizer(settings.optim, list(self.weights.values()))
        self.steps = 0
        cell = CELLS[spec.cell]
        if settings.recurrence == "fused" and cell.kernel is None and not cell.parallel:
            raise UserError(f"model.cell={spec.cell} has no fused kernel; use backend.recurrence=loop (or auto)")
        auto = scan_by_default(self.device) if cell.parallel else cell.kernel is not None
        self.fused = settings.recurrence == "fused" or (settings.recurrence == "auto" and auto)

    def train_step(self, inputs: np.ndarray, targets: np.ndarray, state: tuple, lr: float,
                   masks: tuple | None = None) -> StepResult:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, _, state_last = self._loss(inputs, targets, state, masks, self.settings.loss_reduction)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss)
        grads = [w.grad for w in self.weights.values()]
        loss = self.replicas.average_(loss.detach(), grads, self.settings.loss_reduction)
        # fp16's scaled gradients back to their size, after the average: every rank sees the same overflow.
        self.precision.unscale_(self.optimizer)
        # Clipping writes only .grad, so it may come before the check; the optimizer may not.
        before, after = clip_gradients(list(self.weights.values()), self.settings.clip_mode, self.settings.grad_clip)
        # One device-to-host copy for all the figures: each .item() would wait for the device again.
        stats = torch.cat([loss.detach().reshape(1), before, after]).cpu().numpy().astype(np.float64)
        loss_value = float(stats[0] / inputs.size if self.settings.loss_reduction == "sum" else stats[0])
        P = len(self.weights)
        grad_norms = dict(zip(self.weights, stats[1:1 + P].tolist()))
        cause = self.settings.guard.refusal(loss_value, grad_norms)
        if cause == "gradient" and self.precision.scaling:
            cause = "overflow"   # fp16's range, not the model: the scaler lowers its scale and training goes on
        cause = cause or self._update()
        self.precision.update()
        return StepResult(loss=loss_value, state_last=self._numpy(state_last), grad_norms=grad_norms,
                          clipped_grad_norms=dict(zip(self.weights, stats[1 + P:].tolist())), skipped=bool(cause),
                          cause=cause)

    @torch.no_grad()
    def _update(self) -> str | None:
        """The optimizer step, checked: "update" if it left a non-finite weight or state (then undone
        when the guard asks for it), else None."""
        undo = None
        if self.settings.guard.undo:
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

    def _loss(self, inputs: np.ndarray, targets: np.ndarray, state: tuple, masks: tuple | None = None,
              reduction: str = "mean", fused: bool | None = None) -> tuple[torch.Tensor, list, tuple]:
        # The state comes in as NumPy, with no history: truncated BPTT's cut at the chunk boundary.
        with self.precision.autocast():
            return chunk_loss(self.weights, self.spec, time_major(inputs, self.device),
                              time_major(targets, self.device), as_tensors(state, self.device, self.dtype),
                              as_tensors(masks, self.device, self.dtype), reduction,
                              self.fused if fused is None else fused)

    def _numpy(self, state: tuple) -> tuple:
        # (under autocast the state comes out in bf16 or fp16, which NumPy lacks)
        return tuple(s.detach().to(self.dtype).cpu().numpy() for s in state)

    def gradients(self, inputs: np.ndarray, targets: np.ndarray, state: tuple, masks: tuple | None = None) -> Gradients:
        # The loop: dL/dh_t needs every h_t as a node of the graph.
        loss, outputs, _ = self._loss(inputs, targets, state, masks, self.settings.loss_reduction, fused=False)
        weights = list(self.weights.values())
        hs = [h for layer in outputs for h in layer]
        # The gradient with respect to each h_t sums all of its uses: the layer above (or y_t) and h_{t+1}.
        # (scaled as the training step's, so that fp16 keeps the small ones)
        scale = self.precision.loss_scale()
        grads = [g / scale for g in torch.autograd.grad(loss * scale, weights + hs)]
        T = inputs.shape[1]
        dh = torch.stack(grads[len(weights):]).to(self.dtype)
        dh = dh.reshape(self.spec.num_layers, T, *hs[0].shape)             # (L, T, B, H)
        return Gradients(params={k: g.cpu().numpy() for k, g in zip(self.weights, grads)},
                         dh_norms=torch.linalg.vector_norm(dh, dim=3).mean(dim=2).cpu().numpy())

    @torch.inference_mode()
    def evaluate(self, inputs: np.ndarray, targets: np.ndarray, state: tuple) -> tuple[float, tuple]:
        loss, _, state_last = self._loss(inputs, targets, state)
        return loss.item(), self._numpy(state_last)

    @torch.inference_mode()
    def step_logits(self, x: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
        # In the weights' own precision: sampling is cheap, and this way it is the same on any device. One
        # step on the CPU runs the loop: oneDNN's LSTM took 4x the loop's time per character there.
        logits, _, state_last = stack_logits(self.weights, self.spec, time_major(x[:, None], self.device),
                                              as_tensors(state, self.device, self.dtype),
                                              fused=self.fused and self.device.type != "cpu")
        return logits[0].cpu().numpy(), self._numpy(state_last)

    def export_params(self) -> dict[str, np.ndarray]:
        return {k: w.detach().cpu().numpy().copy() for k, w in self.weights.items()}

    def export_optimizer_state(self) -> dict[str, np.ndarray]:
        return {**export_state(self.optimizer, self.optim_name, self.weights, self.steps),
                **self.precision.state_dict()}

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self.steps = load_state(self.optimizer, self.optim_name, self.weights, state)
        self.precision.load_state_dict(state)
