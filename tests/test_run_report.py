"""What a run tells its user, driven as a user drives it: train.py's last lines and progress bar, the
TEXT cards and the epoch curve in TensorBoard, and sample.py's info=true (a run on the clock, and its
continue command, are tests/test_schedule.py's)."""

import json
import math
import re
import shlex

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from charrnn.checkpoint import load_checkpoint
from charrnn.data import load_ids
from charrnn.training.loop import make_batchers
from tests.conftest import TINY, make_config, run_scripts

STEPS = 20
LOG2E = 1 / math.log(2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of train.py on a small corpus, at once (most of each is Python starting up): "finished",
    20 steps; "unfinished", 20 steps of an 80-step schedule (a run on the clock is tests/test_schedule.py's,
    on a fake clock). {name: (CompletedProcess, run directory)}, and the corpus."""
    tmp = tmp_path_factory.mktemp("report")
    corpus = tmp / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 120, encoding="utf-8")
    overrides = {
        "finished": [f"train.max_iters={STEPS}"],
        "unfinished": [f"train.max_iters={STEPS}", "train.lr_decay_iters=80"],
    }
    procs = run_scripts(*[["train.py", f"data.path={corpus}", *TINY, *more, f"hydra.run.dir={tmp / name}"]
                          for name, more in overrides.items()])
    for proc in procs:
        assert proc.returncode == 0, proc.stderr
    return {name: (proc, tmp / name) for name, proc in zip(overrides, procs)}, corpus


@pytest.fixture(scope="module")
def finished(runs):
    """The 20-step run: its CompletedProcess, its directory and its corpus."""
    named, corpus = runs
    return (*named["finished"], corpus)


def summary(proc) -> list[str]:
    return proc.stdout.strip().splitlines()[-3:]


def commands(line: str) -> tuple[str, str]:
    """The sample and continue commands of a summary's last line."""
    found = re.fullmatch(r"sample: (python sample\.py \S+) {3}continue: (python train\.py .+?)( {3}\(.*\))?", line)
    assert found, line
    return found.group(1), found.group(2)


def paste(command: str, *more: str):
    """Run a command as printed (python ... as the test's interpreter), from the repository root."""
    [proc] = run_scripts([*shlex.split(command)[1:], *more])
    return proc


def test_a_finished_run_ends_with_its_val_figures_its_directory_and_what_to_do_next(finished):
    proc, run_dir, _ = finished
    result = json.loads((run_dir / "result.json").read_text())
    best, last = result["best_val_loss"], result["val_loss"]
    first, second, third = summary(proc)
    assert first == (f"best val {best:.4f} nats/char ({best * LOG2E:.4f} bits/char); "
                     f"last val {last:.4f} nats/char ({last * LOG2E:.4f} bits/char) at step {STEPS}")
    assert second == f"run directory: {run_dir}"
    sample_command, continue_command = commands(third)
    assert sample_command == f"python sample.py checkpoint={run_dir}"
    assert continue_command == f"python train.py train.resume={run_dir} train.max_iters={2 * STEPS}"
    assert "schedule" not in third   # it ran its cosine to the end
    # both paste as they are
    sampled = paste(sample_command, "length=30")
    assert sampled.returncode == 0 and len(sampled.stdout) == 31, sampled.stderr


def test_the_printed_continue_command_trains_on(finished, tmp_path):
    proc, run_dir, _ = finished
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in run_dir.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    _, continue_command = commands(summary(proc)[2])
    resumed = paste(continue_command.replace(str(run_dir), str(copy)))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((copy / "result.json").read_text())["steps"] == 2 * STEPS
    assert summary(resumed)[1] == f"run directory: {copy}"


def test_the_bar_shows_the_last_evaluation_and_says_its_loss_is_smoothed(finished):
    proc, run_dir, _ = finished
    last = json.loads((run_dir / "result.json").read_text())["val_loss"]
    assert re.findall(r"val_bpc=([\d.]+)", proc.stderr)[-1] == f"{last * LOG2E:.3f}"
    assert "smoothed_loss=" in proc.stderr and not re.search(r"[ ,]loss=", proc.stderr)


def test_the_epoch_counts_passes_over_the_train_split_on_the_bar_and_in_tensorboard(finished):
    proc, run_dir, corpus = finished
    cfg = make_config([f"data.path={corpus}", *TINY])
    chunks = len(make_batchers(cfg, load_ids(cfg.data)[1])[0])
    events = EventAccumulator(str(run_dir)).Reload()
    epochs = [(e.step, e.value) for e in events.Scalars("epoch")]
    assert epochs == [(step, pytest.approx(step / chunks)) for step in range(5, STEPS + 1, 5)]
    assert f"epoch={STEPS / chunks:.2f}" in proc.stderr


def text_cards(run_dir, tag: str) -> list[tuple[int, str]]:
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0}).Reload()
    return [(e.step, e.tensor_proto.string_val[0].decode()) for e in events.Tensors(f"{tag}/text_summary")]


def test_text_holds_the_command_line_and_resolved_config_and_each_sample_with_its_settings(finished):
    _, run_dir, corpus = finished
    [(step, card)] = text_cards(run_dir, "config")
    assert step == 0
    assert "train.py" in card and f"train.max_iters={STEPS}" in card and f"hydra.run.dir={run_dir}" in card
    assert "hidden_size: 16" in card and f"path: {corpus}" in card
    samples = text_cards(run_dir, "sample")
    assert [step for step, _ in samples] == [0, 10, 20]
    for step, card in samples:
        assert re.match(rf"val \d\.\d{{4}} nats/char · drawn with sample\.py `temperature=1\.0 length=20 'prime=\"\"' "
                        rf"seed=1337{step:09d}`", card), card
    # the last one's arguments, pasted after sample.py and its checkpoint, draw it again
    arguments, _, sample = re.match(r"val \S+ nats/char · drawn with sample\.py `(.*?)`\n\n(`{3,})\n(.*)\n\2\n",
                                    samples[-1][1], re.S).groups()
    [proc] = run_scripts(["sample.py", f"checkpoint={run_dir / 'ckpt_last.npz'}", *shlex.split(arguments)])
    assert proc.returncode == 0 and proc.stdout == sample + "\n", (proc.stderr, proc.stdout, sample)


def test_info_shows_a_checkpoint_s_step_val_loss_and_model_without_sampling(finished):
    _, run_dir, _ = finished
    ckpt = load_checkpoint(run_dir / "ckpt_best.npz")
    best = ckpt.progress
    [proc] = run_scripts(["sample.py", f"checkpoint={run_dir}", "info=true"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3, proc.stdout
    assert lines[0].startswith(f"{run_dir / 'ckpt_best.npz'}: step {best['step']}; ")
    assert f"val {best['val_loss']:.4f} nats/char ({best['val_loss'] * LOG2E:.4f} bits/char)" in lines[0]
    assert lines[1].startswith(f"model: rnn, 1 layer of 16 units, a vocabulary of {len(ckpt.vocab)} characters")


def test_a_run_that_ends_before_its_schedule_does_says_so_and_how_to_finish_it(runs):
    proc, run_dir = runs[0]["unfinished"]
    last = summary(proc)[2]
    _, continue_command = commands(last)
    assert continue_command == f"python train.py train.resume={run_dir} train.max_iters=80"
    assert re.search(r"\(the learning-rate schedule stopped 25% of the way: lr [\d.e+-]+, not yet "
                     r"train\.min_lr=0\.0001\)$", last), last


def test_info_tells_a_resumed_runs_starts_and_their_budgets(corpus, tmp_path):
    from charrnn.start import run_config
    from charrnn.training import loop as trainer
    from tests.conftest import compose_raw

    run_dir = tmp_path / "run"
    trainer.train(make_config([f"data.path={corpus}", *TINY, "train.max_iters=10"]), run_dir)
    for more in (["train.max_iters=15", "train.max_seconds=600"], ["train.max_iters=20"]):
        args = [f"train.resume={run_dir}", *more]
        trainer.train(run_config(compose_raw(args), args), tmp_path / "unused")
    [fresh, resumed] = run_scripts(["sample.py", f"checkpoint={tmp_path / 'run' / 'ckpt_last.npz'}", "info=true"],
                                   ["sample.py", f"checkpoint={run_dir}", "info=true"])
    lines = resumed.stdout.strip().splitlines()
    assert resumed.returncode == 0 and len(lines) == 4, resumed.stdout
    assert lines[2].startswith("trained: 20 steps")
    assert lines[3] == ("history: 3 starts: steps 0-10 (started, train.max_iters=10); steps 10-15 (resumed, "
                        "train.max_iters=15, train.max_seconds=600); steps 15-20 (resumed, train.max_iters=20, "
                        "train.max_seconds=600)")   # a resume keeps the budgets it does not override
    assert fresh.stdout == resumed.stdout.replace(str(run_dir / "ckpt_best.npz"), str(run_dir / "ckpt_last.npz"))
