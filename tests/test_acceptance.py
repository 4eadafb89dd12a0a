"""The GPU acceptance command (python -m charrnn.tools.bench --device cuda --check) in every part a CPU
can run, and the bench's fused torch column."""

import itertools

import pytest

from charrnn.tools import acceptance, bench


@pytest.mark.parametrize("bar,passed", [(1e-6, True), (1e6, False)])
def test_the_speed_check_sets_the_fused_backend_against_torch_nn(bar, passed):
    checks = list(acceptance.speed("cpu", shapes=[(8, 2, 4)], seconds=0.01, cells=("lstm", "gru"), bar=bar))
    assert [c.name for c in checks] == ["lstm x1 (8, 2, 4)", "gru x1 (8, 2, 4)"]
    assert [c.passed for c in checks] == [passed, passed]
    assert all(f"(at least {bar:.2f}x)" in c.detail and "chars/s against torch.nn's" in c.detail for c in checks)


def test_the_device_decides_the_shapes_and_the_bar():
    assert acceptance.SPEED_SHAPES["cuda"] == [(512, 64, 64), (1024, 128, 128)] and acceptance.SPEED_BAR["cuda"] == 0.90
    assert acceptance.SPEED_SHAPES["cpu"] == [(256, 64, 64), (512, 64, 64)] and acceptance.SPEED_BAR["cpu"] == 0.95


def test_the_check_prints_every_line_and_fails_if_one_part_fails(monkeypatch):
    def part(passed):
        return lambda device, **kwargs: iter([acceptance.Check("part", "a check", passed, "detail")])

    monkeypatch.setattr(acceptance, "exactness", part(True))
    monkeypatch.setattr(acceptance, "precision", part(True))
    monkeypatch.setattr(acceptance, "speed", part(False))
    lines = []
    assert acceptance.run("cpu", out=lines.append) is False
    assert lines == ["PASS  part       a check                            detail"] * 2 + [
        "FAIL  part       a check                            detail", "SOME CHECKS FAILED"]
    monkeypatch.setattr(acceptance, "speed", part(True))
    lines.clear()
    assert acceptance.run("cpu", out=lines.append) is True and lines[-1] == "all checks passed"


def test_the_bench_times_the_backend_on_its_loop_and_on_the_kernels():
    row = bench.run([(8, 2, 4)], seconds=0.01, cell="lstm", layers=2, memory=False)[0]
    assert {"numpy", "torch", "torch_fused", "torch_nn"} <= row.keys()
    assert all(row[name]["steps"] >= 5 for name in ("torch", "torch_fused"))
    columns = ["|", "numpy", "torch", "t.fused", "nn.LSTM", "t.loop", "per-char", "|"]
    assert bench.header("lstm").split()[3:11] == columns
    cells = bench.format_row(row).split()
    assert cells[6] == f"{row['torch_fused']['chars_per_sec']:,.0f}"
    assert cells[15] == f"{row['torch_fused']['chars_per_sec'] / row['torch_nn']['chars_per_sec']:.2f}"


def test_the_bench_can_time_steps_by_another_clock():
    """--cpu-time times each step by the process's CPU time; any clock given is the one each step is read by."""
    ticks = itertools.count()
    result = bench.measure_interleaved({"a": lambda: None}, chars=8, seconds=0.01, clock=lambda: 2.0 * next(ticks))
    assert result["a"]["chars_per_sec"] == 4.0 and result["a"]["steps"] >= 5
