"""What a training budget buys: python -m charrnn.tools.quality [--seconds 60 300] [--presets gru_1min ...]
[--stock lstm gru] [--stock-lr LR] [--seeds N] [--set KEY=VALUE ...] [--data PATH] [--json FILE]
[--markdown FILE].

Trains each preset (conf/experiment/) for each budget on the clock, as `python train.py experiment=NAME
train.max_seconds=S` does, and beside them stock torch.nn models (nn.LSTM or nn.GRU on the one-hot
characters, an nn.Linear head, torch.optim.Adam, clip_grad_norm_) in the same harness: the same corpus and
split, the same streams and chunks with the state carried across them, the same clock (the time of the
training steps alone; evaluation excluded) and the same schedule rules (charrnn.training.schedule), at
STOCK's settings (--stock-lr changes their rate; --set passes overrides to every preset run). Each row is
one run: its last step's val over the whole val split, in nats and bits per character, the steps the
budget bought, and the gap to the best stock model of the same budget (negative: better).

The corpus is Tiny Shakespeare (CHARRNN_TINYSHAKESPEARE or data/), or --data PATH. The host's figures
depend on its cores and load: print them beside the host, as docs/performance.md does.
"""

import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from charrnn.config import compose, to_config
from charrnn.tools.args import Parser, positive_int, positive_number, positive_seconds

LOG2E = 1.0 / math.log(2.0)
# The stock models' settings: the presets' shape (two layers of 256, 32 streams of 64), Adam at 1e-2 (the
# presets' rate, and the stock nn.LSTM's best of the two tried at 60 s: 1.851 nats/char, against 2.253 at the
# 2e-3 of the common PyTorch char-rnn examples; docs/performance.md), a 100-step warm-up and a cosine to 1e-4
# on the clock, gradients clipped to norm 5.
EVAL_CHARS = 20_000  # what a preset's evaluations on the way read
STOCK = dict(hidden_size=256, num_layers=2, batch_size=32, seq_length=64, lr=1e-2, warmup_iters=100,
             min_lr=1e-4, grad_clip=5.0)


def preset_run(preset: str, seconds: float, seed: int, data: list[str], out: Path, overrides=()) -> dict:
    """One preset on the clock, through the trainer itself. Its ten evaluations on the way read the val
    split's first EVAL_CHARS only (they change nothing in training, and the whole split at each would add
    minutes to the benchmark); the figure is its last step's over the whole split (train.final_full_eval)."""
    from charrnn.training.loop import train

    cfg = to_config(compose("train", [f"experiment={preset}", f"train.max_seconds={seconds:g}", f"seed={seed}",
                                      "train.sample_length=0", f"train.eval_chars={EVAL_CHARS}",
                                      "train.final_full_eval=true", *data, *overrides]))
    result = train(cfg, out / f"{preset}-{seconds:g}s-seed{seed}")
    full = json.loads((result.run_dir / "result.json").read_text())["val_loss_full"]
    return row(preset, seconds, seed, full, result.steps, result.train_seconds)


def stock_run(cell: str, seconds: float, seed: int, data: list[str], lr: float | None = None) -> dict:
    """A stock torch.nn model on the clock, on the data and batches the presets train on."""
    import torch
    from torch import nn

    from charrnn.data import load_ids
    from charrnn.training.loop import make_batchers
    from charrnn.training.schedule import Schedule

    s = SimpleNamespace(**{**STOCK, **({"lr": lr} if lr else {})})
    cfg = to_config(compose("train", [*data, f"train.batch_size={s.batch_size}", f"train.seq_length={s.seq_length}"]))
    vocab, ids = load_ids(cfg.data)
    train_batches, val_batches = make_batchers(cfg, ids)
    V = len(vocab)
    torch.manual_seed(seed)
    rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](V, s.hidden_size, s.num_layers)
    head = nn.Linear(s.hidden_size, V)
    params = [*rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=s.lr)
    schedule = Schedule(SimpleNamespace(lr_schedule="cosine", warmup_iters=s.warmup_iters, min_lr=s.min_lr,
                                        lr_decay_iters=10**9, max_seconds=seconds, eval_interval=10**9), s.lr, {})

    def forward(inputs: np.ndarray, state):
        x = nn.functional.one_hot(torch.from_numpy(inputs.T.astype(np.int64)), V).float()   # (T, B, V)
        out, state = rnn(x, state)
        return head(out), state                                                             # (T, B, V)

    def loss_of(logits, targets: np.ndarray):
        ids = torch.from_numpy(targets.T.astype(np.int64)).reshape(-1)                       # (T * B,)
        return nn.functional.cross_entropy(logits.reshape(-1, V), ids)

    state, chunk, step, spent = None, 0, 0, 0.0
    while spent < seconds:
        inputs, targets = train_batches.chunk(chunk)
        lr = schedule.next_lr(step, spent)
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits, state = forward(inputs, state)
        loss = loss_of(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        optimizer.step()
        spent += time.perf_counter() - started
        schedule.record(spent)
        state = tuple(h.detach() for h in state) if isinstance(state, tuple) else state.detach()
        step, chunk = step + 1, chunk + 1
        if chunk == len(train_batches):
            chunk, state = 0, None
    total, state = 0.0, None
    with torch.no_grad():
        for k in range(len(val_batches)):
            inputs, targets = val_batches.chunk(k)
            logits, state = forward(inputs, state)
            total += float(loss_of(logits, targets)) * inputs.size
    return row(f"stock nn.{cell.upper()}", seconds, seed, total / val_batches.num_targets, step, spent)


def row(name: str, seconds: float, seed: int, val: float, steps: int, train_seconds: float) -> dict:
    return dict(name=name, budget_seconds=seconds, seed=seed, val_nats=val, val_bpc=val * LOG2E, steps=steps,
                train_seconds=train_seconds, threads=os.environ.get("OMP_NUM_THREADS", "all cores"))


def with_gaps(rows: list[dict]) -> list[dict]:
    """Each row's gap to the best stock model of its budget (negative: better than it)."""
    for r in rows:
        stock = [s["val_nats"] for s in rows
                 if s["name"].startswith("stock") and s["budget_seconds"] == r["budget_seconds"]]
        r["gap_to_best_stock"] = r["val_nats"] - min(stock) if stock else None
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | budget (s) | seed | threads | val nats/char | val bits/char | steps | gap to best stock |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = "" if r["gap_to_best_stock"] is None else f"{r['gap_to_best_stock']:+.3f}"
        lines.append(f"| {r['name']} | {r['budget_seconds']:g} | {r['seed']} | {r['threads']} | {r['val_nats']:.3f} | "
                     f"{r['val_bpc']:.3f} | {r['steps']:,} | {gap} |")
    return "\n".join(lines)


def host() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"{cpu or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start"


def main(argv=None) -> None:
    parser = Parser(prog="python -m charrnn.tools.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=positive_seconds, nargs="+", default=[60.0, 300.0],
                        help="the training budgets, in seconds (default: 60 300)")
    parser.add_argument("--presets", nargs="*", default=["gru_1min", "gru_5min", "lstm_5min"],
                        help="conf/experiment/ presets to train (default: gru_1min gru_5min lstm_5min)")
    parser.add_argument("--stock", nargs="*", choices=("lstm", "gru"), default=["lstm", "gru"],
                        help="stock torch.nn models to train beside them (default: lstm gru)")
    parser.add_argument("--stock-lr", type=positive_number("learning rate"), metavar="LR",
                        help=f"the stock models' Adam rate (default: {STOCK['lr']:g})")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every preset run, as train.py takes them")
    parser.add_argument("--seeds", type=positive_int, default=1, help="seeds per preset and budget (default: 1)")
    parser.add_argument("--data", help="a text file to train on (default: Tiny Shakespeare)")
    parser.add_argument("--json", type=Path, help="write the rows and the host here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    data = ["data=text", f"data.path={args.data}"] if args.data else []
    started = host()
    rows = []
    with tempfile.TemporaryDirectory(prefix="charrnn-quality-") as out:
        for seconds in args.seconds:
            for seed in range(args.seeds):
                for preset in args.presets:
                    rows.append(preset_run(preset, seconds, 1337 + seed, data, Path(out), args.set))
                for cell in args.stock:
                    rows.append(stock_run(cell, seconds, 1337 + seed, data, args.stock_lr))
                print(markdown(with_gaps(list(rows))), file=sys.stderr)
    rows = with_gaps(rows)
    table = markdown(rows)
    print(f"host: {started}\n{table}")
    if args.json:
        args.json.write_text(json.dumps({"host": started, "rows": rows}, indent=2))
    if args.markdown:
        args.markdown.write_text(f"host: {started}\n\n{table}\n")


if __name__ == "__main__":
    main()
