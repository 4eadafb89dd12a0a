"""How many threads the math libraries run, for the run's first line: a sweep's parallel jobs (Hydra's
joblib launcher) must each use fewer, or together they oversubscribe the cores.

joblib's loky workers start with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS (and the like)
set to cores // n_jobs unless the user set them, before NumPy or torch is imported in the worker: that
is what bounds a job's BLAS and torch threads (see docs/scaling.md), and what this line shows.
"""

import sys

from threadpoolctl import threadpool_info


def thread_counts() -> str:
    """e.g. 'threads: openblas 1, torch 1' (torch's only where the run has imported torch)."""
    pools = sorted({(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()
                    if pool["user_api"] == "blas"})
    counts = [f"{name} {count}" for name, count in pools]
    if "torch" in sys.modules:
        counts.append(f"torch {sys.modules['torch'].get_num_threads()}")
    return "threads: " + ", ".join(counts)
