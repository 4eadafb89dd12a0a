"""Optimizers and gradient clipping, in NumPy (the learning-rate schedule is charrnn.training.schedule's);
OPTIMIZERS, at the end, is the one table of what an optimizer is (its config keys and the numbers each may
take, the check across them, its NumPy update, the torch.optim class it matches and how that class keeps
its state): adding one is a class here, a row there, a YAML file in conf/optim/ and its name in
docs/training.md's table.

Each update is written exactly as torch.optim computes it (eps placement and operation order
included), so the torch backend, which uses torch.optim itself, matches to round-off.
Optimizer state is exported as arrays named "<state>/<param>" plus "step", using torch's own state
names ("sum", "momentum_buffer", "exp_avg", "exp_avg_sq") so either backend loads it. Inside, each
state is one flat buffer laid out like the weights' (flat_buffer), so a step is one pass over all of
them; the formulas are elementwise, so an update is what one pass per parameter would compute.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from charrnn.ranges import DECAY, NON_NEGATIVE, POSITIVE, Range

# torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing.
CLIP_NORM_EPS = 1e-6
# An fp16 run's gradient scaler state (the torch backend's), saved beside the optimizer state: 0-d arrays.
SCALER_KEYS = ("scaler/scale", "scaler/growth_tracker")


def flat_buffer(like: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A zeroed 1-D buffer as long as all of `like` together, of its (first array's) dtype, and views of
    it shaped and keyed like `like`, in like's order: two calls on the same `like` line up element for
    element.

    The NumPy backend keeps its weights, their gradients and each optimizer state this way: an update is
    then a handful of whole-buffer operations instead of a handful per parameter, and checking that
    nothing went non-finite is one reduction per buffer. At min-char-rnn's size (H=100, one stream) the
    per-parameter calls were a fifth of a training step."""
    flat = np.zeros(sum(a.size for a in like.values()), next(iter(like.values())).dtype)
    views, start = {}, 0
    for k, a in like.items():
        views[k] = flat[start:start + a.size].reshape(a.shape)
        start += a.size
    return flat, views


def grad_norms(grads: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.sqrt(np.vdot(g, g))) for k, g in grads.items()}


def global_norm(norms: dict[str, float]) -> float:
    """The L2 norm of all the gradients together, from each one's norm (as torch's clip_grad_norm_ takes it)."""
    return float(np.sqrt(sum(n * n for n in norms.values())))


def clip_gradients(g: np.ndarray, mode: str, threshold: float, total_norm: float) -> None:
    """Clip g, every gradient in one flat buffer, in place. "norm": scale it so its L2 norm, total_norm
    (the norm of the per-parameter norms, as torch.nn.utils.clip_grad_norm_ computes it), is at most
    threshold; "value": each element into [-threshold, threshold] (min-char-rnn,
    torch.nn.utils.clip_grad_value_); "none": leave it."""
    if mode == "norm":
        coef = min(threshold / (total_norm + CLIP_NORM_EPS), 1.0)
        if coef < 1.0:
            g *= g.dtype.type(coef)
    elif mode == "value":
        np.clip(g, -threshold, threshold, out=g)
    elif mode != "none":
        raise ValueError(f"unknown clip mode {mode!r}")


@dataclass
class AdagradConfig:
    name: str
    lr: float
    eps: float


@dataclass
class SGDConfig:
    name: str
    lr: float
    momentum: float
    nesterov: bool


@dataclass
class AdamConfig:
    name: str
    lr: float
    beta1: float
    beta2: float
    eps: float


class Optimizer:
    """A state buffer per name in state_names, laid out like the weights (flat[name], with per-parameter
    views in state[name]), and a step count. step(p, g, lr) takes the weights and their gradients as
    flat buffers in that same layout (flat_buffer of the params it was built with). The
    steps write their intermediate results into one scratch buffer of that size: a temporary per
    operation over all the weights at once would add several copies of them to a step's peak memory."""

    state_names: tuple[str, ...] = ()

    def __init__(self, params: dict):
        self.step_count = 0
        self.flat, self.state = {}, {}
        for name in self.state_names:
            self.flat[name], self.state[name] = flat_buffer(params)
        self.scratch, _ = flat_buffer(params)

    def state_dict(self) -> dict[str, np.ndarray]:
        flat = {"step": np.array(self.step_count, dtype=np.int64)}
        for name, per_param in self.state.items():
            for k, arr in per_param.items():
                flat[f"{name}/{k}"] = arr.copy()
        return flat

    def load_state_dict(self, flat: dict[str, np.ndarray]) -> None:
        self.step_count = int(flat["step"])
        for name, per_param in self.state.items():
            for k, arr in per_param.items():
                arr[...] = flat[f"{name}/{k}"]


class Adagrad(Optimizer):
    """sum += g^2;  p -= lr * (g / (sqrt(sum) + eps))   (min-char-rnn puts eps inside the sqrt; torch outside)."""

    state_names = ("sum",)

    def __init__(self, params: dict, cfg: AdagradConfig):
        super().__init__(params)
        self.eps = cfg.eps

    def step(self, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        self.step_count += 1
        s, tmp = self.flat["sum"], self.scratch
        s += np.multiply(g, g, out=tmp)
        np.sqrt(s, out=tmp)
        tmp += self.eps                            # sqrt(sum) + eps
        np.divide(g, tmp, out=tmp)
        tmp *= lr                                  # in torch's order: addcdiv_(g, std, value=-lr)
        p -= tmp


class SGD(Optimizer):
    """buf = momentum * buf + g (buf = g on the first step);  p -= lr * (g + momentum * buf if nesterov else buf)."""

    state_names = ("momentum_buffer",)

    def __init__(self, params: dict, cfg: SGDConfig):
        super().__init__(params)
        self.momentum = cfg.momentum
        self.nesterov = cfg.nesterov

    def step(self, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        self.step_count += 1
        tmp = self.scratch
        if self.momentum != 0:
            buf = self.flat["momentum_buffer"]
            if self.step_count == 1:
                buf[...] = g
            else:
                buf *= self.momentum
                buf += g
            if self.nesterov:
                np.multiply(buf, self.momentum, out=tmp)
                g = np.add(g, tmp, out=tmp)        # g + momentum * buf
            else:
                g = buf
        p -= np.multiply(g, lr, out=tmp)


class Adam(Optimizer):
    """m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2;
    p -= lr / (1 - beta1^t) * (m / (sqrt(v) / sqrt(1 - beta2^t) + eps))."""

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: dict, cfg: AdamConfig):
        super().__init__(params)
        self.beta1, self.beta2, self.eps = cfg.beta1, cfg.beta2, cfg.eps

    def step(self, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        self.step_count += 1
        t = self.step_count
        step_size = lr / (1 - self.beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1 - self.beta2 ** t)
        m, v, tmp = self.flat["exp_avg"], self.flat["exp_avg_sq"], self.scratch
        np.subtract(g, m, out=tmp)
        tmp *= 1 - self.beta1
        m += tmp                                   # lerp(m, g, 1 - beta1)
        v *= self.beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - self.beta2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp /= bias_correction2_sqrt
        tmp += self.eps                            # denom
        np.divide(m, tmp, out=tmp)
        tmp *= step_size                           # in torch's order: addcdiv_(m, denom, value=-step_size)
        p -= tmp


def no_check(cfg) -> str | None:
    return None


def sgd_check(cfg: SGDConfig) -> str | None:
    if cfg.nesterov and cfg.momentum == 0:
        return "optim.nesterov=true needs momentum: set optim.momentum above 0, or optim.nesterov=false"
    return None


@dataclass(frozen=True)
class OptimizerKind:
    config: type                     # the dataclass of its keys (conf/optim/<name>.yaml holds their values)
    ranges: dict[str, Range]         # the numbers each numeric key may take (checked with optim. before it)
    numpy: type                      # its update in NumPy, above
    torch_class: str                 # the torch.optim class the torch backend uses, whose arithmetic numpy copies
    torch_args: Callable[..., dict]  # config -> that class's keyword arguments (lr is set per step)
    # Whether that class counts steps in each parameter's state (Adagrad and Adam do). One that does not
    # (SGD) marks its first step by a missing state instead, so a state saved before any step loads as none.
    torch_counts_steps: bool = True
    check: Callable[..., str | None] = no_check   # config -> the problem across its keys, in one line, or None

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.numpy.state_names


OPTIMIZERS = {
    "adagrad": OptimizerKind(AdagradConfig, {"lr": POSITIVE, "eps": POSITIVE}, Adagrad, "Adagrad",
                             lambda c: dict(eps=c.eps)),
    "sgd": OptimizerKind(SGDConfig, {"lr": POSITIVE, "momentum": NON_NEGATIVE}, SGD, "SGD",
                         lambda c: dict(momentum=c.momentum, nesterov=c.nesterov), torch_counts_steps=False,
                         check=sgd_check),
    "adam": OptimizerKind(AdamConfig, {"lr": POSITIVE, "beta1": DECAY, "beta2": DECAY, "eps": POSITIVE}, Adam,
                          "Adam", lambda c: dict(betas=(c.beta1, c.beta2), eps=c.eps)),
}


def make_optimizer(cfg, params: dict) -> Optimizer:
    """The NumPy optimizer that cfg (one of the OPTIMIZERS' configs) describes, for params' layout."""
    return OPTIMIZERS[cfg.name].numpy(params, cfg)
