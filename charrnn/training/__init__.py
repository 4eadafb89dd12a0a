"""A training run: the loop (loop.py), its validation (evaluation.py), its directory (rundir.py),
continuing it from a checkpoint (resume.py), starting it from another run's weights (finetune.py), the
threads of each of its phases (threads.py), and signals (signals.py)."""
