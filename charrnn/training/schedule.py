"""The learning rate of every step, and when a run evaluates: a warm-up, then a constant rate or a cosine
down to min_lr, over a budget of steps (train.lr_decay_iters) or of seconds (train.max_seconds), whichever
runs out first.

The rules, each chosen so that a run on the clock gets what its budget can buy:

- The warm-up lasts train.warmup_iters steps. The clock shortens it only when those steps, at the pace of
  the run's steps so far, would take more than WARMUP_CLOCK_SHARE of train.max_seconds: it then ends when
  that share of the budget would have passed. The pace is the fastest step so far (an epoch's shorter
  last chunk counted at its time per full chunk), judged once PACE_STEPS steps after this process's
  first have been timed: a slow start (BLAS threads, caches, torch's first call) never shortens the
  warm-up, and a pace misjudged errs toward the longer one. Each step moves the
  warm-up on by warmup_iters / (the steps it is now expected to last), so the ramp only rises, and
  without a clock it is exactly (step + 1) / warmup_iters.
- train.max_epochs, where it comes first, ends the run after that many passes over the training split:
  max_iters and lr_decay_iters are lowered to its steps (epoch_budget), so the cosine ends with it. On the
  clock, a host fast enough to reach those steps inside max_seconds trains exactly the step-bounded run
  and stops early; a slower one follows its clock as before. A preset sets it where more passes were
  measured to give a worse model, so a faster host never ends worse than a slower one.
- Under max_seconds the run evaluates at every 1/EVAL_POINTS of its budget; without a clock, every
  train.eval_interval steps. (The loop evaluates the last step too, and the first with eval_at_start.)
- A run resumed with a larger budget (train.max_seconds or train.lr_decay_iters) than it was planned for
  never warms up again: past its warm-up, its cosine is re-planned from the learning rate where it stands
  down to min_lr over what is left of the new budget. A run that had finished its cosine so goes on at
  min_lr: more training at the rate that made its best weights, never a climb back toward the peak that
  would undo them. (A run inside its warm-up just goes on warming up; the cosine has not begun.)

What a checkpoint keeps of this (state_dict) makes a resumed run follow the same schedule as an unbroken
one.
"""

import math
from dataclasses import dataclass, replace

WARMUP_CLOCK_SHARE = 0.1  # of train.max_seconds: the most the warm-up takes when its steps are slow
EVAL_POINTS = 10          # evaluations per clock budget
PACE_STEPS = 3            # steps timed (this process's first left out) before the clock may shorten the warm-up


@dataclass(frozen=True)
class Budget:
    """What a schedule is planned over: steps, and seconds of training (None: no clock)."""

    lr_decay_iters: int
    max_seconds: float | None


@dataclass(frozen=True)
class Replan:
    """A cosine re-planned at a resume: from lr at this step and training second, down to min_lr."""

    step: int
    seconds: float
    lr: float


class Schedule:
    """One run's learning rates and evaluation times (the rules above). tc: the run's TrainConfig; peak:
    optim.lr; state: a checkpoint's state_dict() ({} for a fresh run); step, seconds: where the run stands."""

    def __init__(self, tc, peak: float, state: dict, step: int = 0, seconds: float = 0.0):
        self.peak, self.min_lr, self.cosine = peak, tc.min_lr, tc.lr_schedule == "cosine"
        self.warmup_iters, self.eval_interval = tc.warmup_iters, tc.eval_interval
        self.budget = Budget(tc.lr_decay_iters, tc.max_seconds)
        # Steps of warmup_iters the warm-up has covered: the steps themselves, unless the clock shortened it.
        self.warmed: float = state.get("warmed", float(min(step, self.warmup_iters)))
        replan = state.get("replan")
        self.replan: Replan | None = Replan(**replan) if replan else None
        self.eval_seconds: float = state.get("eval_seconds", seconds)  # training time of the last evaluation
        # the fastest of this process's steps after its first (per full chunk), and how many were timed
        self.fastest, self.timed = math.inf, 0
        self.clock_seen: float | None = None
        self.note: str | None = None  # what a resume did to the schedule, if anything
        self.shortened = False  # whether the clock has shortened the warm-up
        self.news: list[str] = []  # what the run should say about its schedule, said once (pop_news)
        planned = Budget(**state["budget"]) if "budget" in state else self.budget
        if planned != self.budget:
            self._replan(planned, step, seconds)

    def state_dict(self) -> dict:
        return {"warmed": self.warmed, "replan": None if self.replan is None else vars(self.replan),
                "eval_seconds": self.eval_seconds, "budget": vars(self.budget)}

    def _replan(self, planned: Budget, step: int, seconds: float) -> None:
        """The budget grew or shrank at a resume: past the warm-up, re-plan the cosine from where it stands."""
        if not self.cosine or self.warming_up:
            return
        current = self.budget
        self.budget = planned
        lr = self._after_warmup(step, seconds)
        self.budget = current
        self.replan = Replan(step, seconds, lr)
        self.eval_seconds = seconds
        if lr <= self.min_lr:
            how = f"it goes on at lr {lr:.2e}, where its finished cosine left it"
        else:
            how = f"a cosine from lr {lr:.2e}, where it stood, down to train.min_lr={self.min_lr:g} over the rest of it"
        self.note = (f"learning-rate schedule re-planned at step {step} for the new budget "
                     f"({changes(planned, current)}): {how}, never warming up again")

    @property
    def warming_up(self) -> bool:
        return self.warmed < self.warmup_iters

    def record(self, train_seconds: float, chunk_share: float = 1.0) -> None:
        """The run's training clock after a step (every rank's the same under torchrun) whose chunk was
        chunk_share of a full one: the step's time sets the pace the warm-up is judged by."""
        if self.clock_seen is not None and self.warming_up:
            self.fastest = min(self.fastest, (train_seconds - self.clock_seen) / chunk_share)
            self.timed += 1
        self.clock_seen = train_seconds

    def warmup_steps(self) -> float:
        """How many steps the warm-up is expected to last, at the pace so far: warmup_iters, or as many as
        WARMUP_CLOCK_SHARE of the clock holds when that is fewer."""
        if self.budget.max_seconds is None or self.timed < PACE_STEPS or self.fastest <= 0:
            return float(self.warmup_iters)
        return min(float(self.warmup_iters), max(1.0, WARMUP_CLOCK_SHARE * self.budget.max_seconds / self.fastest))

    def pop_news(self) -> list[str]:
        news, self.news = self.news, []
        return news

    def plan(self) -> str:
        """The schedule of a run on the clock, in a line: what a person reads to know when it evaluates and
        how its warm-up may end."""
        seconds = self.budget.max_seconds
        start = self.replan.seconds if self.replan else 0.0
        warmup = (f"warm-up {self.warmup_iters} steps, shortened only if they would take over "
                  f"{WARMUP_CLOCK_SHARE * seconds:g} s ({WARMUP_CLOCK_SHARE:.0%} of the budget); "
                  if self.warming_up else "")
        end = f"; the learning rate reaches train.min_lr at {seconds:g} s" if self.cosine else ""
        every = (seconds - start) / EVAL_POINTS
        return f"on the clock: {warmup}evaluations every {every:g} s of training and at the end{end}"

    def next_lr(self, step: int, train_seconds: float) -> float:
        """The learning rate of 0-based step, about to run (call once per step: it moves the warm-up on)."""
        if self.warming_up:
            expected = self.warmup_steps()
            if expected < self.warmup_iters and not self.shortened:
                self.shortened = True
                self.news.append(f"step {step}: warm-up shortened to about {expected:.0f} steps: at "
                                 f"{self.fastest:.3g} s a step its {self.warmup_iters} would take "
                                 f"{self.fastest * self.warmup_iters:.3g} s, over {WARMUP_CLOCK_SHARE:.0%} of "
                                 f"train.max_seconds={self.budget.max_seconds:g}")
            self.warmed = min(float(self.warmup_iters), self.warmed + self.warmup_iters / expected)
            return self.peak * self.warmed / self.warmup_iters
        return self._after_warmup(step, train_seconds)

    def _after_warmup(self, step: int, train_seconds: float) -> float:
        if not self.cosine:
            return self.peak
        top = self.replan.lr if self.replan else self.peak
        low = min(self.min_lr, top)
        return low + 0.5 * (1.0 + math.cos(math.pi * min(self.progress(step, train_seconds), 1.0))) * (top - low)

    def progress(self, step: int, train_seconds: float) -> float:
        """The share of the cosine spent: of its steps, or of its seconds where that is further (from the
        re-plan's start, if there was one). Without max_seconds it depends on the step alone, so runs are
        reproducible to the bit; with it the cosine follows the clock, so a short budget anneals fully."""
        start_step, start_seconds = (self.replan.step, self.replan.seconds) if self.replan else (0, 0.0)
        steps = self.budget.lr_decay_iters - start_step
        spent = (step - start_step) / steps if steps > 0 else 1.0
        if self.budget.max_seconds is not None:
            seconds = self.budget.max_seconds - start_seconds
            spent = max(spent, (train_seconds - start_seconds) / seconds if seconds > 0 else 1.0)
        return spent

    def evaluation_due(self, step: int, train_seconds: float) -> bool:
        """Whether the run evaluates before this step: at every eval_interval steps, or on the clock at
        every 1/EVAL_POINTS of the budget (of what a re-plan left of it)."""
        if self.budget.max_seconds is None:
            return step % self.eval_interval == 0
        start = self.replan.seconds if self.replan else 0.0
        every = (self.budget.max_seconds - start) / EVAL_POINTS
        if every <= 0:
            return False
        return math.floor((train_seconds - start) / every) > math.floor((self.eval_seconds - start) / every)

    def evaluated(self, train_seconds: float) -> None:
        self.eval_seconds = train_seconds


def epoch_budget(tc, chunks_per_epoch: int):
    """tc (the config's train section) with max_iters and lr_decay_iters lowered to the steps of
    train.max_epochs passes over chunks_per_epoch chunks, where those come first."""
    if tc.max_epochs is None:
        return tc
    steps = max(1, math.ceil(tc.max_epochs * chunks_per_epoch))
    return replace(tc, max_iters=min(tc.max_iters, steps), lr_decay_iters=min(tc.lr_decay_iters, steps))


def changes(before: Budget, after: Budget) -> str:
    """'train.max_seconds 60 -> 120', for each key of the budget that changed."""
    shown = lambda v: "null" if v is None else f"{v:g}"  # noqa: E731
    return ", ".join(f"train.{key} {shown(getattr(before, key))} -> {shown(getattr(after, key))}"
                     for key in ("max_seconds", "lr_decay_iters") if getattr(before, key) != getattr(after, key))
