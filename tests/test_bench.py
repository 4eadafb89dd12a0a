import numpy as np
import pytest

from charrnn.tools import bench


TICK = 1 / 1024  # seconds: a power of two, so the clock's sums below are exact


@pytest.fixture
def ticking_clock():
    """A clock advancing one TICK per reading: each step it times (two readings) takes one TICK."""
    now = [0.0]

    def clock():
        now[0] += TICK
        return now[0]
    return clock


def test_bench_measures_every_implementation_and_formats_a_row(ticking_clock):
    rows = bench.run([(8, 1, 4), (8, 2, 4)], seconds=0.01, memory=False, clock=ticking_clock)
    assert "per_char" in rows[0] and "per_char" not in rows[1]  # the per-character loop is B=1 only
    for row in rows:
        chars = row["B"] * row["T"]
        for name in ("numpy", "torch", "torch_fused", "torch_nn", "torch_loop"):
            assert row[name]["chars_per_sec"] == chars / TICK and row[name]["steps"] >= 5, name
        flops_per_char = 6 * 8 * 8 + 6 * 8 * bench.V + 6 * 8 * bench.V  # recurrent, input projection, head
        reps = min(10_000, int(2e7 / (row["B"] * 8 * 8)))
        assert row["roofline_chars_per_sec"] == pytest.approx(reps / TICK * 2 * row["B"] * 8 * 8 / flops_per_char)
        assert bench.format_row(row).split()[:3] == [str(row["H"]), str(row["B"]), str(row["T"])]


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1)])
def test_gated_cells_are_measured_against_their_stock_torch_module(ticking_clock, cell, layers):
    row = bench.run([(8, 2, 4)], seconds=0.01, cell=cell, layers=layers, memory=False, clock=ticking_clock)[0]
    assert {"numpy", "torch", "torch_nn"} <= row.keys() and not {"torch_loop", "per_char"} & row.keys()
    assert all(row[name]["chars_per_sec"] == 8 / TICK for name in ("numpy", "torch", "torch_fused", "torch_nn"))
    assert "nn." + cell.upper() in bench.header(cell)


@pytest.mark.parametrize("cell,classic", [("mingru", "gru"), ("minlstm", "lstm")])
def test_a_parallel_cell_is_measured_beside_the_classic_cell_it_simplifies(ticking_clock, cell, classic):
    row = bench.run_parallel([(8, 2, 4)], seconds=0.01, cell=cell, layers=2, clock=ticking_clock)[0]
    nn = "nn." + classic.upper()
    implementations = {"numpy", "torch loop", "torch scan", f"{classic} numpy", f"{classic} torch", nn}
    assert {k for k, v in row.items() if isinstance(v, dict)} == implementations
    assert all(row[name]["chars_per_sec"] == 8 / TICK for name in implementations)
    assert nn in bench.parallel_header(cell)
    ratios = bench.format_parallel_row(row, classic).split("|")[-1].split()
    assert ratios == ["1.00"] * 4


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
    assert small < large  # H=512: weights, Adam state and (T, B, H) buffers come to well over 10 MB
    assert large > 10


def test_measure_runs_its_seconds_on_the_clock_it_is_given():
    """However fast the host runs Python, a clock of 4 ticks per step gives the same count: the run is
    read on that clock, never on the wall."""
    now = [0.0]

    def step():
        now[0] += 4 * TICK

    result = bench.measure(step, chars=2, seconds=64 * TICK, clock=lambda: now[0])
    assert result == {"chars_per_sec": 2 / (4 * TICK), "steps": 16}


def test_a_turn_drops_its_first_step_unless_steps_outlast_a_turn():
    """Short steps: each turn's first step pays for the previous implementation's leftovers and is not
    counted. Steps longer than a turn: every step after the first turn counts. The clock is one the
    steps move: fast takes 1 tick, slow 16, a turn lasts 8, the whole 0.2 s is 204.8 ticks."""
    now, calls = [0.0], {"fast": 0, "slow": 0}

    def step(name: str, ticks: int):
        def run():
            calls[name] += 1
            now[0] += ticks * TICK
        return run

    result = bench.measure_interleaved({"fast": step("fast", 1), "slow": step("slow", 16)}, chars=1, seconds=0.1,
                                       block=8 * TICK, clock=lambda: now[0])
    # A round: fast's dropped step and 8 counted ones (9 ticks), then slow's one counted step (16 ticks; its
    # first round also drops one). Rounds run while fewer than 204.8 ticks have passed: 41 + 25 * 7 = 216.
    assert result["fast"]["steps"] == 8 * 8 and calls["fast"] == 3 + 8 * 9
    assert result["slow"]["steps"] == 8 and calls["slow"] == 3 + 1 + 8
    assert result["fast"]["chars_per_sec"] == 1 / TICK and result["slow"]["chars_per_sec"] == 1 / (16 * TICK)
