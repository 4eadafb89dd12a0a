"""A checkpoint is untrusted input: what it holds is data, never evaluated; what it may hold is known
before anything is read (entry names, and sizes from the zip headers, against what its model needs);
every field is bounded; and a path that is not a checkpoint file is named for what it is."""

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from charrnn.checkpoint import load_checkpoint, save_checkpoint
from charrnn.errors import UserError
from charrnn.training import loop as trainer
from charrnn.start import run_config
from tests.conftest import HANG, REPO, compose_raw
from tests.runtree import assert_clean, finish, script, train_in_process, write_corpus

SECRET = "canary-5f3a9c"  # in the environment of every script below; no file or line may ever show it


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finished")
    corpus = write_corpus(tmp)
    return corpus, train_in_process(corpus, tmp / "run")


def edited_run(finished, directory, edit):
    """A copy of the finished run's checkpoints in directory, each with edit(checkpoint) applied."""
    directory.mkdir()
    for name in ("ckpt_last.npz", "ckpt_best.npz"):
        ckpt = load_checkpoint(finished[1] / name)
        edit(ckpt)
        save_checkpoint(directory / name, ckpt)
    return directory


def everything_under(path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink())


def test_interpolations_in_a_checkpoint_are_text_never_resolved(finished, tmp_path):
    """${oc.env:...} would read the environment, ${unique_dir:...} would make a directory: in a checkpoint
    they are a config's characters, kept as they are by sample.py and by a resume, which writes them back
    unchanged into its config and checkpoints."""
    made = tmp_path / "made_by_a_checkpoint"
    names = {"env": "${oc.env:SECRET_TOKEN}", "resolver": f"${{unique_dir:{made}}}",
             "escaped": "\\${oc.env:SECRET_TOKEN}\\", "nested": "a${oc.decode:${oc.env:SECRET_TOKEN}}b"}

    def with_name(value):
        def edit(ckpt):
            ckpt.config["data"]["name"] = value
        return edit
    runs = {case: edited_run(finished, tmp_path / case, with_name(value)) for case, value in names.items()}
    init = edited_run(finished, tmp_path / "init", lambda c: c.config["model"].update(init="${oc.env:SECRET_TOKEN}"))
    env = {"SECRET_TOKEN": SECRET}
    *samples, bad_init, resume = finish(
        *(script("sample.py", f"checkpoint={d}", "length=20", env=env) for d in [*runs.values(), init]),
        script("train.py", f"train.resume={runs['env']}", "train.max_iters=22", env=env))
    for proc in [*samples, resume]:
        assert_clean(proc)
        assert SECRET not in proc.stdout + proc.stderr
    assert bad_init.returncode == 2 and SECRET not in bad_init.stderr
    assert "${oc.env:SECRET_TOKEN}" in bad_init.stderr  # the value, as the checkpoint holds it
    os.environ["SECRET_TOKEN"] = SECRET
    try:
        resumed(runs["resolver"] / "ckpt_last.npz", "train.max_iters=22")  # the same, in this process
    finally:
        del os.environ["SECRET_TOKEN"]
    assert not made.exists()
    assert SECRET.encode() not in everything_under(tmp_path)
    for case in ("env", "resolver"):
        continued = load_checkpoint(tmp_path / case / "ckpt_last.npz")
        assert continued.progress["step"] == 22 and continued.config["data"]["name"] == names[case]


def resumed(path, *overrides):
    """train.py's path into a resume, in process: the config from the checkpoint, then the run."""
    args = [f"train.resume={path}", *overrides]
    return trainer.train(run_config(compose_raw(args), args), path.parent / "unused")


# -- sizes: known from the zip headers before anything is read ------------------------------------------

class Zeros:
    """An .npy entry of zeros, written compressed: a few hundred kB on disk for hundreds of MB in memory."""

    def __init__(self, descr: str, shape: tuple):
        self.header = {"descr": descr, "fortran_order": False, "shape": shape}

    def write(self, f) -> None:
        np.lib.format.write_array_header_1_0(f, self.header)
        left = int(np.prod(self.header["shape"])) * np.dtype(self.header["descr"]).itemsize
        block = bytes(1 << 24)
        while left:
            f.write(block[:left])
            left -= min(left, len(block))


def rewritten(source, destination, replace=(), add=()):
    """source's entries copied into a new .npz, those named in replace (name: bytes or Zeros) replaced and
    the (name, content) pairs of add appended, a name already there a second time if so."""
    replace = dict(replace)
    with zipfile.ZipFile(source) as zin, \
            zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zout:
        entries = [(info.filename, replace.get(info.filename, zin.read(info))) for info in zin.infolist()]
        for name, content in [*entries, *add]:
            with zout.open(name, "w", force_zip64=True) as f:
                content.write(f) if isinstance(content, Zeros) else f.write(content)
    return destination


def npy(array) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)
    return out.getvalue()


def sample_measured(checkpoint) -> tuple[int, str, float]:
    """sample.py's exit code, stderr and peak memory in MB."""
    proc = subprocess.Popen([sys.executable, "sample.py", f"checkpoint={checkpoint}", "length=5"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), err, usage.ru_maxrss / 1024


BIG = 1 << 27  # 128 MiB of zeros: a hundred kB compressed


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zipfile's, as the case is written
def test_a_small_file_cannot_make_a_load_read_more_than_its_model_needs(finished, tmp_path):
    """An entry charrnn never writes, a weight or state entry larger than its model's shapes, a config or
    progress text of hundreds of MB, an entry twice: each refused in one line, before its data is read."""
    last = finished[1] / "ckpt_last.npz"
    cases = {
        "an unknown entry": (rewritten(last, tmp_path / "junk.npz", add=[("junk.npy", Zeros("<f8", (BIG // 8,)))]),
                             "junk"),
        "a weight larger than its shape": (
            rewritten(last, tmp_path / "why.npz", replace={"param/Why.npy": Zeros("<f4", (BIG // 4 // 16, 16))}),
            "param/Why"),
        "the carried state larger than its shape": (
            rewritten(last, tmp_path / "h.npz", replace={"h.npy": Zeros("<f4", (1, BIG // 4 // 16, 16))}), "h"),
        "a huge progress text": (rewritten(last, tmp_path / "progress.npz",
                                           replace={"progress.npy": Zeros("<U1", (BIG // 4,))}), "progress"),
        "an entry twice": (rewritten(last, tmp_path / "twice.npz", add=[("config.npy", npy(np.array("{}")))]),
                           "config"),
    }
    baseline = sample_measured(last)
    assert baseline[0] == 0, baseline[1]
    for case, (path, entry) in cases.items():
        code, err, peak_mb = sample_measured(path)
        assert code == 2 and "Traceback" not in err, (case, err)
        (line,) = err.strip().splitlines()
        assert line.startswith("error: ") and entry in line, (case, line)
        assert peak_mb < baseline[2] + 100, (case, peak_mb, baseline[2])


# -- every field bounded ----------------------------------------------------------------------------

def set_progress(path: str, value):
    def edit(ckpt):
        target = ckpt.progress
        *parents, leaf = path.split(".")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return edit


@pytest.mark.parametrize("field", ["step", "epoch", "eval_step", "monitor.skipped_steps", "monitor.interval.n",
                                   "monitor.interval.chars", "monitor.interval.clipped"])
def test_every_count_in_a_checkpoint_is_bounded(finished, tmp_path, field):
    run_dir = edited_run(finished, tmp_path / "run", set_progress(field, 10**30))
    first = field.split(".")[0]
    with pytest.raises(UserError, match=rf"progress\.{first} must be .*a whole number from -?[01] to 2\*\*53"):
        resumed(run_dir / "ckpt_last.npz", f"data.path={finished[0]}", "train.max_iters=30")


def test_a_step_beyond_any_counter_is_one_line_from_the_command_line(finished, tmp_path):
    run_dir = edited_run(finished, tmp_path / "run", set_progress("step", 10**30))
    (proc,) = finish(script("train.py", f"train.resume={run_dir}", "train.max_iters=30"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "progress.step" in line


# -- a path that is not a checkpoint file -------------------------------------------------------------

def test_a_path_that_is_not_a_checkpoint_file_is_named_for_what_it_is(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    cases = {"/dev/zero": "is not a regular file", str(fifo): "is not a regular file",
             str(tmp_path / "loop_a"): "Too many levels of symbolic links",
             str(tmp_path / "missing.npz"): "does not exist"}
    commands = [("sample.py", f"checkpoint={path}") for path in cases]
    commands += [("train.py", f"train.resume={path}") for path in list(cases)[1:3]]
    for command, proc in zip(commands, finish(*(script(*c) for c in commands), timeout=HANG)):
        path = command[1].split("=", 1)[1]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("error: ") and path in line and cases[path] in line, line


def test_the_loader_reads_only_the_entries_it_knows(finished, tmp_path):
    """The same refusal in process: nothing but what save_checkpoint writes."""
    path = rewritten(finished[1] / "ckpt_last.npz", tmp_path / "extra.npz", add=[("notes.npy", npy(np.arange(3)))])
    with pytest.raises(UserError, match=r"holds an entry charrnn does not write \(notes\)"):
        load_checkpoint(path)
    assert json.loads(str(np.load(finished[1] / "ckpt_last.npz")["progress"]))["step"] == 20
