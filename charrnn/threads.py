"""How many threads the math libraries (NumPy's BLAS, torch) run in each phase of a run.

    phase        threads                          its products, at the defaults
    training     as many as the process has       (64 x H) @ (H x GH) and the weight gradients' (H x 64T)
    evaluation   1                                (32 x H) @ (H x GH), forward only
    sampling     1                                (1 x H) @ (H x GH), one character at a time

Measured on this project's 2-core host (docs/performance.md, "Threads per phase"): an evaluation of the
default model took 16 to 60 s with two BLAS threads on a busy host and 2.5 s with one. A thread that
waits for a core another process holds stalls every product of the phase, and the small products of
evaluation and sampling gain too little from a second thread to be worth that risk.

The counts are fixed, never chosen from timings as the run goes: OpenBLAS adds a product's terms in
another order with another thread count, so the weights would depend on the machine's load and a
resumed run would not repeat an unbroken one. A process started with fewer threads (OMP_NUM_THREADS=1,
or a job of a parallel sweep: Hydra's joblib launcher gives each cores // n_jobs, see docs/scaling.md)
keeps that bound in every phase.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy  # noqa: F401  (threadpoolctl sees only the libraries loaded: NumPy loads its BLAS)
from threadpoolctl import ThreadpoolController

# None: as many as the process started with.
PHASES = {"training": None, "evaluation": 1, "sampling": 1}


class PhaseThreads:
    """The thread counts of the process as it started, and phase(name) to run a phase with its own."""

    def __init__(self):
        self.controller = ThreadpoolController().select(user_api="blas")
        self.blas = {pool.internal_api: pool.num_threads for pool in self.controller.lib_controllers}
        # torch is left alone unless the run has loaded it (the NumPy backend never needs it)
        self.torch = sys.modules.get("torch")
        self.started = max([*self.blas.values(), self.torch.get_num_threads() if self.torch else 1])

    def count(self, phase: str) -> int:
        wanted = PHASES[phase]
        return self.started if wanted is None else min(wanted, self.started)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Run the body with the phase's thread count, and go back to the process's own after it."""
        count = self.count(name)
        limiter = self.controller.limit(limits=count)
        if self.torch:
            torch_before = self.torch.get_num_threads()
            self.torch.set_num_threads(min(count, torch_before))
        try:
            yield
        finally:
            limiter.restore_original_limits()
            if self.torch:
                self.torch.set_num_threads(torch_before)

    def describe(self) -> str:
        """For the run's first line: 'threads: training 2, evaluation 1, sampling 1 (openblas 2, torch 2)'."""
        libraries = [f"{name} {count}" for name, count in sorted(self.blas.items())]
        if self.torch:
            libraries.append(f"torch {self.torch.get_num_threads()}")
        phases = ", ".join(f"{phase} {self.count(phase)}" for phase in PHASES)
        return f"threads: {phases} ({', '.join(libraries)})"

