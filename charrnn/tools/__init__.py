"""Developer tools, not part of a run: the throughput benchmarks (bench.py, bench_distributed.py) and
the load-time and memory scaling measurement (scaling.py)."""
