"""What a run shows: a tqdm bar on the terminal and TensorBoard curves in the run directory, the val ones
in its val/ directory (VAL_DIR), which TensorBoard lists as a run of its own.

Per-step figures are accumulated and written every log_interval steps as interval averages,
so logging costs nothing measurable even when a step takes a fraction of a millisecond.
docs/monitoring.md lists every tag and says how to read it.
"""

import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from charrnn.monitor import grad_flow
from charrnn.backends.interface import Gradients, StepResult
from charrnn.monitor.dashboard import LAYOUT, VAL_DIR, config_card, flatten, hparams_summaries, sample_card, trial_name
from charrnn.novelty import NoveltyIndex

LOG2E = 1.0 / math.log(2.0)
SMOOTHING = 0.99  # min-char-rnn's smooth_loss keeps 0.999; per step of 32+ streams 0.99 reads better
HISTOGRAM_BINS = 64
# The matrices that carry the state from one step to the next, by min-char-rnn's naming (W, from, to):
# Whh, and Whh_1, Whh_2, ... of the layers above (charrnn.model names them); Why reads the state out and is
# not one of them.
RECURRENT = re.compile(r"^Wh(?!y)")


def _wait_to_sort_last(*log_dirs: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second its writer
    opened: a run resumed within a second of the start of the one before would be read first, its
    purge_step too early. Wait out that second (never more, should a file carry a future time)."""
    opened = [int(stamp) for log_dir in log_dirs for p in log_dir.glob("events.out.tfevents.*")
              if (stamp := p.name.split(".")[3]).isdigit()]
    delay = max(opened, default=0) + 1 - time.time()
    if 0 < delay <= 1:
        time.sleep(delay)


class BudgetBar(tqdm):
    """A bar over a clock budget: training seconds spent and left of train.max_seconds (evaluation excluded,
    as the budget excludes it), the step in its figures. A bar of steps would have to guess its end from
    the pace, and its total and time left would jump with every evaluation."""

    FORMAT = "{l_bar}{bar}| {n:.1f}/{total:g} s of training, {left:.1f} s left{postfix}"

    @property
    def format_dict(self):
        d = super().format_dict
        d["left"] = max(0.0, (d["total"] or 0.0) - d["n"])
        return d


def recurrent_matrices(params: dict[str, np.ndarray]) -> list[str]:
    return [k for k, v in params.items() if RECURRENT.match(k) and v.ndim == 2]


@dataclass
class Interval:
    """Sums over the steps since the last TensorBoard point (n: the steps that made an update, of `steps`)."""

    n: int = 0
    loss: float = 0.0
    chars: int = 0
    seconds: float = 0.0
    clipped: int = 0
    global_norm: float = 0.0
    global_clipped: float = 0.0
    norms: dict[str, float] = field(default_factory=dict)
    clipped_norms: dict[str, float] = field(default_factory=dict)
    steps: int = 0


class Monitor:
    def __init__(self, run_dir: Path, max_iters: int, start_step: int, log_interval: int, clip_mode: str,
                 state: dict | None = None, max_seconds: float | None = None, train_seconds: float = 0.0,
                 novelty: NoveltyIndex | None = None, config: dict | None = None, command: str | None = None):
        """state: a resumed run's state_dict(), whose run directory already has curves up to start_step.
        max_seconds: the run's clock budget (train.max_seconds), of which train_seconds are spent.
        novelty: the training text's windows, to say beside each sample how much of it they hold.
        config, command: the resolved config and the command line, shown as TEXT's config card."""
        self.novelty = novelty
        # Imported here, once a run starts: it pulls in torch (4 to 6 s to import on the 2-core host), which a
        # command refused for a bad key or path need not wait for.
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run hides whatever the earlier run logged after start_step (it went on past its last
        # checkpoint, or was killed), so every curve continues with no step twice.
        if state:
            _wait_to_sort_last(run_dir, run_dir / VAL_DIR)
        purge_step = start_step + 1 if state else None
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        self.val_writer = SummaryWriter(log_dir=str(run_dir / VAL_DIR), purge_step=purge_step)
        self.writer.add_custom_scalars(LAYOUT)
        self.run_dir = run_dir
        if config is not None:
            self.writer.add_text("config", config_card(config, command), start_step)
        if max_seconds is None:
            self.bar = tqdm(total=max_iters, initial=start_step, unit="step", dynamic_ncols=True)
        else:
            self.bar = BudgetBar(total=max_seconds, initial=min(train_seconds, max_seconds), unit="s",
                                 dynamic_ncols=True, bar_format=BudgetBar.FORMAT)
        self.max_iters, self.last_step = max_iters, start_step
        self.max_seconds, self.train_seconds = max_seconds, train_seconds
        self.log_interval = log_interval
        # Without clipping the clipped norms are the norms; with clip_mode=norm each parameter's is its
        # norm times the one factor that the global norms already show.
        self.clipping = clip_mode != "none"
        self.clipped_per_param = clip_mode == "value"
        state = state or {}
        self.smooth_loss: float | None = state.get("smooth_loss")
        self.interval = Interval(**state["interval"]) if "interval" in state else Interval()
        self.skipped_steps: int = state.get("skipped_steps", 0)
        self.clipped_steps: int = state.get("clipped_steps", 0)
        self.chars_per_step: int | None = state.get("chars_per_step")
        self.val_bpc: float | None = None
        self.epoch: float | None = None
        self.chars_per_sec: float | None = None

    def state_dict(self) -> dict:
        """What a resumed run needs for its curves to go on as if unbroken, as JSON."""
        return {"smooth_loss": self.smooth_loss, "interval": asdict(self.interval), "skipped_steps": self.skipped_steps,
                "clipped_steps": self.clipped_steps, "chars_per_step": self.chars_per_step}

    def step(self, step: int, result: StepResult, lr: float, chars: int, seconds: float,
             epoch: float | None = None) -> None:
        """Record training step `step` (0-based); `seconds` is its wall time, `epoch` the passes over the
        train split made once it is done (1.25: a quarter into the second)."""
        iv = self.interval
        iv.steps += 1
        iv.chars += chars
        iv.seconds += seconds
        self.chars_per_step = chars
        self.epoch = epoch
        if self.max_seconds is None:
            self.bar.update(1)
        else:
            self.bar.update(min(self.train_seconds + seconds, self.max_seconds) - min(self.train_seconds,
                                                                                      self.max_seconds))
        self.train_seconds += seconds
        self.last_step = step + 1
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
        self.clipped_steps += int(clipped_norm < norm)
        for k, v in result.grad_norms.items():
            iv.norms[k] = iv.norms.get(k, 0.0) + v
        for k, v in result.clipped_grad_norms.items():
            iv.clipped_norms[k] = iv.clipped_norms.get(k, 0.0) + v

    def _flush_interval(self, step: int, lr: float) -> None:
        w, iv, n = self.writer, self.interval, self.interval.n
        chars_per_sec = iv.chars / iv.seconds if iv.seconds > 0 else float("nan")
        if n:
            w.add_scalar("loss", iv.loss / n, step)
            w.add_scalar("loss_smooth", self.smooth_loss, step)
            w.add_scalar("bpc", iv.loss / n * LOG2E, step)
            w.add_scalar("grad_norm/global", iv.global_norm / n, step)
            if self.clipping:
                w.add_scalar("grad_norm/global_clipped", iv.global_clipped / n, step)
            for k, v in iv.norms.items():
                w.add_scalar(f"param_grad_norm/{k}", v / n, step)
                if self.clipped_per_param:
                    w.add_scalar(f"param_grad_norm/{k}_clipped", iv.clipped_norms[k] / n, step)
        # The share of the interval's steps clipped or skipped shows how often; the cumulative counts keep a
        # rare burst visible whatever the scale.
        if self.clipping:
            if n:
                w.add_scalar("steps/clipped_fraction", iv.clipped / n, step)
            w.add_scalar("steps/clipped", self.clipped_steps, step)
        if iv.steps:
            w.add_scalar("steps/skipped_fraction", (iv.steps - n) / iv.steps, step)
        w.add_scalar("steps/skipped", self.skipped_steps, step)
        w.add_scalar("lr", lr, step)
        if self.epoch is not None:
            w.add_scalar("epoch", self.epoch, step)
        w.add_scalar("throughput/chars_per_sec", chars_per_sec, step)
        self.interval = Interval()
        self.chars_per_sec = chars_per_sec
        self._show()

    def _show(self) -> None:
        """The bar's figures: the epoch, the smoothed train loss (the bar's loss is never a raw one), the
        last evaluation's val bits/char, the last log interval's speed."""
        shown = {} if self.max_seconds is None else {"step": self.last_step}
        if self.epoch is not None:
            shown["epoch"] = f"{self.epoch:.2f}"
        if self.smooth_loss is not None:
            shown["smoothed_loss"] = f"{self.smooth_loss:.3f}"
        if self.val_bpc is not None:
            shown["val_bpc"] = f"{self.val_bpc:.3f}"
        if self.skipped_steps:
            shown["skipped"] = self.skipped_steps
        if self.chars_per_sec is not None:
            shown["chars/s"] = f"{self.chars_per_sec:,.0f}"
        self.bar.set_postfix(shown, refresh=False)

    def evaluation(self, step: int, val_loss: float, sample: str, params: dict[str, np.ndarray],
                   grads: Gradients, best_val_loss: float, train_seconds: float,
                   sample_settings: dict | None = None) -> None:
        """Validation figures and a sample (drawn with sample_settings, sample.py's options by name); the run
        so far (HPARAMS' metrics); what the weights and gradients look like: a histogram of each, the
        recurrent matrices' largest singular values, and how far back the gradient reaches (grad_flow)."""
        w, val = self.writer, self.val_writer
        self.val_bpc = val_loss * LOG2E
        self._show()
        val.add_scalar("loss", val_loss, step)
        val.add_scalar("bpc", self.val_bpc, step)
        val.add_scalar("run/best_loss", best_val_loss, step)
        val.add_scalar("run/best_bpc", best_val_loss * LOG2E, step)
        w.add_scalar("run/steps", step, step)
        w.add_scalar("run/train_seconds", train_seconds, step)
        if self.chars_per_step is not None and train_seconds > 0:
            w.add_scalar("run/chars_per_sec", step * self.chars_per_step / train_seconds, step)
        novelty = f"\n{self.novelty.describe(sample)}" if self.novelty else ""
        w.add_text("sample", sample_card(sample, val_loss, sample_settings) + novelty, step)
        spectral = {k: float(np.linalg.norm(params[k].astype(np.float64), 2)) for k in recurrent_matrices(params)}
        for k, norm in spectral.items():
            w.add_scalar(f"spectral_norm/{k}", norm, step)
        for k in params:
            for kind, values in (("weights", params[k]), ("grads", grads.params[k])):
                # Buckets over the values' own range: the default ones end at 1e20, where a blow-up is only
                # starting. None holds an infinity or a NaN (a gradient about to be skipped may).
                if np.isfinite(values).all():
                    w.add_histogram(f"{kind}/{k}", values, step, bins=HISTOGRAM_BINS)
        flow = self._grad_flow(step, grads.dh_norms)
        w.flush()
        val.flush()
        perplexity = math.exp(val_loss) if val_loss < 700 else math.inf
        spectral_text = ", ".join(f"{k} {v:.3f}" for k, v in spectral.items())
        self.write(f"step {step}: val {val_loss:.4f} nats/char, {self.val_bpc:.4f} bits/char, "
                   f"perplexity {perplexity:.2f}; spectral norm {spectral_text}\n{flow}\n{sample}{novelty}\n")

    def schedule_note(self, step: int, note: str) -> None:
        """What a resume did to the learning-rate schedule: on the terminal, and as TensorBoard's
        schedule text at the step it happened (the lr curve shows it too)."""
        self.writer.add_text("schedule", note, step)
        self.write(note)

    def full_evaluation(self, step: int, val_loss: float, predictions: int) -> None:
        """The val loss over the whole split after the last step (train.final_full_eval)."""
        self.val_writer.add_scalar("loss_full", val_loss, step)
        self.val_writer.flush()
        self.write(f"step {step}: val {val_loss:.4f} nats/char over the whole val split ({predictions:,} predictions)")

    def _grad_flow(self, step: int, dh_norms: np.ndarray) -> str:
        """One picture of |dL/dh| against lag, each layer's growth and reach; returns the terminal's lines."""
        lagged = grad_flow.by_lag(dh_norms)
        self.writer.add_image("grad_flow/by_lag", grad_flow.picture(lagged, step), step, dataformats="HWC")
        lines = []
        for layer, norms in enumerate(lagged):
            suffix, name = ("", "") if len(lagged) == 1 else (f"_l{layer}", f" (layer {layer})")
            summary = grad_flow.summarize(norms)
            if summary is not None:
                self.writer.add_scalar(f"grad_flow/growth{suffix}", summary.growth, step)
                self.writer.add_scalar(f"grad_flow/reach{suffix}", summary.reach, step)
            lines.append(f"|dL/dh|{name} from lag 0 to lag {len(norms) - 1}: {grad_flow.sparkline(norms)}")
        return "\n".join(lines)

    def hparams(self, config: dict) -> None:
        """The run's config beside its figures, one row of TensorBoard's HPARAMS table (dashboard.py)."""
        for summary in hparams_summaries(flatten(config), trial_name(self.run_dir)):
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
        self.val_writer.close()
