"""python -m charrnn.tools.quality: presets and stock torch.nn models on the same data and clock, in one table."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from charrnn.tools import quality
from charrnn.training import loop as trainer, schedule
from tests.conftest import REPO, StepClock, make_config

TINY_PRESET = ["model.hidden_size=16", "model.num_layers=1", "train.batch_size=4", "train.seq_length=8",
               "train.eval_chars=2000"]


def test_presets_and_stock_models_train_on_one_clock_into_one_table(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(quality.STOCK, "hidden_size", 16)
    monkeypatch.setitem(quality.STOCK, "num_layers", 1)
    monkeypatch.setitem(quality.STOCK, "batch_size", 4)
    monkeypatch.setitem(quality.STOCK, "seq_length", 8)
    out = tmp_path / "quality.json"
    quality.main(["--seconds", "0.3", "--presets", "gru_5min", "--stock", "gru", "--data", str(corpus),
                  "--set", *TINY_PRESET, "--json", str(out), "--markdown", str(tmp_path / "quality.md")])
    report = json.loads(out.read_text())
    preset, stock = report["rows"]
    assert (preset["name"], stock["name"]) == ("gru_5min", "stock nn.GRU")
    for row in (preset, stock):
        assert row["budget_seconds"] == 0.3 and row["steps"] > 0 and row["train_seconds"] >= 0.3
        assert 0 < row["val_nats"] < 4.0 and abs(row["val_bpc"] - row["val_nats"] / 0.6931471805599453) < 1e-9
    assert stock["gap_to_best_stock"] == 0.0
    assert preset["gap_to_best_stock"] == preset["val_nats"] - stock["val_nats"]
    printed = capsys.readouterr().out.splitlines()
    table = printed[next(k for k, line in enumerate(printed) if line.startswith("host: ")):]
    assert table[1:3] == [
        "| model | budget (s) | seed | threads | val nats/char | val bits/char | steps | gap to best stock |",
        "|---|---|---|---|---|---|---|---|"]
    assert table[3].startswith("| gru_5min | 0.3 | 1337 |") and table[4].startswith("| stock nn.GRU | 0.3 | 1337 |")
    assert (tmp_path / "quality.md").read_text().splitlines()[2:] == table[1:]


def test_a_mistake_in_its_arguments_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "charrnn.tools.quality", "--stock-lr", "-1"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: argument --stock-lr: must be a positive learning rate, got '-1' (--help lists the options)"]


SHARED = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"


def markov_corpus(path, length=200_000, symbols="abcdefghijkl", seed=0) -> float:
    """A text drawn from a random order-2 Markov chain, written to path; returns the best loss any model can
    reach on its val split (the last 10%, as data.val_fraction splits it): the chain's own cross-entropy
    there, in nats/char."""
    rng = np.random.default_rng(seed)
    K = len(symbols)
    probs = rng.dirichlet(np.full(K, 0.3), size=(K, K))     # (K, K, K): p(next | the two before)
    cdf = probs.cumsum(-1)
    ids = [0, 1]
    for u in rng.random(length - 2):
        a, b = ids[-2], ids[-1]
        ids.append(min(int(np.searchsorted(cdf[a, b], u * cdf[a, b, -1])), K - 1))
    path.write_text("".join(symbols[i] for i in ids), encoding="utf-8")
    val = np.array(ids[len(ids) - int(len(ids) * 0.1):])
    return float(-np.log(probs[val[:-2], val[1:-1], val[2:]]).mean())


# A GRU of 64 units on the clock of a fast host: 200 steps of 1/8 s (the fake clock) in a 25 s budget, so
# the clock shortens the warm-up to a tenth of it. Adam's rate is high enough that the schedule decides
# the result, as 1e-2 does for gru_5min's two layers of 256: with the warm-up skipped (the regression
# this guards against, WARMUP_CLOCK_SHARE near 0) the val loss ends well above the bound.
GUARD = ["backend=numpy", "model=gru", "model.hidden_size=64", "train.batch_size=16", "train.seq_length=32",
         "train.max_seconds=25", "train.max_iters=100000", "optim.lr=0.1", "train.warmup_iters=100",
         "train.sample_length=0", "train.eval_chars=20000", "train.log_interval=50", "seed=1337"]


TINYSHAKESPEARE_BOUND = 2.33  # nats/char
MARKOV_MARGIN = 0.26          # nats/char above the generated corpus's best


def guarded_run(tmp_path, monkeypatch) -> tuple[float, float]:
    """The guard's run: its val loss and the bound it must stay under. Tiny Shakespeare where it is shared
    (CHARRNN_TINYSHAKESPEARE, or ../shared beside the checkout), else a generated corpus whose best loss
    is known."""
    shared = os.environ.get("CHARRNN_TINYSHAKESPEARE") or (str(SHARED) if SHARED.is_file() else None)
    if shared:
        data, bound = [f"data.path={shared}"], TINYSHAKESPEARE_BOUND
    else:
        best = markov_corpus(tmp_path / "markov.txt")
        data, bound = [f"data.path={tmp_path / 'markov.txt'}"], best + MARKOV_MARGIN
    monkeypatch.setattr(trainer.Trainer, "clock", staticmethod(StepClock(1 / 8)))
    result = trainer.train(make_config([*data, *GUARD]), tmp_path / "run")
    assert result.steps == 200
    print(f"val {result.val_loss:.4f} nats/char, bound {bound:.4f}")
    return result.val_loss, bound


def test_the_clock_schedule_buys_a_known_quality(tmp_path, monkeypatch):
    """Deterministic: the fake clock makes the steps, their schedule and their evaluations the same on any
    host, so the bound holds everywhere."""
    val, bound = guarded_run(tmp_path, monkeypatch)
    assert val < bound, f"val {val:.4f} nats/char, above the bound {bound:.4f}"


@pytest.mark.slow
def test_the_quality_guard_fails_when_the_clock_skips_the_warm_up(tmp_path, monkeypatch):
    """The regression the guard is for: a warm-up the clock cuts to nothing, as when it took warmup_iters /
    lr_decay_iters of the budget (a few steps of gru_5min's minute)."""
    monkeypatch.setattr(schedule, "WARMUP_CLOCK_SHARE", 1e-4)
    val, bound = guarded_run(tmp_path, monkeypatch)
    assert val > bound
