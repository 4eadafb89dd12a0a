import json

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from charrnn.training import evaluation, loop as trainer
from charrnn.data.batching import StreamBatcher
from charrnn.checkpoint import load_checkpoint, restore_backend
from charrnn.data import load_ids
from charrnn.distributed import Solo
from charrnn.training.evaluation import evaluate
from charrnn.model import model_spec, spec_of
from charrnn.monitor.dashboard import VAL_DIR
from tests.conftest import TINY, make_config

SPEC = model_spec("rnn", vocab_size=10, hidden_size=3)


class Recorder:
    """A backend whose loss on a chunk is its targets' mean, and whose state counts the chunks read."""

    def __init__(self):
        self.reads = []

    def evaluate(self, inputs, targets, state):
        (h_prev,) = state                          # (1, B, H): one rnn layer
        self.reads.append((inputs.copy(), targets.copy(), h_prev[0].copy()))
        return float(targets.mean()), (h_prev + 1,)


def test_a_budget_reads_the_same_leading_stretch_every_time_state_carried():
    val = StreamBatcher(np.arange(10_000), 4, 8)
    budget = val.head(1000)
    first, second = Recorder(), Recorder()
    loss = evaluate(first, budget, SPEC, "float64")
    assert evaluate(second, budget, SPEC, "float64") == loss
    assert len(first.reads) == len(second.reads) == len(budget)
    for (inputs, targets, h), (inputs2, targets2, h2) in zip(first.reads, second.reads):
        assert np.array_equal(inputs, inputs2) and np.array_equal(targets, targets2) and np.array_equal(h, h2)
    # every stream's targets, in order: the first 1000 ids but each stream's first, and nothing after them
    targets = np.concatenate([t for _, t, _ in first.reads], axis=1)
    assert np.array_equal(targets, np.arange(1000).reshape(4, 250)[:, 1:])
    assert loss == targets.mean()  # the mean over every prediction (chunks weighted by their size)
    assert [float(h[0, 0]) for _, _, h in first.reads] == list(range(len(budget)))  # state carried, from zeros


def test_a_long_evaluation_shows_its_progress_in_chunks(monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "BAR_DELAY", 0)  # what an evaluation longer than the delay shows
    batcher = StreamBatcher(np.arange(1000), 4, 8)
    evaluate(Recorder(), batcher, SPEC, "float64")
    err = capsys.readouterr().err
    assert "evaluating:" in err and f"0/{len(batcher)} [" in err  # chunks done of all
    evaluate(Recorder(), batcher, SPEC, "float64", OtherRank())
    assert capsys.readouterr().err == ""  # ranks other than 0 show nothing


class OtherRank(Solo):
    """One process standing in for a rank other than 0: it reads every stream but must not draw."""

    is_main = False


def test_eval_keys_skip_step_0_bound_each_evaluation_and_add_a_full_one_at_the_end(corpus, tmp_path):
    cfg = make_config([f"data.path={corpus}", *TINY, "train.max_iters=20", "train.eval_chars=100",
                       "train.eval_at_start=false", "train.final_full_eval=true"])
    result = trainer.train(cfg, tmp_path / "run")
    events = EventAccumulator(str(result.run_dir / VAL_DIR)).Reload()
    assert [e.step for e in events.Scalars("loss")] == [10, 20]
    (full,) = events.Scalars("loss_full")
    summary = json.loads((result.run_dir / "result.json").read_text())
    assert full.step == 20 and full.value == np.float32(summary["val_loss_full"])
    assert summary["val_loss_full"] != summary["val_loss"]  # 100 chars against the whole split

    # the figures are those of the final weights, over the first 100 val chars and over all of them
    backend, vocab = restore_backend(load_checkpoint(result.run_dir / "ckpt_last.npz"), cfg)
    _, full_val = trainer.make_batchers(cfg, load_ids(cfg.data)[1])
    spec = spec_of(cfg.model, len(vocab))
    assert evaluate(backend, full_val, spec, "float32") == summary["val_loss_full"]
    assert evaluate(backend, full_val.head(100), spec, "float32") == summary["val_loss"]
