import time

import numpy as np
import pytest

from charrnn.tools import bench


def test_bench_measures_every_implementation_and_formats_a_row():
    rows = bench.run([(8, 1, 4), (8, 2, 4)], seconds=0.01, memory=False)
    assert "per_char" in rows[0] and "per_char" not in rows[1]  # the per-character loop is B=1 only
    for row in rows:
        for name in ("numpy", "torch", "torch_nn", "torch_loop"):
            assert row[name]["chars_per_sec"] > 0 and row[name]["steps"] >= 5
        assert row["roofline_chars_per_sec"] > 0
        assert bench.format_row(row).split()[:3] == [str(row["H"]), str(row["B"]), str(row["T"])]


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1)])
def test_gated_cells_are_measured_against_their_stock_torch_module(cell, layers):
    row = bench.run([(8, 2, 4)], seconds=0.01, cell=cell, layers=layers, memory=False)[0]
    assert {"numpy", "torch", "torch_nn"} <= row.keys() and not {"torch_loop", "per_char"} & row.keys()
    assert all(row[name]["chars_per_sec"] > 0 for name in ("numpy", "torch", "torch_nn"))
    assert "nn." + cell.upper() in bench.header(cell)


def test_min_char_rnn_reference_learns():
    """The per-character reference is the original algorithm: on one fixed chunk it must learn."""
    step = bench.per_char_step(16, 1, 8, np.random.default_rng(0), bench.model_spec("rnn", bench.V, 16))
    first = step()
    for _ in range(200):
        last = step()
    assert first > 8 * np.log(bench.V) * 0.99 and last < 0.2 * first


def test_peak_memory_counts_what_the_implementation_allocates():
    small = bench.peak_memory_mb("numpy", 64, 4, 8, "rnn", 1)
    large = bench.peak_memory_mb("numpy", 512, 64, 64, "lstm", 1)
    assert 0 <= small < large  # H=512: weights, Adam state and (T, B, H) buffers come to well over 10 MB
    assert large > 10


def test_a_turn_drops_its_first_step_unless_steps_outlast_a_turn():
    """Short steps: each turn's first step pays for the previous implementation's leftovers and is not
    counted. Steps longer than a turn: every step after the first turn counts."""
    calls = {"fast": 0, "slow": 0}

    def fast():
        calls["fast"] += 1

    def slow():
        calls["slow"] += 1
        time.sleep(0.02)

    result = bench.measure_interleaved({"fast": fast, "slow": slow}, chars=1, seconds=0.1, block=0.01)
    turns = calls["slow"] - 3 - result["slow"]["steps"]
    assert turns == 1                                             # only the first turn's first step
    assert calls["fast"] - 3 - result["fast"]["steps"] >= 3      # one dropped per turn, several turns
