"""The learning-rate schedule and the evaluation times (charrnn.training.schedule), step by step against a
fake clock: each step's time is a function of the step, so no clock can run out or depend on the host."""

import math
from types import SimpleNamespace

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from charrnn.checkpoint import load_checkpoint
from charrnn.checkpoint.info import describe
from charrnn.start import run_config
from charrnn.monitor.dashboard import VAL_DIR
from charrnn.monitor.summary import summary
from charrnn.training import loop as trainer
from charrnn.training.schedule import EVAL_POINTS, PACE_STEPS, WARMUP_CLOCK_SHARE, Schedule
from tests.conftest import TINY, StepClock, compose_raw, make_config


def train_config(**changes):
    values = dict(lr_schedule="cosine", warmup_iters=100, lr_decay_iters=20_000, max_seconds=60.0, min_lr=1e-4,
                  eval_interval=500)
    values.update(changes)
    return SimpleNamespace(**values)


def drive(schedule: Schedule, step_seconds, steps: int, start_step: int = 0, start_seconds: float = 0.0,
          chunk_share=lambda step: 1.0):
    """Run the schedule as the training loop does for `steps` steps, step k taking step_seconds(k) seconds of
    the fake clock on chunk_share(k) of a full chunk; returns each step's lr, the clock before it, and the
    steps evaluated before."""
    lrs, clock, evaluated, seconds = [], [], [], start_seconds
    for step in range(start_step, start_step + steps):
        if step and schedule.evaluation_due(step, seconds):
            schedule.evaluated(seconds)
            evaluated.append(step)
        lrs.append(schedule.next_lr(step, seconds))
        clock.append(seconds)
        seconds += step_seconds(step)
        schedule.record(seconds, chunk_share(step))
    return lrs, clock, evaluated


def warmup_end(lrs, peak):
    """The first step at the peak rate."""
    return next(k for k, lr in enumerate(lrs) if lr == pytest.approx(peak))


def test_by_steps_the_warm_up_and_the_cosine_follow_the_step_alone():
    schedule = Schedule(train_config(warmup_iters=10, lr_decay_iters=110, max_seconds=None, min_lr=0.1), 1.0, {})
    lrs, _, _ = drive(schedule, lambda step: 123.0, 200)  # the clock means nothing without max_seconds
    assert lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(0.5) and lrs[9] == 1.0
    assert lrs[10] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 10 / 110)))
    assert lrs[55] == pytest.approx(0.55)   # half of the cosine's 110 steps
    assert lrs[110] == pytest.approx(0.1) and lrs[199] == pytest.approx(0.1)


def test_a_slow_first_step_does_not_shorten_the_warm_up():
    """A first step of 20 s (a third of the budget: BLAS threads, caches), then 0.05 s a step: the warm-up's
    100 steps take 5 s, under a tenth of the 60 s budget, so all 100 are taken."""
    lrs, _, _ = drive(Schedule(train_config(), 1e-2, {}), lambda step: 20.0 if step == 0 else 0.05, 300)
    assert lrs[49] == pytest.approx(0.5e-2)
    assert lrs[98] < 1e-2 and lrs[99] == pytest.approx(1e-2)
    assert all(a < b for a, b in zip(lrs[:99], lrs[1:100]))


def test_a_few_slow_first_steps_do_not_shorten_it_either():
    lrs, _, _ = drive(Schedule(train_config(), 1e-2, {}), lambda step: 5.0 if step < 3 else 0.05, 300)
    assert warmup_end(lrs, 1e-2) == 99


def test_slow_steps_throughout_warm_up_over_a_tenth_of_the_clock_and_never_skip_it():
    """1 s a step against 60 s: the 100 steps would take longer than the run. The warm-up ends once about a
    tenth of the budget has gone, rising all the way, and the cosine has the rest."""
    lrs, clock, _ = drive(Schedule(train_config(), 1e-2, {}), lambda step: 1.0, 60)
    end = warmup_end(lrs, 1e-2)
    assert 0.1 * 60 <= clock[end] <= 0.1 * 60 + 1.0 + PACE_STEPS
    assert all(a < b for a, b in zip(lrs[:end], lrs[1:end + 1]))
    assert lrs[2] < 0.25e-2  # no early step near the peak
    assert lrs[-1] < 0.02e-2


def test_steps_whose_warm_up_would_take_more_than_its_share_end_it_at_that_share():
    """0.1 s a step: 100 steps would take 10 s, more than a tenth of 60 s, so it lasts about 60 steps."""
    lrs, clock, _ = drive(Schedule(train_config(), 1e-2, {}), lambda step: 0.1, 200)
    end = warmup_end(lrs, 1e-2)
    assert WARMUP_CLOCK_SHARE * 60 - 0.5 <= clock[end] <= WARMUP_CLOCK_SHARE * 60 + 0.5
    assert 55 <= end <= 62


def test_an_epoch_s_short_last_chunk_is_paced_per_full_chunk():
    """A small corpus: every third chunk is a sixteenth of a full one, and as much faster. Counted as it
    is, that pace would stretch the warm-up back to its 100 steps; per full chunk, it lasts the steps a
    tenth of the budget holds at 0.1 s a step, as with full chunks alone, and says so once."""
    schedule = Schedule(train_config(), 1e-2, {})
    short = lambda step: step % 3 == 2  # noqa: E731
    lrs, _, _ = drive(schedule, lambda step: 0.1 / 16 if short(step) else 0.1, 200,
                      chunk_share=lambda step: 1 / 16 if short(step) else 1.0)
    assert 55 <= warmup_end(lrs, 1e-2) <= 62
    news = schedule.pop_news()
    assert len(news) == 1 and news[0].startswith("step 4: warm-up shortened to about 60 steps: at 0.1 s a step")
    assert schedule.pop_news() == []


def test_on_the_clock_the_run_evaluates_at_every_tenth_of_its_budget():
    _, clock, evaluated = drive(Schedule(train_config(), 1e-2, {}), lambda step: 0.25, 240)
    assert len(evaluated) == EVAL_POINTS - 1   # the loop adds the first step and the last
    assert [clock[step] for step in evaluated] == [6.0 * k for k in range(1, EVAL_POINTS)]
    _, _, by_steps = drive(Schedule(train_config(max_seconds=None, eval_interval=50), 1e-2, {}), lambda s: 1, 240)
    assert by_steps == [50, 100, 150, 200]


def test_a_resume_with_the_same_budget_follows_the_unbroken_schedule():
    tc = train_config(max_seconds=None, lr_decay_iters=400)
    unbroken, _, _ = drive(Schedule(tc, 1e-2, {}), lambda step: 0.1, 300)
    first = Schedule(tc, 1e-2, {})
    drive(first, lambda step: 0.1, 50)
    resumed = Schedule(tc, 1e-2, first.state_dict(), step=50, seconds=5.0)
    assert resumed.note is None
    assert drive(resumed, lambda step: 0.1, 250, start_step=50, start_seconds=5.0)[0] == unbroken[50:]


def test_continue_with_a_larger_budget_re_plans_from_where_the_lr_stands_and_never_re_warms():
    """Three minutes, then the printed continue command's six: the cosine stood near min_lr, and it stays
    there; a run stopped half-way down goes on down from its rate over the new budget."""
    tc = train_config(max_seconds=180.0)
    done = Schedule(tc, 5e-3, {})
    lrs, _, _ = drive(done, lambda step: 0.1, 1800)
    longer = Schedule(train_config(max_seconds=360.0), 5e-3, done.state_dict(), step=1800, seconds=180.0)
    assert "re-planned at step 1800" in longer.note
    assert "(train.max_seconds 180 -> 360): it goes on at lr" in longer.note
    more, _, evaluated = drive(longer, lambda step: 0.1, 1800, start_step=1800, start_seconds=180.0)
    assert max(more) <= lrs[-1] * 1.0001 and more[-1] == pytest.approx(1e-4, rel=1e-3)
    assert len(evaluated) == EVAL_POINTS - 1  # ten points over the new part of the budget too
    half = Schedule(tc, 5e-3, {})
    lrs, _, _ = drive(half, lambda step: 0.1, 900)
    resumed = Schedule(train_config(max_seconds=360.0), 5e-3, half.state_dict(), step=900, seconds=90.0)
    more, _, _ = drive(resumed, lambda step: 0.1, 2700, start_step=900, start_seconds=90.0)
    assert more[0] <= lrs[-1] and more[0] == pytest.approx(lrs[-1], rel=1e-2)
    assert all(b <= a for a, b in zip(more, more[1:])) and more[-1] == pytest.approx(1e-4, rel=1e-3)
    assert more[1350] == pytest.approx((lrs[-1] + 1e-4) / 2, rel=1e-2)  # half-way through what was left


def test_a_resume_inside_the_warm_up_warms_on_and_a_checkpoint_from_before_schedules_resumes():
    tc = train_config(max_seconds=None, lr_decay_iters=1000)
    first = Schedule(tc, 1.0, {})
    drive(first, lambda step: 0.1, 40)
    longer = Schedule(train_config(max_seconds=None, lr_decay_iters=2000), 1.0, first.state_dict(), step=40)
    assert longer.note is None and longer.next_lr(40, 4.0) == pytest.approx(0.41)
    legacy = Schedule(tc, 1.0, {"budget": {"lr_decay_iters": 1000, "max_seconds": None}}, step=500, seconds=50.0)
    assert legacy.note is None and legacy.next_lr(500, 50.0) == pytest.approx(1e-4 + 0.5 * (1 - 1e-4))


def scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


CLOCKED = [*TINY, "train.max_iters=100000", "train.max_seconds=5", "train.warmup_iters=20", "optim.lr=0.01",
           "train.log_interval=1", "train.eval_interval=1000"]


def test_a_run_on_the_clock_warms_up_evaluates_ten_times_and_continues_without_re_warming(corpus, tmp_path,
                                                                                          monkeypatch, capsys):
    """1/16 s a step of a 5 s budget: 80 steps. The warm-up takes its 20 steps (1.25 s: more than a tenth
    of the budget, so the clock shortens it to about 0.5 s once it has the pace), the val curve has a point
    at every 0.5 s, and the printed continue command's 10 s go on at min_lr, where the cosine stood."""
    monkeypatch.setattr(trainer.Trainer, "clock", staticmethod(StepClock(1 / 16)))
    result = trainer.train(make_config([f"data.path={corpus}", *CLOCKED]), tmp_path / "run")
    assert result.steps == 80 and result.train_seconds == 5.0
    assert [step for step, _ in scalars(result.run_dir / VAL_DIR, "loss")] == list(range(0, 81, 8))
    said = capsys.readouterr().out
    assert ("on the clock: warm-up 20 steps, shortened only if they would take over 0.5 s (10% of the budget); "
            "evaluations every 0.5 s of training and at the end; the learning rate reaches train.min_lr at 5 s") in said
    assert "step 4: warm-up shortened to about 8 steps: at 0.0625 s a step its 20 would take 1.25 s" in said
    lr = dict(scalars(result.run_dir, "lr"))  # lr[k]: the rate of step k - 1
    assert lr[1] == pytest.approx(0.01 / 20) and lr[4] == pytest.approx(0.01 * 4 / 20)  # by steps while timing
    peak = next(step for step in sorted(lr) if lr[step] == pytest.approx(0.01))
    assert 8 <= peak <= 12                               # about a tenth of the clock, never a skipped warm-up
    assert all(lr[k] < lr[k + 1] for k in range(1, peak))
    assert lr[80] == pytest.approx(1e-4, rel=0.05)
    first = scalars(result.run_dir / VAL_DIR, "loss")
    cfg = make_config([f"data.path={corpus}", *CLOCKED])
    printed = summary(result, cfg).splitlines()[-1]
    assert printed.endswith(f"continue: python train.py train.resume={result.run_dir} train.max_seconds=10")

    overrides = [f"train.resume={result.run_dir}", "train.max_seconds=10"]
    monkeypatch.setattr(trainer.Trainer, "clock", staticmethod(StepClock(1 / 16)))
    more = trainer.train(run_config(compose_raw(overrides), overrides), tmp_path / "other")
    assert more.run_dir == result.run_dir and more.steps == 160
    assert "re-planned at step 80 for the new budget (train.max_seconds 5 -> 10): it goes on at lr 1.0" in (
        more.replanned)
    lr = dict(scalars(result.run_dir, "lr"))
    assert all(lr[k] <= lr[80] * 1.0001 for k in range(81, 161))
    val = scalars(result.run_dir / VAL_DIR, "loss")
    assert [step for step, _ in val] == list(range(0, 161, 8))
    assert val[-1][1] <= first[-1][1]
    events = EventAccumulator(str(result.run_dir), size_guidance={"tensors": 0}).Reload()
    assert [e.step for e in events.Tensors("schedule/text_summary")] == [80]
    ckpt = load_checkpoint(result.run_dir / "ckpt_last.npz")
    assert ckpt.progress["schedule"]["replan"]["step"] == 80
    assert "learning rate re-planned at step 80" in describe(result.run_dir / "ckpt_last.npz", ckpt)
    assert "re-planned at step 80" in summary(more, run_config(compose_raw(overrides), overrides))


@pytest.mark.parametrize("step_seconds,steps,more", [(2.0, 2, 6), (8.0, 1, 16)])
def test_a_run_its_clock_ended_inside_its_warm_up_is_continued_with_a_larger_budget(corpus, tmp_path, monkeypatch,
                                                                                     step_seconds, steps, more):
    """Steps so slow that the clock ends the run before its warm-up does (of a 3 s budget): the printed
    continue command must raise train.max_seconds, the limit that ended it (train.max_iters would leave
    nothing to resume), past the time spent (one 8 s step overshoots twice the budget), and say where the
    warm-up stood."""
    monkeypatch.setattr(trainer.Trainer, "clock", staticmethod(StepClock(step_seconds)))
    overrides = [f"data.path={corpus}", *TINY, "train.max_iters=100000", "train.max_seconds=3",
                 "train.warmup_iters=100"]
    result = trainer.train(make_config(overrides), tmp_path / "run")
    assert result.steps == steps and result.warmup is not None
    printed = summary(result, make_config(overrides)).splitlines()[-1]
    assert printed.endswith(f"continue: python train.py train.resume={result.run_dir} train.max_seconds={more}   "
                            f"(stopped inside its warm-up, at step {steps} of train.warmup_iters=100)")


def test_max_epochs_gives_a_fast_host_the_step_bounded_run_and_a_slow_one_its_clock(corpus, tmp_path, monkeypatch,
                                                                                     capsys):
    """train.max_epochs=0.5 of a 5 s budget. A host fast enough to take those steps inside the clock
    trains exactly the run bounded by them alone (the same learning rates, so the same weights) and stops
    early, saying so; a slower host follows its clock and stops short of them. The faster never ends
    worse, and the printed continue command raises the limit that ended the run, with no re-warming."""
    capped = [f"data.path={corpus}", *CLOCKED, "train.max_epochs=0.5"]
    bounded = trainer.train(make_config([*capped, "train.max_seconds=null"]), tmp_path / "bounded")
    cfg = make_config(capped)
    chunks = len(trainer.make_batchers(cfg, trainer.load_ids(cfg.data)[1])[0])
    assert bounded.steps == math.ceil(0.5 * chunks) and bounded.schedule_progress == 1.0

    monkeypatch.setattr(trainer.Trainer, "clock", staticmethod(StepClock(1 / 64)))
    capsys.readouterr()
    fast = trainer.train(make_config(capped), tmp_path / "fast")
    said = capsys.readouterr().out
    assert fast.steps == bounded.steps and fast.train_seconds < 5 and fast.epochs_ended
    assert fast.val_loss == bounded.val_loss
    assert f"train.max_epochs=0.5 ends it at step {bounded.steps} if the clock has not" in said
    assert (f"train.max_epochs=0.5 reached at step {bounded.steps}, {fast.train_seconds:.3g} s of "
            f"train.max_seconds=5: the run and its cosine end here") in said

    monkeypatch.setattr(trainer.Trainer, "clock", staticmethod(StepClock(1 / 8)))
    slow = trainer.train(make_config(capped), tmp_path / "slow")
    assert slow.steps == 40 < bounded.steps and not slow.epochs_ended and slow.schedule_progress == 1.0
    assert fast.val_loss <= slow.val_loss
    assert summary(slow, make_config(capped)).endswith("train.max_seconds=10")

    printed = summary(fast, make_config(capped)).splitlines()[-1]
    assert printed.endswith(f"continue: python train.py train.resume={fast.run_dir} train.max_epochs=1")
    overrides = [f"train.resume={fast.run_dir}", "train.max_epochs=1"]
    monkeypatch.setattr(trainer.Trainer, "clock", staticmethod(StepClock(1 / 64)))
    more = trainer.train(run_config(compose_raw(overrides), overrides), tmp_path / "other")
    assert more.steps == math.ceil(chunks) and more.epochs_ended
    lr = dict(scalars(fast.run_dir, "lr"))
    assert all(lr[k] <= lr[fast.steps] * 1.0001 for k in range(fast.steps + 1, more.steps + 1))
