"""One wide matrix product per dtype before the NumPy backend's first step.

Measured on this project's 2-core machine (AMD EPYC, NumPy's OpenBLAS 0.3.31 running its Haswell
kernels): until the process has run one wide GEMM of a dtype, many later GEMMs of that dtype run up to
3.5x slower, and stay slow for the life of the process. The LSTM's dWhh product, (4H, N) @ (N, H),
took 193 ms instead of 55 ms at H=256; the step as a whole ran at half speed. Which product first
cured it was an accident of each cell's code, so the backend makes one on purpose: about 20 ms, once.
docs/performance.md has the figures.
"""

import functools

import numpy as np


@functools.cache
def warm_up_blas() -> None:
    """Run one (64, 512) @ (512, 2048) product in float32 and in float64, once per process."""
    for dtype in (np.float32, np.float64):
        # zeros: the operands stay on the kernel's zero page, so the process's peak memory grows by about
        # 2 MB (10 MB with np.ones), which the bench's memory column would otherwise show.
        np.zeros((64, 512), dtype) @ np.zeros((512, 2048), dtype)
