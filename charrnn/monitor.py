"""What a run shows: a tqdm bar on the terminal and TensorBoard curves in the run directory.

Per-step figures are accumulated and written every log_interval steps as interval averages,
so logging costs nothing measurable even when a step takes a fraction of a millisecond.
"""

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from charrnn.backends.interface import StepResult

LOG2E = 1.0 / math.log(2.0)
SMOOTHING = 0.99  # min-char-rnn's smooth_loss keeps 0.999; per step of 32+ streams 0.99 reads better


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
    """Sums over the steps since the last TensorBoard point."""

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
        self.val_bpc: float | None = None

    def state_dict(self) -> dict:
        """What a resumed run needs for its curves to go on as if unbroken, as JSON."""
        return {"smooth_loss": self.smooth_loss, "interval": asdict(self.interval)}

    def step(self, step: int, result: StepResult, lr: float, chars: int, seconds: float) -> None:
        """Record training step `step` (0-based); `seconds` is its wall time."""
        loss = result.loss
        self.smooth_loss = loss if self.smooth_loss is None else SMOOTHING * self.smooth_loss + (1 - SMOOTHING) * loss
        iv = self.interval
        iv.n += 1
        iv.loss += loss
        iv.chars += chars
        iv.seconds += seconds
        norm, clipped_norm = result.grad_norm, result.clipped_grad_norm
        iv.global_norm += norm
        iv.global_clipped += clipped_norm
        iv.clipped += int(clipped_norm < norm)
        for k, v in result.grad_norms.items():
            iv.norms[k] = iv.norms.get(k, 0.0) + v
        for k, v in result.clipped_grad_norms.items():
            iv.clipped_norms[k] = iv.clipped_norms.get(k, 0.0) + v
        self.bar.update(1)
        if (step + 1) % self.log_interval == 0:
            self._flush_interval(step + 1, lr)

    def _flush_interval(self, step: int, lr: float) -> None:
        w, iv, n = self.writer, self.interval, self.interval.n
        chars_per_sec = iv.chars / iv.seconds if iv.seconds > 0 else float("nan")
        w.add_scalar("loss/train", iv.loss / n, step)
        w.add_scalar("loss/train_smooth", self.smooth_loss, step)
        w.add_scalar("bpc/train", iv.loss / n * LOG2E, step)
        w.add_scalar("grad_norm/global", iv.global_norm / n, step)
        w.add_scalar("grad_norm/global_clipped", iv.global_clipped / n, step)
        w.add_scalar("grad_norm/clipped_fraction", iv.clipped / n, step)
        for k, v in iv.norms.items():
            w.add_scalar(f"grad_norm/{k}", v / n, step)
            w.add_scalar(f"grad_norm_clipped/{k}", iv.clipped_norms[k] / n, step)
        w.add_scalar("lr", lr, step)
        w.add_scalar("throughput/chars_per_sec", chars_per_sec, step)
        postfix = {"loss": f"{self.smooth_loss:.3f}", "chars/s": f"{chars_per_sec:,.0f}"}
        if self.val_bpc is not None:
            postfix["val_bpc"] = f"{self.val_bpc:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.interval = Interval()

    def evaluation(self, step: int, val_loss: float, sample: str) -> None:
        self.val_bpc = val_loss * LOG2E
        self.writer.add_scalar("loss/val", val_loss, step)
        self.writer.add_scalar("bpc/val", self.val_bpc, step)
        self.writer.add_scalar("perplexity/val", math.exp(val_loss), step)
        # TensorBoard's text plugin renders markdown; a code block keeps line breaks and spaces.
        self.writer.add_text("sample", "```\n" + sample + "\n```", step)
        self.writer.flush()
        self.write(f"step {step}: val {val_loss:.4f} nats/char, {self.val_bpc:.4f} bits/char, "
                   f"perplexity {math.exp(val_loss):.2f}\n{sample}\n")

    def write(self, text: str) -> None:
        """Print above the progress bar without breaking it."""
        self.bar.write(text)

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        self.writer.close()
