"""A training run: the loop (loop.py), its validation (evaluation.py), its directory (rundir.py),
continuing it from a checkpoint (resume.py: its config too), and starting it from another run's weights
(finetune.py: its config too). charrnn.start starts one; charrnn.threads and charrnn.signals serve it."""
