import errno
import os
import pickle
import random
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from charrnn.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint, restore_backend, save_checkpoint
from charrnn.errors import UserError
from charrnn.model import init_params, model_spec
from charrnn.monitor.dashboard import VAL_DIR
from charrnn.training.resume import Progress
from tests.conftest import REPO, TINY, assert_user_error, make_config, run_scripts


def checkpoint():
    return Checkpoint(params=init_params(model_spec("rnn", 7, 5), "uniform", 0.01, 0, "float32"),
                      optimizer_state={"step": np.array(3), "sum/Whh": np.ones((5, 5))},
                      vocab=np.arange(97, 104, dtype=np.int32), config={"model": {"hidden_size": 5}, "train": {"batch_size": 2}},
                      progress={"step": 3, "best_val": 1.5},
                      state={"h": np.zeros((1, 2, 5), np.float32)})


def test_round_trip(tmp_path):
    path = tmp_path / "ckpt.npz"
    original = checkpoint()
    save_checkpoint(path, original)
    loaded = load_checkpoint(path)
    for k, v in original.params.items():
        assert np.array_equal(loaded.params[k], v) and loaded.params[k].dtype == v.dtype
    assert np.array_equal(loaded.optimizer_state["sum/Whh"], np.ones((5, 5)))
    assert loaded.config == original.config and loaded.progress == original.progress
    assert np.array_equal(loaded.vocab, original.vocab)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temporary file left behind


def test_a_checkpoint_that_cannot_be_written_is_named_and_the_old_one_kept(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ckpt.npz", checkpoint())
    saved = (tmp_path / "ckpt.npz").read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(UserError, match=f"cannot write checkpoint {tmp_path / 'ckpt.npz'}: No space left on device; "
                                        f"what was there before is as it was"):
        save_checkpoint(tmp_path / "ckpt.npz", checkpoint())
    assert (tmp_path / "ckpt.npz").read_bytes() == saved
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temporary file left behind


def test_run_directory_resolves_to_best_then_last(tmp_path):
    save_checkpoint(tmp_path / "ckpt_last.npz", checkpoint())
    assert resolve_checkpoint(str(tmp_path)).name == "ckpt_last.npz"
    save_checkpoint(tmp_path / "ckpt_best.npz", checkpoint())
    assert resolve_checkpoint(str(tmp_path)).name == "ckpt_best.npz"


class Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').touch()",))


def test_pickled_payload_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.npz"
    np.savez(path, format=np.array("charrnn-checkpoint-v1"), config=np.array([Boom()], dtype=object),
             vocab=np.arange(3), state=np.array("{}"), h=np.zeros(1))
    with pytest.raises(UserError, match="not a readable charrnn checkpoint .it holds pickled objects, which are never"):
        load_checkpoint(path)
    raw = tmp_path / "evil.pt"
    raw.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(UserError, match="is not a charrnn checkpoint \\(not an .npz archive\\)"):
        load_checkpoint(raw)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, checkpoint())
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="is not a readable charrnn checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(UserError, match="not a charrnn checkpoint"):
        load_checkpoint(foreign)


def test_a_crafted_torch_save_file_is_refused_without_running(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.pt"
    torch.save({"format": "charrnn-checkpoint-v1", "payload": Boom()}, path)
    with pytest.raises(UserError, match="not a charrnn checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_every_damaged_byte_is_refused_or_harmless(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, checkpoint())
    data = path.read_bytes()
    damaged = tmp_path / "damaged.npz"
    refused = 0
    for i in range(0, len(data), 7):  # a stride prime to the zip's field sizes reaches every kind of byte
        damaged.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
        try:
            loaded = load_checkpoint(damaged)
        except UserError:
            refused += 1
            continue
        # what still loads is byte for byte what was saved (the damage hit zip metadata nobody reads)
        assert np.array_equal(loaded.params["Whh"], checkpoint().params["Whh"]), i
    assert refused > len(data) / 7 / 2


@pytest.mark.parametrize("entry,value,message", [
    ("vocab", np.array([99, 98, 97], np.int32), "vocabulary is not an ascending list"),
    ("param/Whh", np.zeros((5, 5), np.int64), "not floating point: Whh"),
    ("config", np.array("{not json"), "config or progress is not a JSON object"),
    ("progress", np.array("[1, 2]"), "config or progress is not a JSON object"),
])
def test_damaged_entries_are_refused(tmp_path, entry, value, message):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, checkpoint())
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez(path, **{**arrays, entry: value})
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    ckpt = checkpoint()
    cfg = make_config(["model.hidden_size=6"])
    with pytest.raises(UserError, match="do not fit model.hidden_size=6, model.cell=rnn, model.num_layers=1 and "
                                        "its 7-character vocabulary"):
        restore_backend(ckpt, cfg)
    with pytest.raises(UserError, match=r"weights \(Wxh \(5, 7\), Whh \(5, 5\), bh \(5,\)\) do not fit "
                                        r"model.hidden_size=5, model.cell=lstm"):
        restore_backend(ckpt, make_config(["model=lstm", "model.hidden_size=5"]))
    with pytest.raises(UserError, match=r"weights \(Whh_1 missing, Wxh_1 missing, bh_1 missing\) do not fit "
                                        r"model.hidden_size=5, model.cell=rnn, model.num_layers=2"):
        restore_backend(ckpt, make_config(["model.num_layers=2", "model.hidden_size=5"]))
    backend, vocab = restore_backend(ckpt, make_config(["model.hidden_size=5", "model.dtype=float64"]))
    assert backend.export_params()["Whh"].dtype == np.float64 and vocab.decode(range(7)) == "abcdefg"


def bad_files(tmp_path):
    """A corrupt, a truncated and a foreign checkpoint."""
    good = tmp_path / "good.npz"
    save_checkpoint(good, checkpoint())
    data = good.read_bytes()
    corrupt, truncated, foreign = tmp_path / "corrupt.npz", tmp_path / "truncated.npz", tmp_path / "foreign.npz"
    corrupt.write_bytes(data[:1000] + bytes(64) + data[1064:])
    truncated.write_bytes(data[: len(data) // 2])
    np.savez(foreign, weights=np.ones(3))
    return {"corrupt": (corrupt, "not a readable charrnn checkpoint"),
            "truncated": (truncated, "not a readable charrnn checkpoint"),
            "foreign": (foreign, "not a charrnn checkpoint")}


def test_entry_points_refuse_bad_checkpoints_in_one_line_with_exit_2(tmp_path):
    cases = [(message, cmd) for name, (path, message) in bad_files(tmp_path).items()
             for cmd in (["sample.py", f"checkpoint={path}"],
                         ["train.py", f"train.resume={path}", f"hydra.run.dir={tmp_path / name}"])]
    for (message, _), proc in zip(cases, run_scripts(*(cmd for _, cmd in cases))):
        assert_user_error(proc, message)
        assert proc.stdout == "", proc.args


def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint(corpus, tmp_path):
    """Each run evaluates and checkpoints at every step, so the kill often lands inside a write."""
    runs = []
    for i in range(3):
        run_dir = tmp_path / f"run{i}"
        cmd = [sys.executable, "train.py", f"data.path={corpus}", *TINY, "model.hidden_size=64",
               "train.eval_interval=1", "train.max_iters=1000000", f"hydra.run.dir={run_dir}"]
        runs.append((subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), run_dir))
    rng = random.Random()
    for proc, run_dir in runs:
        while not (run_dir / "ckpt_last.npz").exists():
            assert proc.poll() is None
            time.sleep(0.01)
        delay = rng.uniform(0, 0.5)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        ckpt = load_checkpoint(run_dir / "ckpt_last.npz")
        progress = Progress.from_checkpoint(ckpt, run_dir, "float32", ("h",))
        # every step evaluates and saves, so the file is whole at one step: the one it evaluated
        assert progress.eval_step == progress.step and progress.state[0].shape == (1, 4, 64), delay
        load_checkpoint(resolve_checkpoint(str(run_dir)))
        # both TensorBoard writers' files load, a record cut short at the end left out; the val curve has
        # every evaluation it flushed: the ones before the checkpoint's, or its too (saved first, then shown)
        EventAccumulator(str(run_dir)).Reload()
        val_events = EventAccumulator(str(run_dir / VAL_DIR)).Reload()
        val = [e.step for e in val_events.Scalars("loss")] if "loss" in val_events.Tags()["scalars"] else []
        assert val == list(range(len(val))) and len(val) in (progress.step, progress.step + 1), (val, delay)


FIXTURES = REPO / "tests" / "fixtures"


def test_a_checkpoint_written_before_cells_and_layers_samples_and_resumes_as_it_did(tmp_path):
    """v1_rnn_ckpt.npz was written by the code before LSTM/GRU and layers (h saved as (B, H), no
    model.cell / num_layers / dropout in its config); its .json holds what that code sampled and
    the validation loss it reached when resumed, which today's code must reproduce exactly."""
    import json
    import shutil

    expected = json.loads((FIXTURES / "v1_rnn_ckpt.json").read_text())
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(FIXTURES / "v1_rnn_ckpt.npz", run_dir / "ckpt_last.npz")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 120, encoding="utf-8")
    ckpt = load_checkpoint(run_dir / "ckpt_last.npz")
    assert "cell" not in ckpt.config["model"] and ckpt.state["h"].shape == (1, 4, 8)
    sampled, resumed = run_scripts(
        ["sample.py", f"checkpoint={run_dir / 'ckpt_last.npz'}", "length=40", "seed=3"],
        ["train.py", f"train.resume={run_dir}", "train.max_iters=30", f"data.path={corpus}"])
    assert sampled.returncode == 0 and sampled.stdout == expected["sample"], sampled.stderr
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["steps"] == 30 and result["val_loss"] == expected["resumed_val_loss"]
