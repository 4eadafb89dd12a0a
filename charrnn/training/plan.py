"""model.dropout=auto: the dropout rate that fits what the run's budget buys on the host it runs on.

Dropout costs a short run a little of what it learns and saves a long one from overfitting, and which a run
is depends on how many passes over the training text it makes, which on the clock depends on the host: the
same train.max_seconds=300 is 5.7 passes of experiment=gru_5min on a 2-core host and twice that on a host
twice as fast, where a fixed rate tuned on the first lets the model overfit (docs/performance.md has the
measurements RATES was fitted to). So the rate is read from RATES by the passes the run is expected to make:

- without a clock, train.max_iters steps: known at the start, so the rate is decided before the first step;
- with train.max_seconds, the steps the clock holds at the pace of the run's first PLAN_STEPS steps after this
  process's first (which starts BLAS threads and caches, and would make the host look slower), capped at
  train.max_iters. Those first steps train without dropout; every rank decides alike, since the clock the
  ranks agree on is what is read.

The rate is decided once and kept in the checkpoint: a resumed run goes on with it, unless it resumes with a
new budget (train.max_seconds or train.lr_decay_iters), which is planned again for the passes of the whole run.
"""

import math

from charrnn.config import AUTO

# (the most passes, the rate): the first row the run's passes do not exceed gives its rate
RATES = ((2.0, 0.0), (4.0, 0.1), (math.inf, 0.2))
PLAN_STEPS = 10  # steps timed (this process's first left out) before the clock's plan is made


def rate_for(passes: float) -> float:
    return next(rate for most, rate in RATES if passes <= most)


def table() -> str:
    """RATES as a person reads them: '0 up to 2 passes, 0.1 up to 4, 0.2 beyond'."""
    bounded = [f"{rate:g} up to {most:g}" for most, rate in RATES if math.isfinite(most)]
    return f"{bounded[0]} passes, {', '.join(bounded[1:] + [f'{RATES[-1][1]:g} beyond'])}"


class DropoutPlan:
    """One run's dropout rate: model.dropout itself when it is a number, else (AUTO) planned as above.
    tc: the run's TrainConfig; train_chars: the predictions one pass over the train split makes; stored: the
    rate a resumed run's checkpoint decided (None: none yet); replanned: whether the resume changed the budget."""

    def __init__(self, setting, tc, train_chars: int, stored: float | None, replanned: bool):
        self.auto = setting == AUTO
        self.tc, self.train_chars = tc, train_chars
        self.decided: float | None = float(setting) if not self.auto else None if replanned else stored
        self.first: tuple[int, float] | None = None  # (step, seconds) after this process's first step
        if self.decided is None and self.auto and tc.max_seconds is None:
            self.decided = rate_for(self._passes(tc.max_iters))
            self.news = self._reason(tc.max_iters, f"train.max_iters={tc.max_iters}")
        else:
            self.news = None

    @property
    def rate(self) -> float:
        """The rate of the next step: 0 until the clock's plan is made."""
        return self.decided or 0.0

    def record(self, step: int, train_seconds: float) -> None:
        """After a step (step: the steps done now), with the training clock then."""
        if self.decided is not None:
            return
        if self.first is None:
            self.first = (step, train_seconds)
        elif step - self.first[0] >= PLAN_STEPS:
            pace = (train_seconds - self.first[1]) / (step - self.first[0])
            left = max(self.tc.max_seconds - train_seconds, 0.0)
            steps = min(self.tc.max_iters, step + round(left / pace) if pace > 0 else self.tc.max_iters)
            self.decided = rate_for(self._passes(steps))
            self.news = f"step {step}: " + self._reason(
                steps, f"train.max_seconds={self.tc.max_seconds:g} at {pace:.3g} s a step")

    def pop_news(self) -> str | None:
        """The plan, in a line, once it is made."""
        news, self.news = self.news, None
        return news

    def _passes(self, steps: int) -> float:
        return steps * self.tc.batch_size * self.tc.seq_length / self.train_chars

    def _reason(self, steps: int, budget: str) -> str:
        return (f"model.dropout=auto: {self.decided:g}, for about {steps:,} steps ({budget}), "
                f"{self._passes(steps):.2g} passes over the {self.train_chars:,} training chars (the rate is "
                f"{table()})")
