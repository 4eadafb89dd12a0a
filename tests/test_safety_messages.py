"""One line, and the right one: sizes no machine holds, a prime that is not text, a full disk while a
run resumes, the developer tools' arguments, and the settings that would silently do something else."""

import hashlib
import resource
import shutil
import subprocess
import sys

import pytest

from tests.conftest import HANG, REPO, TINY, assert_user_error, run_scripts
from tests.runtree import finish, script, train_in_process, write_corpus


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Two finished runs: on text, and on bytes that are not all UTF-8 under data.encoding=bytes."""
    tmp = tmp_path_factory.mktemp("finished")
    corpus = write_corpus(tmp)
    binary = tmp / "binary.bin"
    binary.write_bytes(b"the quick brown fox\xff jumps over the lazy dog.\n" * 120)
    return (corpus, train_in_process(corpus, tmp / "run"),
            train_in_process(binary, tmp / "bytes", "data.encoding=bytes"))


@pytest.mark.parametrize("override", ["model.hidden_size=4611686018427387904", "model.num_layers=4611686018427387904",
                                      "model.hidden_size=1099511627776"])
def test_a_model_no_machine_holds_is_one_line(finished, tmp_path, override):
    (proc,) = run_scripts(["train.py", f"data.path={finished[0]}", *TINY, override,
                           f"hydra.run.dir={tmp_path / 'run'}"])
    assert_user_error(proc, override.split("=")[0])
    assert not (tmp_path / "run").exists()


def test_initial_weights_that_blow_up_are_blamed_on_the_initialisation(finished, tmp_path):
    """Step 0's evaluation, before any update: the learning rate played no part, and no checkpoint exists."""
    (proc,) = run_scripts(["train.py", f"data.path={finished[0]}", *TINY, "model.init=normal", "model.init_std=1e30",
                           f"hydra.run.dir={tmp_path / 'run'}"])
    assert_user_error(proc, "model.init_std", alone=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert "optim.lr" not in last and "ckpt_last.npz" not in last, last


@pytest.mark.parametrize("override,message", [
    ("backend.device=cuda", "backend.device=cuda"),  # the NumPy backend computes on the CPU only
    ("hydra.job.chdir=true", "hydra.job.chdir"),
])
def test_a_setting_that_would_silently_do_something_else_is_refused(finished, tmp_path, override, message):
    (proc,) = run_scripts(["train.py", "backend=numpy", f"data.path={finished[0]}", *TINY, "train.max_iters=2",
                           override, f"hydra.run.dir={tmp_path / 'run'}"])
    assert_user_error(proc, message)


def test_a_prime_that_is_not_text_is_one_line_or_skipped(finished):
    """A shell passes raw bytes ($'prime="\\xff"'), which Python holds as lone surrogates: refused in one
    line, dropped with skip_unknown=true, and read as the bytes they are by a byte-level model."""
    _, run_dir, bytes_run = finished
    sample = [sys.executable, "sample.py", "length=20"]
    procs = [subprocess.run([*sample, f"checkpoint={checkpoint}".encode(), b'prime="e\xff"', *extra], cwd=REPO,
                            capture_output=True, timeout=HANG)
             for checkpoint, extra in ((run_dir, []), (run_dir, [b"skip_unknown=true"]), (bytes_run, []))]
    refused, skipped, as_bytes = procs
    assert refused.returncode == 2 and b"Traceback" not in refused.stderr, refused.stderr
    (line,) = refused.stderr.decode().strip().splitlines()
    assert line.startswith("error: ") and "\\xff" in line and "skip_unknown=true" in line, line
    assert skipped.returncode == 0 and skipped.stdout.startswith(b"e"), skipped.stderr
    (note,) = skipped.stderr.decode().strip().splitlines()
    assert "\\xff" in note
    # shown escaped, as drawn text is
    assert as_bytes.returncode == 0 and as_bytes.stdout.startswith(b"e\\xff"), as_bytes


def test_a_full_disk_while_resuming_is_one_line_and_adds_no_empty_file(finished, tmp_path):
    """The file size limit of a quota: TensorBoard's writer thread and the checkpoint write fail; one line,
    no traceback, the run's checkpoints as they were and no empty file left in it."""
    _, run_dir, _ = finished
    resumed = shutil.copytree(run_dir, tmp_path / "run")
    checkpoints = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in resumed.glob("ckpt_*.npz")}
    for limit in (1, 6000):
        (proc,) = finish(script("train.py", f"train.resume={resumed}", "train.max_iters=60",
                                f"hydra.run.dir={tmp_path / 'unused'}",
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot write ") and "File too large" in last, last
        assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in resumed.glob("ckpt_*.npz")} == checkpoints
        assert [p.name for p in resumed.iterdir() if p.is_file() and p.stat().st_size == 0] == []


def tool_cases(tmp_path) -> dict[str, tuple[list[str], str]]:
    """A developer tool's arguments: (the command after `python`, what its one line names)."""
    missing = tmp_path / "missing" / "out.json"
    return {
        "bench: a shape of two numbers": (["-m", "charrnn.tools.bench", "--shapes", "1,2"], "--shapes"),
        "bench: a shape that is not numbers": (["-m", "charrnn.tools.bench", "--shapes", "a,b,c"], "--shapes"),
        "bench: a zero in a shape": (["-m", "charrnn.tools.bench", "--shapes", "0,1,1"], "--shapes"),
        "bench: negative seconds": (["-m", "charrnn.tools.bench", "--seconds", "-1"], "--seconds"),
        "bench: seconds not a number": (["-m", "charrnn.tools.bench", "--seconds", "nan"], "--seconds"),
        "bench: no layers": (["-m", "charrnn.tools.bench", "--layers", "0"], "--layers"),
        "bench: json into a directory": (["-m", "charrnn.tools.bench", "--json", str(tmp_path)], "--json"),
        "bench: json into a missing directory": (["-m", "charrnn.tools.bench", "--json", str(missing)], "--json"),
        "bench_distributed: no rounds": (["-m", "charrnn.tools.bench_distributed", "--rounds", "0"], "--rounds"),
        "bench_distributed: negative steps": (["-m", "charrnn.tools.bench_distributed", "--steps", "-1"], "--steps"),
        "scaling: an unknown unit": (["-m", "charrnn.tools.scaling", "--sizes", "10XB"], "--sizes"),
        "scaling: a size of zero": (["-m", "charrnn.tools.scaling", "--sizes", "0"], "--sizes"),
        "scaling: negative steps": (["-m", "charrnn.tools.scaling", "--steps", "-1"], "--steps"),
        "scaling: json into a directory": (["-m", "charrnn.tools.scaling", "--json", str(tmp_path)], "--json"),
    }


def test_the_tools_refuse_bad_arguments_in_one_line_before_measuring(tmp_path):
    cases = tool_cases(tmp_path)
    for name, proc in zip(cases, run_scripts(*(command for command, _ in cases.values()))):
        assert proc.stdout == "", (name, proc.stdout)  # nothing measured first
        assert_user_error(proc, cases[name][1])
