import subprocess
import sys

import numpy as np
import pytest

from charrnn import gradcheck
from charrnn.backends.numpy_layers import lstm, rnn
from tests.conftest import HANG, REPO

RNN_PARAMS = ["Wxh", "Whh", "Why", "bh", "by"]


def verdicts(output: str) -> dict[str, list[str]]:
    """The PASS/FAIL words of each table row, by the row's first word: a parameter name, "h_prev",
    a time step, "sum", "t=3" (a row of the state's gradient through time, the last layer's)."""
    return {line.split()[0]: [w for w in line.split() if w in ("PASS", "FAIL")]
            for line in output.splitlines() if line.strip()}


def test_module_runs_and_passes_with_exit_code_0():
    proc = subprocess.run([sys.executable, "-m", "charrnn.gradcheck", "--per-step", "Whh", "--seq-length", "4"],
                          cwd=REPO, capture_output=True, text=True, timeout=HANG)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = verdicts(proc.stdout)
    for name in [*RNN_PARAMS, "h_prev"]:
        assert table[name] == ["PASS", "PASS"], name
    for t in ["0", "1", "2", "3", "sum"]:
        assert table[t] == ["PASS"], t
    assert proc.stdout.splitlines()[-1] == "PASS"


@pytest.mark.parametrize("args,names", [
    (["--cell", "lstm", "--layers", "2", "--dropout", "0.3", "--per-step", "Whh_1"],
     ["Wxh", "Whh", "bh", "Wxh_1", "Whh_1", "bh_1", "Why", "by", "h_prev", "c_prev"]),
    (["--cell", "gru", "--per-step", "bhn"], ["Wxh", "Whh", "bh", "bhn", "Why", "by", "h_prev"]),
    (["--cell", "mingru", "--layers", "3", "--activation", "g", "--residual", "--norm", "rms", "--dropout", "0.3",
      "--per-step", "Wxh_2"], ["Wxh", "bh", "Wxh_1", "bh_1", "Wxh_2", "bh_2", "Why", "by", "h_prev"]),
    (["--cell", "minlstm", "--layers", "2", "--activation", "g", "--norm", "layer", "--per-step", "bh_1"],
     ["Wxh", "bh", "Wxh_1", "bh_1", "Why", "by", "h_prev"]),
])
def test_every_cell_passes_with_every_parameter_and_the_state_through_time(args, names, capsys):
    assert gradcheck.main([*args, "--seq-length", "3"]) == 0
    output = capsys.readouterr().out
    table = verdicts(output)
    for name in names:
        assert table[name] == ["PASS", "PASS"], name
    assert set(name for name in table if name[0] in "Wbh" and name != "h_prev") <= set(names)
    cells = 2 if "lstm" in args else 1                   # dL/dh_t, and the LSTM's dL/dc_t beside it
    assert [table[f"t={t}"] for t in range(3)] == [["PASS"] * cells] * 3
    assert "FAIL" not in output


@pytest.mark.parametrize("args", [["--dtype", "float32"], ["--batch-size", "1", "--seq-length", "1", "--seed", "3"]])
def test_other_sizes_and_float32_pass(args, capsys):
    assert gradcheck.main([*args, "--per-step", "by"]) == 0
    assert "FAIL" not in capsys.readouterr().out


def test_the_parallel_cells_options_are_named_in_the_heading_and_refused_for_the_other_cells(capsys):
    assert gradcheck.main(["--cell", "minlstm", "--activation", "g", "--residual", "--seq-length", "2"]) == 0
    assert capsys.readouterr().out.startswith("gradcheck minlstm --activation g --residual x1 ")
    assert gradcheck.main(["--cell", "gru", "--norm", "rms"]) == 2
    assert capsys.readouterr().err == ("error: --norm rms is an option of the parallel cells, not of --cell gru: leave "
                                       "it out, or use --cell mingru or --cell minlstm\n")


def test_an_unknown_per_step_name_is_refused_naming_the_choices(capsys):
    assert gradcheck.main(["--cell", "gru", "--per-step", "Whh_1"]) == 2
    assert "one of Wxh, Whh, Why, bh, bhn, by" in capsys.readouterr().err


def without_recurrent_weights(real):
    """A cell backward that uses a zero Whh: it forgets the dh_next term, the classic BPTT mistake."""
    def backward(dout, cache, *args):
        cache.W = {**cache.W, "Whh": np.zeros_like(cache.W["Whh"])}
        return real(dout, cache, *args)
    return backward


def test_a_forgotten_dh_next_fails_and_the_per_step_table_shows_where(monkeypatch, capsys):
    monkeypatch.setattr(rnn, "backward", without_recurrent_weights(rnn.backward))
    assert gradcheck.main(["--per-step", "Whh", "--seq-length", "4"]) == 1
    output = capsys.readouterr().out
    table = verdicts(output)
    for name in ("Wxh", "Whh", "bh", "h_prev"):
        assert table[name] == ["FAIL", "FAIL"], name
    for name in ("Why", "by"):
        assert table[name] == ["PASS", "PASS"], name
    assert [table[t] for t in ["0", "1", "2", "3", "sum"]] == [["FAIL"], ["FAIL"], ["FAIL"], ["PASS"], ["FAIL"]]
    # dL/dh_t is right at the last step only, where nothing flows back from later steps
    assert [table[f"t={t}"] for t in range(4)] == [["FAIL"], ["FAIL"], ["FAIL"], ["PASS"]]
    assert output.splitlines()[-1] == "FAIL"


def test_an_lstm_without_its_recurrent_path_fails_but_keeps_its_cell_state_path(monkeypatch, capsys):
    monkeypatch.setattr(lstm, "backward", without_recurrent_weights(lstm.backward))
    assert gradcheck.main(["--cell", "lstm", "--per-step", "Whh", "--seq-length", "4"]) == 1
    table = verdicts(capsys.readouterr().out)
    assert table["Whh"] == ["FAIL", "FAIL"] and table["Why"] == ["PASS", "PASS"]
    assert table["t=3"] == ["PASS", "PASS"]                  # dh, dc at the last step
    assert table["t=0"][0] == "FAIL"                         # dh_0 lacks the path through Whh


def test_an_error_too_small_for_finite_differences_is_caught_by_autograd(monkeypatch, capsys):
    real = rnn.backward

    def slightly_off(dout, cache, *args):
        grads, dx, dstate = real(dout, cache, *args)
        grads["Whh"] *= 1 + 1e-8
        return grads, dx, dstate

    monkeypatch.setattr(rnn, "backward", slightly_off)
    assert gradcheck.main([]) == 1
    table = verdicts(capsys.readouterr().out)
    assert table["Whh"] == ["FAIL", "PASS"]          # vs autograd, vs finite differences
    assert table["Why"] == ["PASS", "PASS"]
