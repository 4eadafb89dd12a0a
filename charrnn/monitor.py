"""What a run shows: a tqdm bar on the terminal and TensorBoard curves in the run directory.

Per-step figures are accumulated and written every log_interval steps as interval averages,
so logging costs nothing measurable even when a step takes a fraction of a millisecond.
"""

import math
from pathlib import Path

from tqdm import tqdm

from charrnn.backends.interface import StepResult

LOG2E = 1.0 / math.log(2.0)
SMOOTHING = 0.99  # min-char-rnn's smooth_loss keeps 0.999; per step of 32+ streams 0.99 reads better


class Monitor:
    def __init__(self, run_dir: Path, max_iters: int, start_step: int, log_interval: int,
                 smooth_loss: float | None = None):
        # Imported here: it pulls in torch, which the NumPy backend otherwise never needs.
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.bar = tqdm(total=max_iters, initial=start_step, unit="step", dynamic_ncols=True)
        self.log_interval = log_interval
        self.smooth_loss = smooth_loss
        self.val_bpc: float | None = None
        self._reset_interval()

    def _reset_interval(self) -> None:
        self.n = 0
        self.loss_sum = 0.0
        self.chars = 0
        self.seconds = 0.0
        self.clipped = 0
        self.norm_sums: dict[str, float] = {}
        self.clipped_norm_sums: dict[str, float] = {}
        self.global_norm_sum = 0.0
        self.global_clipped_sum = 0.0

    def step(self, step: int, result: StepResult, lr: float, chars: int, seconds: float) -> None:
        """Record training step `step` (0-based); `seconds` is its wall time."""
        loss = result.loss
        self.smooth_loss = loss if self.smooth_loss is None else SMOOTHING * self.smooth_loss + (1 - SMOOTHING) * loss
        self.n += 1
        self.loss_sum += loss
        self.chars += chars
        self.seconds += seconds
        norm, clipped_norm = result.grad_norm, result.clipped_grad_norm
        self.global_norm_sum += norm
        self.global_clipped_sum += clipped_norm
        self.clipped += clipped_norm < norm
        for k, v in result.grad_norms.items():
            self.norm_sums[k] = self.norm_sums.get(k, 0.0) + v
        for k, v in result.clipped_grad_norms.items():
            self.clipped_norm_sums[k] = self.clipped_norm_sums.get(k, 0.0) + v
        self.bar.update(1)
        if (step + 1) % self.log_interval == 0:
            self._flush_interval(step + 1, lr)

    def _flush_interval(self, step: int, lr: float) -> None:
        w, n = self.writer, self.n
        chars_per_sec = self.chars / self.seconds if self.seconds > 0 else float("nan")
        w.add_scalar("loss/train", self.loss_sum / n, step)
        w.add_scalar("loss/train_smooth", self.smooth_loss, step)
        w.add_scalar("bpc/train", self.loss_sum / n * LOG2E, step)
        w.add_scalar("grad_norm/global", self.global_norm_sum / n, step)
        w.add_scalar("grad_norm/global_clipped", self.global_clipped_sum / n, step)
        w.add_scalar("grad_norm/clipped_fraction", self.clipped / n, step)
        for k, v in self.norm_sums.items():
            w.add_scalar(f"grad_norm/{k}", v / n, step)
            w.add_scalar(f"grad_norm_clipped/{k}", self.clipped_norm_sums[k] / n, step)
        w.add_scalar("lr", lr, step)
        w.add_scalar("throughput/chars_per_sec", chars_per_sec, step)
        postfix = {"loss": f"{self.smooth_loss:.3f}", "chars/s": f"{chars_per_sec:,.0f}"}
        if self.val_bpc is not None:
            postfix["val_bpc"] = f"{self.val_bpc:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self._reset_interval()

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

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
