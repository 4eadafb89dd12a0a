import os
import signal
import subprocess
import sys
from pathlib import Path

# One BLAS and torch thread for every test and every script a test runs, set before NumPy or torch is
# imported: the models here are tiny, and on a 2-core machine shared with other work a second thread
# made some tests 8x slower (waiting for a core) while speeding none up.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

# A shell that runs the suite as a background job (`python -m pytest &`, a CI step run so) starts it with
# Ctrl-C ignored, and every script a test starts would inherit that: the tests of Ctrl-C need it to do
# here what it does in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from charrnn.gradcheck.tutor import sandbox  # noqa: E402
from charrnn.monitor import grad_flow  # noqa: E402
from charrnn.config import compose, to_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Seconds a test waits for a script before it calls it hung. It catches hangs only: the slowest script a
# default test runs takes under a minute on a slow host under load, and no verdict may depend on speed.
HANG = 600


def compose_raw(overrides=(), config_name="train"):
    return compose(config_name, overrides)


def make_config(overrides=()):
    return to_config(compose_raw(overrides))


def pytest_terminal_summary(terminalreporter, config):
    """The order's seed, printed even under -q: a failure that depends on the order can be replayed."""
    seed = config.getoption("randomly_seed", None) if config.pluginmanager.has_plugin("randomly") else None
    if seed is not None:
        terminalreporter.write_line(f"tests ran in a random order; replay it with: "
                                    f"python -m pytest -q --randomly-seed={seed}")


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu are skipped, saying why, where torch sees no CUDA device."""
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if gpu_tests:
        import torch

        if not torch.cuda.is_available():
            for item in gpu_tests:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device; torch sees none"))


@pytest.fixture(autouse=True)
def blank_gradient_flow_pictures(request, monkeypatch):
    """matplotlib takes longer to draw the gradient-flow picture than a tiny run takes to evaluate: tests
    not marked `pictures` get a blank one (tests/test_monitor.py draws real ones)."""
    if "pictures" not in request.keywords:
        monkeypatch.setattr(grad_flow, "picture", lambda lagged, step: np.zeros((4, 8, 3), np.uint8))


@pytest.fixture(autouse=True)
def no_process_outlives_its_test(monkeypatch):
    """A process a test started and did not see end (an assertion failed, a wait timed out) is killed with
    the test: a train.py told to run a million steps would otherwise hold a core for the rest of the
    session, and every later test and timing would run on the one left. The BPTT tutor's worker is the
    exception: a module's tests share one (tests/test_tutor.py's `box`), its Sandbox kills it when the
    module ends, and it ends by itself when pytest does (its requests' pipe closes)."""
    started = []

    class Tracked(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", Tracked)
    yield
    for proc in started:
        if proc.poll() is None and proc.args[1:2] != [str(sandbox.WORKER)]:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Encoded corpora go to one directory for the session (conf/data's cache_dir reads the variable, and
    the scripts the tests run inherit it), never beside a shared corpus."""
    os.environ["CHARRNN_DATA_CACHE"] = str(tmp_path_factory.mktemp("data_cache"))
    yield
    del os.environ["CHARRNN_DATA_CACHE"]


@pytest.fixture
def corpus(tmp_path):
    """A small repetitive corpus (learnable in a few steps) written to a temp file; returns its path."""
    text = "the quick brown fox jumps over the lazy dog.\n" * 120
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


# Tiny sizes: each run finishes in well under a second of compute.
TINY = ["model.hidden_size=16", "train.batch_size=4", "train.seq_length=8", "train.eval_interval=10",
        "train.log_interval=5", "train.sample_length=20", "train.warmup_iters=0"]


def run_scripts(*commands: list[str], timeout: float = HANG) -> list[subprocess.CompletedProcess]:
    """Run each command (the arguments after `python`, from the repository root) all at once: most of
    each is Python starting up, so together they take little longer than one."""
    procs = [subprocess.Popen([sys.executable, *cmd], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for cmd in commands]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def assert_user_error(proc: subprocess.CompletedProcess, message: str, alone: bool = True) -> None:
    """Exit code 2, no traceback, and the message as the last line of stderr (alone: the only line)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], (message, proc.stderr)
    if alone:
        assert len(lines) == 1, proc.stderr


class StepClock:
    """The training loop's clock (Trainer.clock) where every step takes `seconds` (a power of two, so the
    sums are exact): read twice a step, before it and after. It counts on, never runs out."""

    def __init__(self, seconds: float):
        self.seconds, self.now, self.reads = seconds, 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:
            self.now += self.seconds
        return self.now
