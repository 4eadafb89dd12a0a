"""model.dropout=auto (charrnn.training.plan): the rate read from the passes over the training text a run's
budget buys, planned from the pace of its first steps on the clock, kept by a resume."""

from types import SimpleNamespace

import numpy as np
import pytest

from charrnn.checkpoint import load_checkpoint
from charrnn.start import run_config
from charrnn.errors import UserError
from charrnn.training import loop as trainer
from charrnn.training.plan import PLAN_STEPS, RATES, DropoutPlan, rate_for, table
from tests.conftest import TINY, StepClock, compose_raw, make_config

TRAIN_CHARS = 1_000_000
B, T = 32, 64  # 2,048 chars a step: 488 steps a pass over TRAIN_CHARS


def train_config(max_seconds=300.0, max_iters=20_000):
    return SimpleNamespace(max_seconds=max_seconds, max_iters=max_iters, batch_size=B, seq_length=T)


def clocked(plan: DropoutPlan, step_seconds, steps: int, step: int = 0, seconds: float = 0.0) -> list[float]:
    """Each step's rate, driven as the training loop drives it, step k taking step_seconds(k)."""
    rates = []
    for k in range(step, step + steps):
        rates.append(plan.rate)
        seconds += step_seconds(k)
        plan.record(k + 1, seconds)
    return rates


def test_the_rate_rises_with_the_passes_and_is_said_as_a_table():
    passes = np.linspace(0, 30, 301)
    rates = [rate_for(p) for p in passes]
    assert rates == sorted(rates) and rates[0] == 0.0 and rates[-1] == RATES[-1][1]
    assert [rate_for(1.2), rate_for(2.0), rate_for(2.01), rate_for(5.7)] == [0.0, 0.0, 0.1, 0.2]
    assert table() == "0 up to 2 passes, 0.1 up to 4, 0.2 beyond"


def test_a_number_is_the_rate_throughout_and_nothing_is_said():
    plan = DropoutPlan(0.3, train_config(), TRAIN_CHARS, stored=None, replanned=False)
    assert clocked(plan, lambda k: 0.1, 50) == [0.3] * 50 and plan.pop_news() is None


def test_without_a_clock_the_rate_is_decided_before_the_first_step():
    plan = DropoutPlan("auto", train_config(max_seconds=None, max_iters=1_500), TRAIN_CHARS, None, False)
    assert plan.rate == 0.1  # 1,500 x 2,048 chars: 3.1 passes
    assert plan.pop_news() == ("model.dropout=auto: 0.1, for about 1,500 steps (train.max_iters=1500), 3.1 passes "
                               "over the 1,000,000 training chars (the rate is 0 up to 2 passes, 0.1 up to 4, "
                               "0.2 beyond)")
    assert plan.pop_news() is None


def test_on_the_clock_the_steps_after_the_first_set_the_pace():
    """A first step 50 times slower (BLAS threads starting) is left out: at 0.1 s a step, the 294 s left
    after step 11 hold 2,940 steps more: 6 passes. The steps before the plan train without dropout."""
    plan = DropoutPlan("auto", train_config(), TRAIN_CHARS, None, False)
    rates = clocked(plan, lambda k: 5.0 if k == 0 else 0.1, 40)
    assert rates == [0.0] * (PLAN_STEPS + 1) + [0.2] * (40 - PLAN_STEPS - 1)
    assert plan.pop_news().startswith(f"step {PLAN_STEPS + 1}: model.dropout=auto: 0.2, for about 2,951 steps "
                                      f"(train.max_seconds=300 at 0.1 s a step), 6 passes over")


@pytest.mark.parametrize("max_iters", [20_000, 700])
def test_a_faster_host_never_gets_less_dropout(max_iters):
    """The same budget at paces from 1.6 s to 1/80 s a step: the rate never falls as the host gets faster,
    and train.max_iters caps the steps the clock would hold."""
    rates = []
    for pace in [1.6, 0.8, 0.4, 0.2, 0.1, 0.05, 0.025, 0.0125]:
        plan = DropoutPlan("auto", train_config(max_iters=max_iters), TRAIN_CHARS, None, False)
        rates.append(clocked(plan, lambda k: pace, PLAN_STEPS + 2)[-1])
    assert rates == sorted(rates)
    assert rates[-1] == (0.2 if max_iters == 20_000 else 0.0)  # 700 steps: 1.4 passes, however fast


def test_a_resume_keeps_the_rate_unless_its_budget_changed():
    kept = DropoutPlan("auto", train_config(), TRAIN_CHARS, stored=0.1, replanned=False)
    assert clocked(kept, lambda k: 0.01, 30, step=500, seconds=100.0) == [0.1] * 30
    again = DropoutPlan("auto", train_config(max_seconds=600.0), TRAIN_CHARS, stored=0.1, replanned=True)
    assert clocked(again, lambda k: 0.1, 30, step=500, seconds=100.0)[-1] == 0.2
    assert again.pop_news().startswith(f"step {500 + PLAN_STEPS + 1}: model.dropout=auto: 0.2")


def test_a_run_on_the_clock_trains_with_the_planned_rate_and_a_resume_keeps_it(corpus, tmp_path, monkeypatch,
                                                                                capsys):
    """Through the trainer, on a fake clock of 1/16 s a step: 80 steps (train.max_iters, which the 100 s
    would not reach) of 16 x 16 chars over the corpus's 4,856 training chars are 4.2 passes, so the masks'
    rate is 0 until the plan and 0.2 from then on. The checkpoint keeps it, and a resume with the same budget
    (train.max_iters is no part of it) trains with it from its first step."""
    drawn = []
    real = trainer.dropout_masks
    monkeypatch.setattr(trainer, "dropout_masks", lambda p, *args: drawn.append(p) or real(p, *args))
    monkeypatch.setattr(trainer.Trainer, "clock", staticmethod(StepClock(1 / 16)))
    overrides = [f"data.path={corpus}", *TINY, "train.batch_size=16", "train.seq_length=16", "model.dropout=auto",
                 "train.max_iters=80", "train.lr_decay_iters=100000", "train.max_seconds=100",
                 "train.eval_at_start=false", "train.sample_length=0"]
    result = trainer.train(make_config(overrides), tmp_path / "run")
    assert result.steps == 80
    assert drawn[:PLAN_STEPS + 1] == [0.0] * (PLAN_STEPS + 1) and set(drawn[PLAN_STEPS + 1:]) == {0.2}
    assert f"step {PLAN_STEPS + 1}: model.dropout=auto: 0.2, for about 80 steps" in capsys.readouterr().out
    ckpt = load_checkpoint(result.run_dir / "ckpt_last.npz")
    assert ckpt.progress["dropout"] == 0.2 and ckpt.config["model"]["dropout"] == "auto"

    drawn.clear()
    resumed = [f"train.resume={result.run_dir}", "train.max_iters=90"]
    more = trainer.train(run_config(compose_raw(resumed), resumed), tmp_path / "other")
    assert more.steps == 90 and set(drawn) == {0.2} and len(drawn) >= 10
    assert "model.dropout=auto" not in capsys.readouterr().out


@pytest.mark.parametrize("value", ["nope", "1", "-0.1", "true"])
def test_a_wrong_rate_is_refused_in_one_line(value):
    with pytest.raises(UserError, match=r"^model.dropout must be a probability in \[0, 1\) or auto \(chosen from "
                                        r"the passes over the training text the budget buys\), got "):
        make_config([f"model.dropout={value}"])
