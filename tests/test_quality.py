"""python -m charrnn.tools.quality: presets and stock torch.nn models on the same data and clock, in one table."""

import json
import subprocess
import sys

from charrnn.tools import quality
from tests.conftest import REPO

TINY_PRESET = ["model.hidden_size=16", "model.num_layers=1", "train.batch_size=4", "train.seq_length=8",
               "train.eval_chars=2000"]


def test_presets_and_stock_models_train_on_one_clock_into_one_table(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(quality.STOCK, "hidden_size", 16)
    monkeypatch.setitem(quality.STOCK, "num_layers", 1)
    monkeypatch.setitem(quality.STOCK, "batch_size", 4)
    monkeypatch.setitem(quality.STOCK, "seq_length", 8)
    out = tmp_path / "quality.json"
    quality.main(["--seconds", "0.3", "--presets", "gru_5min", "--stock", "gru", "--data", str(corpus),
                  "--set", *TINY_PRESET, "--json", str(out), "--markdown", str(tmp_path / "quality.md")])
    report = json.loads(out.read_text())
    preset, stock = report["rows"]
    assert (preset["name"], stock["name"]) == ("gru_5min", "stock nn.GRU")
    for row in (preset, stock):
        assert row["budget_seconds"] == 0.3 and row["steps"] > 0 and row["train_seconds"] >= 0.3
        assert 0 < row["val_nats"] < 4.0 and abs(row["val_bpc"] - row["val_nats"] / 0.6931471805599453) < 1e-9
    assert stock["gap_to_best_stock"] == 0.0
    assert preset["gap_to_best_stock"] == preset["val_nats"] - stock["val_nats"]
    printed = capsys.readouterr().out.splitlines()
    table = printed[next(k for k, line in enumerate(printed) if line.startswith("host: ")):]
    assert table[1:3] == ["| model | budget (s) | seed | threads | val nats/char | val bits/char | steps | gap to best stock |",
                          "|---|---|---|---|---|---|---|---|"]
    assert table[3].startswith("| gru_5min | 0.3 | 1337 |") and table[4].startswith("| stock nn.GRU | 0.3 | 1337 |")
    assert (tmp_path / "quality.md").read_text().splitlines()[2:] == table[1:]


def test_a_mistake_in_its_arguments_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "charrnn.tools.quality", "--stock-lr", "-1"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: argument --stock-lr: must be a positive learning rate, got '-1' (--help lists the options)"]
