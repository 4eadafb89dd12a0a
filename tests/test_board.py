import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import tensorboard

from charrnn.backends.interface import Gradients
from charrnn.monitor import Monitor
from charrnn.monitor.dashboard import VAL_DIR
from tests.conftest import HANG, REPO, assert_user_error, run_scripts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=HANG) as response:
        return response.read().decode()


def test_the_board_opens_custom_scalars_unsmoothed_with_every_picture(tmp_path):
    """13 evaluations: TensorBoard alone keeps 10 pictures of a tag. runs/latest, a link to the run, is not a
    second run, and the run's val curves (tiny/val, a run to TensorBoard) are no HPARAMS row of their own but
    the row's val metrics; the page the board serves itself has the headers TensorBoard 3.0 requires, so
    TensorBoard warns of nothing; Ctrl-C ends it at once in one line."""
    params = {"Whh": np.eye(4), "Why": np.ones((3, 4))}
    with Monitor(tmp_path / "runs" / "tiny", 120, 0, 10, "norm") as monitor:
        for step in range(0, 121, 10):
            monitor.evaluation(step, 3.0 - step / 100, "sample", params, Gradients(params, np.ones(8)), 1.0, 1.0)
        monitor.hparams({"model": {"hidden_size": 16}})
    (tmp_path / "runs" / "latest").symlink_to("tiny")
    port = free_port()
    board = subprocess.Popen([sys.executable, "-m", "charrnn.board", str(tmp_path / "runs"), f"--port={port}",
                              "--host=127.0.0.1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        start = board.stdout.readline().split(": ", 1)[1].strip()
        assert start == f"http://127.0.0.1:{port}/data/plugin/charrnn/start"
        hang = time.monotonic() + HANG
        while "tiny" not in get(f"http://127.0.0.1:{port}/data/runs") and time.monotonic() < hang:
            time.sleep(0.25)   # TensorBoard reads the log directory in a thread of its own
        assert list(json.loads(get(f"http://127.0.0.1:{port}/data/plugins_listing")))[0] == "custom_scalars"
        with urllib.request.urlopen(start, timeout=HANG) as response:
            page = response.read().decode()
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'sha256-")
        assert 'localStorage.setItem("_ignoreYOutliers", "false")' in page
        assert 'location.replace("../../../#custom_scalars&_smoothingWeight=0")' in page
        images = json.loads(get(f"http://127.0.0.1:{port}/data/plugin/images/images?run=tiny&tag=grad_flow/by_lag"))
        assert [image["step"] for image in images] == list(range(0, 121, 10))
        get(f"http://127.0.0.1:{port}/")
        assert json.loads(get(f"http://127.0.0.1:{port}/data/runs")) == ["tiny", f"tiny/{VAL_DIR}"]
        asked = {"startIndex": 0, "sliceSize": 100, "allowedStatuses": ["STATUS_SUCCESS"],
                 "colParams": [{"metric": {"group": VAL_DIR, "tag": "loss"}}]}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/data/plugin/hparams/session_groups",
                                         json.dumps(asked).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=HANG) as response:
            rows = json.loads(response.read())["sessionGroups"]
        assert [row["name"] for row in rows] == ["tiny"]
        val = {m["name"]["tag"]: m["value"] for m in rows[0]["metricValues"] if m["name"]["group"] == VAL_DIR}
        assert val["loss"] == pytest.approx(1.8) and val["run/best_loss"] == 1.0
    finally:
        board.send_signal(signal.SIGINT)
        _, err = board.communicate(timeout=HANG)
    assert board.returncode == 128 + signal.SIGINT and err.strip() == "SIGINT: TensorBoard stopped", err


def test_the_board_names_a_missing_directory_in_one_line(tmp_path):
    [proc] = run_scripts(["-m", "charrnn.board", str(tmp_path / "nothing")])
    assert_user_error(proc, f"{tmp_path / 'nothing'} is not a directory of runs; train one first")


def test_the_boards_mistakes_each_end_in_one_line(tmp_path):
    (tmp_path / "runs").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy, unknown, bad = run_scripts(
            ["-m", "charrnn.board", str(tmp_path / "runs"), f"--port={port}", "--host=127.0.0.1"],
            ["-m", "charrnn.board", str(tmp_path / "runs"), "--nonsense"],
            ["-m", "charrnn.board", str(tmp_path / "runs"), "--port=abc"])
    [version] = run_scripts(["-m", "charrnn.board", str(tmp_path / "runs"), "--version_tb"])
    assert version.returncode == 0 and version.stdout.strip() == tensorboard.__version__, version
    assert_user_error(busy, f"TensorBoard could not bind to port {port}, it was already in use; pass another with "
                            f"--port=N")
    assert_user_error(unknown, "unrecognized arguments: --nonsense; python -m charrnn.board --help says what it takes")
    assert_user_error(bad, "argument --port: invalid value: 'abc'; python -m charrnn.board --help")


def test_a_board_whose_output_is_full_says_so_in_one_line(tmp_path):
    (tmp_path / "runs").mkdir()
    with open("/dev/full", "w") as full:
        board = subprocess.Popen([sys.executable, "-m", "charrnn.board", str(tmp_path / "runs"),
                                  f"--port={free_port()}", "--host=127.0.0.1"], cwd=REPO, stdout=full,
                                 stderr=subprocess.PIPE, text=True)
        _, err = board.communicate(timeout=HANG)
    assert board.returncode == 2 and err.strip().splitlines() == [
        "error: cannot write the board's address to standard output: No space left on device; run it with its "
        "output on a terminal, a pipe or a file"], err


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler of its own for the signal (/proc/PID/status, SigCgt)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_while_the_board_starts_is_one_line(tmp_path, signum):
    """The signal comes once the board handles SIGTERM, while it imports TensorBoard (seconds) or, on a fast
    host, a moment later: either way one line, the signal's exit code, and no process left."""
    (tmp_path / "runs").mkdir()
    board = subprocess.Popen([sys.executable, "-m", "charrnn.board", str(tmp_path / "runs"),
                              f"--port={free_port()}", "--host=127.0.0.1"], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    while board.poll() is None and not catches(board.pid, signal.SIGTERM):
        time.sleep(0.01)
    board.send_signal(signum)
    _, err = board.communicate(timeout=HANG)
    assert board.returncode == 128 + signum and err.strip() == f"{signal.Signals(signum).name}: TensorBoard stopped", err
    with pytest.raises(ProcessLookupError):
        os.killpg(board.pid, 0)   # its session: nothing it started is left
