"""A training run: the loop (loop.py), its validation (evaluation.py), its directory (rundir.py),
continuing it from a checkpoint (resume.py), and signals (signals.py)."""
