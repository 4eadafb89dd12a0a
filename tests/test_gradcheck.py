import subprocess
import sys

import numpy as np
import pytest

from charrnn import gradcheck
from charrnn.backends import numpy_backend
from charrnn.model import PARAM_NAMES
from tests.conftest import REPO


def verdicts(output: str) -> dict[str, list[str]]:
    """The PASS/FAIL words of each table row, by the row's first word: a parameter name, "h_prev",
    a time step, "sum"."""
    return {line.split()[0]: [w for w in line.split() if w in ("PASS", "FAIL")]
            for line in output.splitlines() if line.strip()}


def test_module_runs_and_passes_with_exit_code_0():
    proc = subprocess.run([sys.executable, "-m", "charrnn.gradcheck", "--per-step", "Whh", "--seq-length", "4"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = verdicts(proc.stdout)
    for name in [*PARAM_NAMES, "h_prev"]:
        assert table[name] == ["PASS", "PASS"], name
    for t in ["0", "1", "2", "3", "sum"]:
        assert table[t] == ["PASS"], t
    assert proc.stdout.splitlines()[-1] == "PASS"


@pytest.mark.parametrize("args", [["--dtype", "float32"], ["--batch-size", "1", "--seq-length", "1", "--seed", "3"]])
def test_other_sizes_and_float32_pass(args, capsys):
    assert gradcheck.main([*args, "--per-step", "by"]) == 0
    assert "FAIL" not in capsys.readouterr().out


def test_a_forgotten_dh_next_fails_and_the_per_step_table_shows_where(monkeypatch, capsys):
    real = numpy_backend.rnn_backward
    # rnn_backward sends dh_raw_t back to step t-1 through Whh: a zero Whh is a backward pass that
    # forgot the dh_next term, the classic BPTT mistake.
    monkeypatch.setattr(numpy_backend, "rnn_backward",
                        lambda params, cache, *a: real({**params, "Whh": np.zeros_like(params["Whh"])}, cache, *a))
    assert gradcheck.main(["--per-step", "Whh", "--seq-length", "4"]) == 1
    output = capsys.readouterr().out
    table = verdicts(output)
    for name in ("Wxh", "Whh", "bh", "h_prev"):
        assert table[name] == ["FAIL", "FAIL"], name
    for name in ("Why", "by"):
        assert table[name] == ["PASS", "PASS"], name
    assert [table[t] for t in ["0", "1", "2", "3", "sum"]] == [["FAIL"], ["FAIL"], ["FAIL"], ["PASS"], ["FAIL"]]
    assert output.splitlines()[-1] == "FAIL"


def test_an_error_too_small_for_finite_differences_is_caught_by_autograd(monkeypatch, capsys):
    real = numpy_backend.rnn_backward

    def slightly_off(params, cache, *args):
        grads, dh_prev = real(params, cache, *args)
        grads["Why"] *= 1 + 1e-8
        return grads, dh_prev

    monkeypatch.setattr(numpy_backend, "rnn_backward", slightly_off)
    assert gradcheck.main([]) == 1
    table = verdicts(capsys.readouterr().out)
    assert table["Why"] == ["FAIL", "PASS"]          # vs autograd, vs finite differences
    assert table["Whh"] == ["PASS", "PASS"]
