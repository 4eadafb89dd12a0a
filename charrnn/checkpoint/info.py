"""What a checkpoint is, in three lines (python sample.py checkpoint=PATH info=true): where its run was and
how well it did, its model, and how it was trained.

    runs/x/ckpt_best.npz: step 10000; val 1.6012 nats/char (2.3101 bits/char), the best of its run so far 1.6012
    model: rnn, 1 layer of 384 units, a vocabulary of 65 characters, 198,785 weights, float32
    trained: 10000 steps, 294.1 s on numpy, data tinyshakespeare; fine-tuned from runs/y/ckpt_best.npz (step 5000)
    history: 2 starts: steps 0-6000 (started, train.max_iters=6000); steps 6000-10000 (resumed, train.max_iters=10000)

(the last line only for a run resumed with train.resume)
"""

import math
from pathlib import Path

from charrnn.checkpoint.format import Checkpoint


def describe(path: Path, ckpt: Checkpoint) -> str:
    progress, config = ckpt.progress, ckpt.config
    model, data = config.get("model", {}), config.get("data", {})
    val, best = progress.get("val_loss", math.nan), progress.get("best_val", math.nan)
    evaluated = (f"val {val:.4f} nats/char ({val / math.log(2):.4f} bits/char), the best of its run so far "
                 f"{best:.4f}" if math.isfinite(val) else "not evaluated yet")
    layers = model.get("num_layers", 1)
    symbols = "bytes" if data.get("encoding") == "bytes" else "characters"
    origin = progress.get("init_from")
    replan = (progress.get("schedule") or {}).get("replan")
    replanned = (f"; learning rate re-planned at step {replan['step']} for a new budget, a cosine from "
                 f"{replan['lr']:.2e} (where it stood) down to train.min_lr" if replan else "")
    started = "from a fresh start" if not origin else f"fine-tuned from {origin['path']} (step {origin['step']})"
    resumed = config.get("train", {}).get("resume")
    return "\n".join([
        f"{path}: step {progress.get('step')}; {evaluated}",
        f"model: {model.get('cell', 'rnn')}, {layers} layer{'s' if layers > 1 else ''} of {model.get('hidden_size')} "
        f"units, a vocabulary of {len(ckpt.vocab)} {symbols}, {sum(p.size for p in ckpt.params.values()):,} weights, "
        f"{model.get('dtype')}",
        f"trained: {progress.get('step')} steps, {progress.get('train_seconds', math.nan):.1f} s on "
        f"{progress.get('backend', 'numpy')}, data {data.get('path') or data.get('name')}; {started}{replanned}",
        *history(progress.get("segments") or [], progress.get("step"), resumed),
    ])


def history(segments: list[dict], step, resumed: str | None) -> list[str]:
    """A line for a run started more than once (train.resume): each start, the steps it trained and the
    budgets it was given. Nothing for a run of one start."""
    if len(segments) > 1:
        ends = [segment["from_step"] for segment in segments[1:]] + [step]
        parts = [f"steps {segment['from_step']}-{end} ({'started' if i == 0 else 'resumed'}, {budget(segment)})"
                 for i, (segment, end) in enumerate(zip(segments, ends))]
        return [f"history: {len(segments)} starts: " + "; ".join(parts)]
    if resumed and not segments:
        return [f"history: resumed (train.resume={resumed}); its starts before that are not recorded"]
    return []


def budget(segment: dict) -> str:
    seconds = segment.get("max_seconds")
    return f"train.max_iters={segment['max_iters']}" + ("" if seconds is None else f", train.max_seconds={seconds:g}")
