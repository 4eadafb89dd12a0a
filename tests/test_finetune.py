"""Fine-tuning, driven as a user drives it: train.py train.init_from=CKPT on another corpus starts from the
checkpoint's weights with a fresh optimizer and schedule, in a new run directory; characters the
checkpoint lacks get new rows or are refused, as train.new_chars says."""

import hashlib

import numpy as np
import pytest

from charrnn.checkpoint import load_checkpoint
from charrnn.model import init_params, model_spec
from tests.conftest import TINY, assert_user_error, run_scripts

SOURCE_TEXT = "the quick brown fox jumps over the lazy dog.\n"
# TINY without its model size: a fine-tuned run takes its model from the checkpoint
SETTINGS = [o for o in TINY if not o.startswith("model.")]


def hashes(directory) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 20-step run on SOURCE_TEXT: its directory."""
    tmp = tmp_path_factory.mktemp("finetune")
    corpus = tmp / "source.txt"
    corpus.write_text(SOURCE_TEXT * 120, encoding="utf-8")
    [proc] = run_scripts(["train.py", f"data.path={corpus}", *TINY, "train.max_iters=20", f"hydra.run.dir={tmp / 'source'}"])
    assert proc.returncode == 0, proc.stderr
    return tmp / "source"


NEW_CHARS = SOURCE_TEXT * 100 + "ÉTÉ! ça va?\n" * 20


@pytest.fixture(scope="module")
def tuned(source, tmp_path_factory):
    """Fine-tuning runs from source, all at once (most of each is Python starting up): a corpus with new
    characters refused and added (a learning rate of 1e-9 for one step leaves every weight where it
    started), one within the vocabulary, and three that cannot start. {name: (CompletedProcess, run
    directory)}, and the source's file hashes before them."""
    tmp = tmp_path_factory.mktemp("tuned")
    corpora = {}
    # "within": a corpus that uses some of the source's characters and no others
    for name, text in (("new", NEW_CHARS), ("within", "the lazy dog sleeps.\n" * 250)):
        corpora[name] = tmp / f"{name}.txt"
        corpora[name].write_text(text, encoding="utf-8")
    runs = {
        "refused": (corpora["new"], []),
        "added": (corpora["new"], ["train.new_chars=add", "optim.lr=1e-9", "train.max_iters=1", "seed=7"]),
        "within": (corpora["within"], ["train.max_iters=10"]),
        "with resume": (corpora["within"], [f"train.resume={source}"]),
        "wider": (corpora["within"], ["model.hidden_size=32"]),
        "lstm": (corpora["within"], ["model=lstm"]),
    }
    before = hashes(source)
    procs = run_scripts(*[["train.py", f"data.path={corpus}", *SETTINGS, f"train.init_from={source}",
                           f"hydra.run.dir={tmp / name}", *overrides] for name, (corpus, overrides) in runs.items()])
    return {name: (proc, tmp / name) for name, proc in zip(runs, procs)}, before


def test_a_corpus_with_new_characters_is_refused_with_their_count_and_the_choice(source, tuned):
    runs, before = tuned
    proc, run_dir = runs["refused"]
    assert_user_error(proc, "the corpus has 5 characters that the checkpoint's vocabulary lacks ('!?TÉç'); "
                            "pass train.new_chars=add to give them new rows")
    assert not run_dir.exists() and hashes(source) == before


def test_new_characters_get_the_rows_a_fresh_model_would_draw_and_the_rest_keep_the_checkpoint_s(source, tuned):
    runs, before = tuned
    proc, run_dir = runs["added"]
    assert proc.returncode == 0, proc.stderr
    origin = load_checkpoint(source / "ckpt_best.npz")
    tuned = load_checkpoint(run_dir / "ckpt_last.npz")
    old, new = list(origin.vocab), list(tuned.vocab)
    assert new == sorted(set(old) | set(map(ord, NEW_CHARS)))
    kept = [new.index(c) for c in old]
    added = [i for i, c in enumerate(new) if c not in old]
    fresh = init_params(model_spec("rnn", len(new), 16), "uniform", 0.01, 7, "float32")
    close = dict(atol=1e-6, rtol=0)
    np.testing.assert_allclose(tuned.params["Wxh"][:, kept], origin.params["Wxh"], **close)
    np.testing.assert_allclose(tuned.params["Why"][kept], origin.params["Why"], **close)
    np.testing.assert_allclose(tuned.params["by"][kept], origin.params["by"], **close)
    np.testing.assert_allclose(tuned.params["Whh"], origin.params["Whh"], **close)
    np.testing.assert_allclose(tuned.params["Wxh"][:, added], fresh["Wxh"][:, added], **close)
    np.testing.assert_allclose(tuned.params["Why"][added], fresh["Why"][added], **close)
    # a fresh optimizer and schedule, and a record of where the weights came from
    assert int(tuned.optimizer_state["step"]) == 1 and tuned.progress["step"] == 1
    assert tuned.progress["init_from"] == {"path": str(source / "ckpt_best.npz"), "step": origin.progress["step"],
                                        "val_loss": origin.progress["val_loss"]}
    [info] = run_scripts(["sample.py", f"checkpoint={run_dir}", "info=true"])
    assert f"fine-tuned from {source / 'ckpt_best.npz'} (step {origin.progress['step']})" in info.stdout, info.stderr
    assert hashes(source) == before


def test_a_corpus_within_the_vocabulary_fine_tunes_as_it_is_in_a_new_directory_and_resumes(source, tuned):
    runs, before = tuned
    proc, run_dir = runs["within"]
    assert proc.returncode == 0, proc.stderr
    tuned = load_checkpoint(run_dir / "ckpt_last.npz")
    assert np.array_equal(tuned.vocab, load_checkpoint(source / "ckpt_best.npz").vocab)  # more than the corpus's
    assert tuned.config["model"]["hidden_size"] == 16 and tuned.progress["step"] == 10
    assert hashes(source) == before
    [resumed] = run_scripts(["train.py", f"train.resume={run_dir}", "train.max_iters=20"])
    assert resumed.returncode == 0, resumed.stderr
    tuned = load_checkpoint(run_dir / "ckpt_last.npz")
    assert tuned.progress["step"] == 20 and tuned.progress["init_from"]["path"] == str(source / "ckpt_best.npz")


@pytest.mark.parametrize("name,message", [
    ("with resume", "train.init_from and train.resume exclude each other"),
    ("wider", "model.hidden_size=32 does not fit the weights of"),
    ("lstm", "model.cell=lstm does not fit the weights of"),
])
def test_what_cannot_fine_tune_is_one_line(tuned, name, message):
    runs, _ = tuned
    assert_user_error(runs[name][0], message)
