"""Load time and peak memory against corpus size: python -m charrnn.tools.scaling [--sizes 10MB 100MB 1GB].

Each corpus is Tiny Shakespeare (or --source) repeated to the size, written under --dir (never in the repository).
Each is trained twice at the default config in a fresh process: the first start encodes it into an
empty cache, the later start memory-maps what the first wrote. Each process reports how long loading
took (finding or encoding the ids and cutting them into streams), the seconds of its training steps
and of everything else in train() (evaluations, samples, checkpoints), and its peak resident memory.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charrnn.errors import UserError
from charrnn.files import atomic_write
from charrnn.tools.args import Parser, byte_size, existing_file, output_file, positive_int, work_dir


def default_config(overrides: list[str]):
    """conf/train.yaml with overrides, typed."""
    from charrnn.config import compose, to_config

    return to_config(compose("train", overrides))


def tinyshakespeare() -> Path:
    """The Tiny Shakespeare file the default config names (fetched if absent)."""
    from charrnn.data import corpus_path

    return corpus_path(default_config([]).data)


def make_corpus(directory: Path, size: int, source: Path) -> Path:
    """source repeated to at least size bytes (reused if already there)."""
    path = directory / f"{source.stem}_x{size}.txt"
    if path.exists() and path.stat().st_size >= size:
        return path
    text = source.read_bytes()
    with atomic_write(path) as out:
        for _ in range(-(-size // len(text))):
            out.write(text)
    return path


def child(corpus: str, cache_dir: str, steps: int, overrides: list[str]) -> dict:
    """One training process's figures (run in a fresh interpreter by measure())."""
    from charrnn.data import load_ids
    from charrnn.training.loop import make_batchers, train

    cfg = default_config(["data=text", f"data.path={corpus}", f"data.cache_dir={cache_dir}",
                          f"train.max_iters={steps}", *overrides])
    started, cpu_started = time.perf_counter(), time.process_time()
    vocab, ids = load_ids(cfg.data)
    train_batches, val_batches = make_batchers(cfg, ids)
    val_batches.head(cfg.train.eval_chars)
    load_seconds, load_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        result = train(cfg, Path(run_dir) / "run")
        wall = time.perf_counter() - started
    return {"chars": len(ids), "vocab": len(vocab), "id_bytes": ids.dtype.itemsize, "load_s": load_seconds, "load_cpu_s": load_cpu_seconds,
            "train_s": result.train_seconds, "other_s": wall - result.train_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(corpus: Path, cache_dir: Path, steps: int, overrides: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "charrnn.tools.scaling", "--child", str(corpus), str(cache_dir),
                           str(steps), *overrides], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"the training process failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


HEADER = (f"{'corpus':>9} {'chars':>13} {'V':>3} {'id B':>4} | {'first start':>11} {'CPU s':>7} {'peak MB':>8} | "
          f"{'later start':>11} {'CPU s':>7} {'peak MB':>8} | {'eval+ s':>7} {'steps s':>7}")


def format_row(size: str, first: dict, later: dict) -> str:
    return (f"{size:>9} {first['chars']:>13,} {first['vocab']:>3} {first['id_bytes']:>4} | "
            f"{first['load_s']:>10.3f}s {first['load_cpu_s']:>7.3f} {first['peak_rss_mb']:>8.0f} | "
            f"{later['load_s']:>10.3f}s {later['load_cpu_s']:>7.3f} {later['peak_rss_mb']:>8.0f} | "
            f"{later['other_s']:>7.1f} {later['train_s']:>7.1f}")


def main(argv=None) -> None:
    parser = Parser(prog="python -m charrnn.tools.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=byte_size, default=[10**7, 10**8, 10**9],
                        help="corpus sizes: 20KB, 10MB, 1GB (powers of ten)")
    parser.add_argument("--dir", type=work_dir, default=str(Path(tempfile.gettempdir()) / "charrnn-scaling"),
                        help="where the corpora and their caches go (kept, so a second call reuses the corpora)")
    parser.add_argument("--steps", type=positive_int, default=20, help="training steps per process")
    parser.add_argument("--source", type=existing_file, help="the text to repeat (default: Tiny Shakespeare)")
    parser.add_argument("--json", type=output_file, help="also write the figures to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides for the training, e.g. train.eval_chars=100000")
    args = parser.parse_args(argv)
    if args.child:
        corpus, cache_dir, steps = args.child
        with open(os.devnull, "w") as quiet:
            stdout, sys.stdout, sys.stderr = sys.stdout, quiet, quiet
            figures = child(corpus, cache_dir, int(steps), args.overrides)
        print(json.dumps(figures), file=stdout)
        return
    print(f"default config {' '.join(args.overrides)}, {args.steps} steps per process (with the evaluations at their start and end); "
          f"load: finding or encoding the ids, and the streams (wall and CPU seconds); peak MB: the process's peak RSS")
    print(HEADER)
    rows = []
    for size in args.sizes:
        try:
            corpus = make_corpus(args.dir, size, args.source or tinyshakespeare())
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        cache_dir = args.dir / f"cache_{corpus.stem}"
        shutil.rmtree(cache_dir, ignore_errors=True)
        first = measure(corpus, cache_dir, args.steps, args.overrides)
        later = measure(corpus, cache_dir, args.steps, args.overrides)
        rows.append({"size": size, "first": first, "later": later})
        print(format_row(f"{size / 1e6:g}MB", first, later), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
