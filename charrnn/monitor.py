"""What a run shows: a tqdm bar on the terminal and TensorBoard curves in the run directory.

Per-step figures are accumulated and written every log_interval steps as interval averages,
so logging costs nothing measurable even when a step takes a fraction of a millisecond.
"""

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from charrnn.backends.interface import Gradients, StepResult

LOG2E = 1.0 / math.log(2.0)
SMOOTHING = 0.99  # min-char-rnn's smooth_loss keeps 0.999; per step of 32+ streams 0.99 reads better
HISTOGRAM_BINS = 64


def _wait_to_sort_last(run_dir: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second its writer
    opened: a run resumed within a second of the start of the one before would be read first, its
    purge_step too early. Wait out that second (never more, should a file carry a future time)."""
    opened = [int(stamp) for p in run_dir.glob("events.out.tfevents.*")
              if (stamp := p.name.split(".")[3]).isdigit()]
    delay = max(opened, default=0) + 1 - time.time()
    if 0 < delay <= 1:
        time.sleep(delay)


@dataclass
class Interval:
    """Sums over the steps since the last TensorBoard point (n: the steps that made an update)."""

    n: int = 0
    loss: float = 0.0
    chars: int = 0
    seconds: float = 0.0
    clipped: int = 0
    global_norm: float = 0.0
    global_clipped: float = 0.0
    norms: dict[str, float] = field(default_factory=dict)
    clipped_norms: dict[str, float] = field(default_factory=dict)


class Monitor:
    def __init__(self, run_dir: Path, max_iters: int, start_step: int, log_interval: int, state: dict | None = None):
        """state: a resumed run's state_dict(), whose run directory already has curves up to start_step."""
        # Imported here: it pulls in torch, which the NumPy backend otherwise never needs.
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run hides whatever the earlier run logged after start_step (it went on past its last
        # checkpoint, or was killed), so every curve continues with no step twice.
        if state:
            _wait_to_sort_last(run_dir)
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=start_step + 1 if state else None)
        self.bar = tqdm(total=max_iters, initial=start_step, unit="step", dynamic_ncols=True)
        self.log_interval = log_interval
        self.smooth_loss: float | None = state["smooth_loss"] if state else None
        self.interval = Interval(**state["interval"]) if state else Interval()
        self.skipped_steps: int = state.get("skipped_steps", 0) if state else 0
        self.val_bpc: float | None = None

    def state_dict(self) -> dict:
        """What a resumed run needs for its curves to go on as if unbroken, as JSON."""
        return {"smooth_loss": self.smooth_loss, "interval": asdict(self.interval), "skipped_steps": self.skipped_steps}

    def step(self, step: int, result: StepResult, lr: float, chars: int, seconds: float) -> None:
        """Record training step `step` (0-based); `seconds` is its wall time."""
        iv = self.interval
        iv.chars += chars
        iv.seconds += seconds
        self.bar.update(1)
        # A skipped step's figures are not finite: counted, but kept out of every average.
        if result.skipped:
            self.skipped_steps += 1
        else:
            self._add(result)
        if (step + 1) % self.log_interval == 0:
            self._flush_interval(step + 1, lr)

    def _add(self, result: StepResult) -> None:
        loss, iv = result.loss, self.interval
        self.smooth_loss = loss if self.smooth_loss is None else SMOOTHING * self.smooth_loss + (1 - SMOOTHING) * loss
        iv.n += 1
        iv.loss += loss
        norm, clipped_norm = result.grad_norm, result.clipped_grad_norm
        iv.global_norm += norm
        iv.global_clipped += clipped_norm
        iv.clipped += int(clipped_norm < norm)
        for k, v in result.grad_norms.items():
            iv.norms[k] = iv.norms.get(k, 0.0) + v
        for k, v in result.clipped_grad_norms.items():
            iv.clipped_norms[k] = iv.clipped_norms.get(k, 0.0) + v

    def _flush_interval(self, step: int, lr: float) -> None:
        w, iv, n = self.writer, self.interval, self.interval.n
        chars_per_sec = iv.chars / iv.seconds if iv.seconds > 0 else float("nan")
        if n:
            w.add_scalar("loss/train", iv.loss / n, step)
            w.add_scalar("loss/train_smooth", self.smooth_loss, step)
            w.add_scalar("bpc/train", iv.loss / n * LOG2E, step)
            w.add_scalar("grad_norm/global", iv.global_norm / n, step)
            w.add_scalar("grad_norm/global_clipped", iv.global_clipped / n, step)
            w.add_scalar("grad_norm/clipped_fraction", iv.clipped / n, step)
            for k, v in iv.norms.items():
                w.add_scalar(f"grad_norm/{k}", v / n, step)
                w.add_scalar(f"grad_norm_clipped/{k}", iv.clipped_norms[k] / n, step)
        w.add_scalar("train/skipped_steps", self.skipped_steps, step)
        w.add_scalar("lr", lr, step)
        w.add_scalar("throughput/chars_per_sec", chars_per_sec, step)
        postfix = {"chars/s": f"{chars_per_sec:,.0f}"}
        if self.smooth_loss is not None:
            postfix["loss"] = f"{self.smooth_loss:.3f}"
        if self.val_bpc is not None:
            postfix["val_bpc"] = f"{self.val_bpc:.3f}"
        if self.skipped_steps:
            postfix["skipped"] = self.skipped_steps
        self.bar.set_postfix(postfix, refresh=False)
        self.interval = Interval()

    def evaluation(self, step: int, val_loss: float, sample: str, params: dict[str, np.ndarray],
                   grads: Gradients) -> None:
        """Validation figures and a sample, and what the weights and gradients look like: a histogram of
        each, Whh's largest singular value, and |dL/dh_t| by lag back from the end of a training chunk."""
        w = self.writer
        self.val_bpc = val_loss * LOG2E
        perplexity = math.exp(val_loss) if val_loss < 700 else math.inf
        w.add_scalar("loss/val", val_loss, step)
        w.add_scalar("bpc/val", self.val_bpc, step)
        w.add_scalar("perplexity/val", perplexity, step)
        # TensorBoard's text plugin renders markdown; a code block keeps line breaks and spaces.
        w.add_text("sample", "```\n" + sample + "\n```", step)
        spectral_norm = float(np.linalg.norm(params["Whh"].astype(np.float64), 2))
        w.add_scalar("Whh/spectral_norm", spectral_norm, step)
        for k in params:
            for kind, values in (("weights", params[k]), ("grads", grads.params[k])):
                # Buckets over the values' own range: the default ones end at 1e20, where a blow-up is only
                # starting. None holds an infinity or a NaN (a gradient about to be skipped may).
                if np.isfinite(values).all():
                    w.add_histogram(f"{kind}/{k}", values, step, bins=HISTOGRAM_BINS)
        # The bottom layer's (row 0 of the (L, T) dh_norms): the whole stack lies on its path to the loss.
        by_lag = np.atleast_2d(grads.dh_norms)[0][::-1]
        width = max(2, len(str(len(by_lag) - 1)))
        for lag, norm in enumerate(by_lag):
            w.add_scalar(f"grad_flow/lag_{lag:0{width}d}", norm, step)
        w.flush()
        self.write(f"step {step}: val {val_loss:.4f} nats/char, {self.val_bpc:.4f} bits/char, "
                   f"perplexity {perplexity:.2f}; Whh spectral norm {spectral_norm:.3f}\n"
                   f"|dL/dh| from lag 0 to lag {len(by_lag) - 1}: {sparkline(by_lag)}\n{sample}\n")

    def hparams(self, config: dict) -> None:
        """The run's config beside its last validation figures, one row of TensorBoard's HPARAMS table."""
        from torch.utils.tensorboard.summary import hparams

        flat = {k: str(v) if isinstance(v, bool) else v for k, v in _flatten(config).items()}
        # The table reads each metric's last value from the run's own curve of that name.
        for summary in hparams(flat, {"loss/val": None, "bpc/val": None}):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def write(self, text: str) -> None:
        """Print above the progress bar without breaking it."""
        self.bar.write(text)

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        self.writer.close()


BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: np.ndarray, width: int = 64) -> str:
    """Positive values on a log scale as a line of block characters, between the first and last value;
    a long series is sampled down to `width` columns."""
    values = np.asarray(values, np.float64)[np.linspace(0, len(values) - 1, min(len(values), width)).astype(int)]
    if not np.isfinite(values).all() or (values <= 0).any():
        return f"{values[0]:.2e} (not finite or not positive) {values[-1]:.2e}"
    logs = np.log(values)
    span = (logs.max() - logs.min()) or 1.0
    levels = np.round((logs - logs.min()) / span * (len(BARS) - 1)).astype(int)
    return f"{values[0]:.2e} {''.join(BARS[i] for i in levels)} {values[-1]:.2e}"


def _flatten(tree: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}"""
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat
