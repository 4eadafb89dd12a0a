import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np

from charrnn.backends.interface import Gradients
from charrnn.monitor import Monitor
from tests.conftest import REPO, assert_user_error, run_scripts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_the_board_opens_custom_scalars_unsmoothed_with_every_picture(tmp_path):
    """13 evaluations: TensorBoard alone keeps 10 pictures of a tag."""
    params = {"Whh": np.eye(4), "Why": np.ones((3, 4))}
    with Monitor(tmp_path / "runs" / "tiny", 120, 0, 10, "norm") as monitor:
        for step in range(0, 121, 10):
            monitor.evaluation(step, 1.0, "sample", params, Gradients(params, np.ones(8)), 1.0, 1.0)
    port = free_port()
    board = subprocess.Popen([sys.executable, "-m", "charrnn.board", str(tmp_path / "runs"), f"--port={port}",
                              "--host=127.0.0.1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        start = board.stdout.readline().split(": ", 1)[1].strip()
        assert start == f"http://127.0.0.1:{port}/data/plugin/charrnn/start"
        for _ in range(120):
            if "tiny" in get(f"http://127.0.0.1:{port}/data/runs"):
                break
            time.sleep(0.25)
        assert list(json.loads(get(f"http://127.0.0.1:{port}/data/plugins_listing")))[0] == "custom_scalars"
        page = get(start)
        assert 'localStorage.setItem("_ignoreYOutliers", "false")' in page
        assert 'location.replace("../../../#custom_scalars&_smoothingWeight=0")' in page
        images = json.loads(get(f"http://127.0.0.1:{port}/data/plugin/images/images?run=tiny&tag=grad_flow/by_lag"))
        assert [image["step"] for image in images] == list(range(0, 121, 10))
    finally:
        board.send_signal(signal.SIGINT)
        _, err = board.communicate(timeout=30)
    assert board.returncode == 0 and "Traceback" not in err, err


def test_the_board_names_a_missing_directory_in_one_line(tmp_path):
    [proc] = run_scripts(["-m", "charrnn.board", str(tmp_path / "nothing")])
    assert_user_error(proc, f"{tmp_path / 'nothing'} is not a directory of runs; train one first")
