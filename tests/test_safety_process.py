"""What happens around a training process never costs its work: output that fails (a reader gone, a full
device, a closed descriptor), every terminating signal a user or a scheduler sends (saved promptly, even
inside an evaluation, and the conventional exit code), a sweep's failing job (the others finish), and
torchrun's ranks ending."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from charrnn.checkpoint import load_checkpoint
from tests.conftest import HANG, REPO, TINY
from tests.runtree import (RUN_FILES, TENSORBOARD, assert_clean, finish, run_files, script, train_in_process,
                           write_corpus)

LONG = [*TINY, "train.max_iters=1000000", "train.eval_interval=50"]
UNBUFFERED = {"PYTHONUNBUFFERED": "1"}  # each line reaches the pipe as it is printed, as on a terminal


def saved_step(run_dir) -> int:
    return load_checkpoint(run_dir / "ckpt_last.npz").progress["step"]


def wait_for(condition, proc, what: str, timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, (what, proc.returncode)
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)


def lines_about_output(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines() if "output" in line]


# -- output that fails -------------------------------------------------------------------------------

def head(command: list[str], run_dir) -> tuple[int, str]:
    """`| head -n 2`: two lines read, then the pipe closed."""
    proc = script(*command, env=UNBUFFERED)
    assert all(proc.stdout.readline() for _ in range(2))
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=HANG), err


def to_full(command: list[str], run_dir) -> tuple[int, str]:
    """`> /dev/full`."""
    with open("/dev/full", "w") as full:
        (proc,) = finish(script(*command, stdout=full))
    return proc.returncode, proc.stderr


def closed(command: list[str], run_dir) -> tuple[int, str]:
    """`>&-`: no descriptor 1 at all."""
    (proc,) = finish(subprocess.Popen(["bash", "-c", 'exec "$@" >&-', "bash", sys.executable, *command], cwd=REPO,
                                      stderr=subprocess.PIPE, text=True))
    # nothing meant for stdout landed in a file that took over its descriptor
    assert (run_dir / "config.yaml").read_text().startswith(("seed:", "#"))
    return proc.returncode, proc.stderr


def both_full(command: list[str], run_dir) -> tuple[int, None]:
    """`> /dev/full 2>&1`: nowhere to say anything."""
    with open("/dev/full", "w") as full:
        (proc,) = finish(script(*command, stdout=full, stderr=full))
    return proc.returncode, None


@pytest.mark.parametrize("output", [head, to_full, pytest.param(closed, marks=pytest.mark.slow),
                                    pytest.param(both_full, marks=pytest.mark.slow)])
def test_training_outlives_its_output(corpus, tmp_path, output):
    """Training goes on to its end, saved, with exit code 0 and one line on stderr where stderr can still
    be written; the line names the output, not hydra.run.dir."""
    run_dir = tmp_path / "run"
    code, err = output(["train.py", f"data.path={corpus}", *TINY, "train.max_iters=40", f"hydra.run.dir={run_dir}"],
                       run_dir)
    assert code == 0, err
    assert saved_step(run_dir) == 40
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 40
    if err is not None:
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert len(lines_about_output(err)) == 1 and "hydra.run.dir" not in err, err


def test_sample_py_says_in_one_line_when_its_output_fails(finished_run):
    """sample.py's output is its work: a closed stdout or a full device ends in one line and exit code 2
    (naming the output, not a config key); a reader that stops early (`| head`) ends it quietly."""
    with open("/dev/full", "w") as full:
        closed = subprocess.Popen(["bash", "-c", 'exec "$@" >&-', "bash", sys.executable, "sample.py",
                                   f"checkpoint={finished_run}", "length=50"], cwd=REPO, stderr=subprocess.PIPE,
                                  text=True)
        to_full = script("sample.py", f"checkpoint={finished_run}", "length=50", stdout=full)
        head = script("sample.py", f"checkpoint={finished_run}", "length=1000000")
        head.stdout.read(10)
        head.stdout.close()
        head_err = head.stderr.read()
        head.wait(timeout=HANG)
        closed, to_full = finish(closed, to_full)
    for proc, message in ((closed, "standard output is closed"), (to_full, "No space left on device")):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line and "hydra" not in line, line
    assert head.returncode == 0 and head_err == "", head_err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finished_run")
    return train_in_process(write_corpus(tmp), tmp / "run")


# -- signals ---------------------------------------------------------------------------------------

# What a closed terminal, a user and the schedulers send (SLURM's --signal and time limit, SGE's
# s_rt/s_cpu, LSF, PBS, HTCondor): each one saves, then ends the process with 128 + its number.
SCHEDULERS = [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGXCPU, signal.SIGQUIT]


@pytest.mark.parametrize("signals", [pytest.param([signal.SIGHUP], id="SIGHUP"),
                                     pytest.param(SCHEDULERS, id="the-rest", marks=pytest.mark.slow)])
def test_every_terminating_signal_saves_and_ends_with_its_exit_code(corpus, tmp_path, signals):
    procs = {sig: script("train.py", f"data.path={corpus}", *LONG, f"hydra.run.dir={tmp_path / sig.name}",
                         stdout=subprocess.DEVNULL, start_new_session=True)
             for sig in signals}
    seen = {}
    for sig, proc in procs.items():
        wait_for(lambda: (tmp_path / sig.name / "ckpt_last.npz").exists() and saved_step(tmp_path / sig.name) >= 50,
                 proc, "a checkpoint after step 50")
        seen[sig] = saved_step(tmp_path / sig.name)
        proc.send_signal(sig)
    for sig, proc in procs.items():
        _, err = proc.communicate(timeout=HANG)
        assert proc.returncode == 128 + sig, (sig.name, proc.returncode, err)
        assert "Traceback" not in err, err
        last = err.strip().splitlines()[-1]
        step = saved_step(tmp_path / sig.name)
        assert last.startswith(f"{sig.name}: saved step {step} to "), last
        assert step >= seen[sig], (step, seen[sig])


@pytest.mark.slow  # a second run of SIGHUP's test above, its terminal gone
def test_a_closed_terminal_saves_even_with_nowhere_to_say_so(corpus, tmp_path):
    """SIGHUP after the terminal went away: stdout and stderr both fail, the steps since the last
    evaluation are saved all the same."""
    proc = script("train.py", f"data.path={corpus}", *LONG, f"hydra.run.dir={tmp_path / 'run'}")
    wait_for(lambda: (tmp_path / "run" / "ckpt_last.npz").exists() and saved_step(tmp_path / "run") >= 50, proc,
             "a checkpoint after step 50")
    seen = saved_step(tmp_path / "run")
    proc.stdout.close()
    proc.stderr.close()
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=HANG) == 128 + signal.SIGHUP
    assert saved_step(tmp_path / "run") >= seen


@pytest.mark.slow  # trains through two evaluations after the ignored signal
def test_a_signal_ignored_when_training_starts_stays_ignored(corpus, tmp_path):
    """nohup ignores SIGHUP for its command: training goes on through one, and stops at the next SIGTERM."""
    proc = script("train.py", f"data.path={corpus}", *LONG, f"hydra.run.dir={tmp_path / 'run'}",
                  stdout=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_for(lambda: (tmp_path / "run" / "ckpt_last.npz").exists() and saved_step(tmp_path / "run") >= 50, proc,
             "a checkpoint after step 50")
    proc.send_signal(signal.SIGHUP)
    after_hup = saved_step(tmp_path / "run")
    wait_for(lambda: saved_step(tmp_path / "run") >= after_hup + 100, proc, "two more evaluations after SIGHUP")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 128 + signal.SIGTERM, err


@pytest.fixture(scope="module")
def long_val(tmp_path_factory):
    """A corpus whose val split takes minutes to evaluate one character at a time in one stream."""
    path = tmp_path_factory.mktemp("long_val") / "random.txt"
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz .,\n", np.uint8)
    path.write_bytes(letters[np.random.default_rng(0).integers(0, len(letters), 2_000_000)].tobytes())
    return path


SLOW_EVAL = ["data.val_fraction=0.5", "train.eval_chars=null", "train.eval_batch_size=1", "train.seq_length=1",
             "model.hidden_size=16", "train.batch_size=4"]


def read_until(stream, text: str, proc) -> None:
    """Read stream until text has been written to it."""
    seen = ""
    while text not in seen:
        char = stream.read(1)
        assert char or proc.poll() is None, seen
        seen = seen[-200:] + char


def in_the_validation_pass(long_val, corpus, run_dir) -> subprocess.Popen:
    """Step 0's evaluation over a long val split; the evaluation bar shows once it has run for 2 s."""
    proc = script("train.py", f"data.path={long_val}", *SLOW_EVAL, "train.max_iters=100", f"hydra.run.dir={run_dir}",
                  stdout=subprocess.DEVNULL)
    read_until(proc.stderr, "evaluating", proc)
    return proc


def in_the_sample(long_val, corpus, run_dir) -> subprocess.Popen:
    """Step 0's sample, endless; the startup line is printed just before step 0's (short) evaluation."""
    proc = script("train.py", f"data.path={corpus}", *TINY, "train.max_iters=100", "train.sample_length=1000000000",
                  f"hydra.run.dir={run_dir}", env=UNBUFFERED)
    read_until(proc.stdout, "run directory", proc)
    time.sleep(1.0)
    return proc


def in_the_final_full_evaluation(long_val, corpus, run_dir) -> subprocess.Popen:
    proc = script("train.py", f"data.path={long_val}", *SLOW_EVAL, "train.eval_chars=100", "train.max_iters=2",
                  "train.eval_interval=2", "train.final_full_eval=true", f"hydra.run.dir={run_dir}", env=UNBUFFERED)
    read_until(proc.stdout, "step 2: val", proc)
    read_until(proc.stderr, "evaluating", proc)
    return proc


@pytest.mark.parametrize("moment", [pytest.param(in_the_validation_pass, marks=pytest.mark.slow),
                                    pytest.param(in_the_sample, marks=pytest.mark.slow),
                                    in_the_final_full_evaluation])
def test_a_signal_during_an_evaluation_stops_it_and_saves(long_val, corpus, tmp_path, moment):
    """A long validation pass, an endless sample, the final full evaluation: SIGTERM interrupts each, the
    state between two steps is saved (an interrupted evaluation is left for a resume to repeat), and the
    process ends with 128 + SIGTERM, never 0."""
    run_dir = tmp_path / "run"
    proc = moment(long_val, corpus, run_dir)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err)
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("SIGTERM: saved step"), err
    progress = load_checkpoint(run_dir / "ckpt_last.npz").progress
    if moment is in_the_final_full_evaluation:
        assert progress["step"] == progress["eval_step"] == 2
    else:
        assert (progress["step"], progress["eval_step"]) == (0, -1)  # step 0's evaluation was not finished


# -- sweeps ----------------------------------------------------------------------------------------

def sweep(corpus, cwd, *args):
    return finish(script("train.py", "-m", f"data.path={corpus}", *TINY, "train.max_iters=5", *args, cwd=cwd),
                  timeout=HANG)[0]


def assert_two_of_three_jobs_finished(proc, sweep_dir) -> None:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "seed=-1" in errors[0] and "seed must not be negative" in errors[0], errors
    results = sorted(sweep_dir.glob("*/result.json"))
    assert [json.loads(p.read_text())["steps"] for p in results] == [5, 5], results
    assert [p.parent.name.split("_")[0] for p in results] == ["0", "2"]


def test_a_failing_job_leaves_the_rest_of_the_sweep_to_finish(corpus, tmp_path):
    proc = sweep(corpus, tmp_path, "seed=1,-1,2")
    (sweep_dir,) = (tmp_path / "runs" / "multirun").iterdir()
    assert_two_of_three_jobs_finished(proc, sweep_dir)


@pytest.mark.slow  # three processes start torch
def test_a_joblib_sweep_keeps_going_and_writes_one_directory(corpus, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = sweep(corpus, tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,-1,2")
    (sweep_dir,) = (tmp_path / "runs" / "multirun").iterdir()  # one sweep, one directory
    assert_two_of_three_jobs_finished(proc, sweep_dir)


# -- torchrun --------------------------------------------------------------------------------------

@pytest.mark.slow  # two ranks start torch and join a process group
def test_two_ranks_end_cleanly_and_leave_one_run_directory(corpus, tmp_path):
    (proc,) = finish(script("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            str(REPO / "train.py"), f"data.path={corpus}", *TINY, "train.max_iters=10", cwd=tmp_path),
                     timeout=HANG)
    assert_clean(proc)
    assert "terminate called" not in proc.stderr
    (label,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "latest"]
    (run_dir,) = label.iterdir()
    assert not run_dir.name.endswith("-2") and run_files(run_dir) == RUN_FILES | TENSORBOARD
