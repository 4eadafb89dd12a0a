"""Pre-norm between the parallel cells' layers (model.norm), forward and backward: RMSNorm or LayerNorm
over the H units of each row, with no gain and no bias (the Wxh or Why that reads the result absorbs both).

Shapes: x (T, B, H), each (t, b) row normalised on its own; eps = charrnn.model.NORM_EPS.

    rms                                          backward (dn = dL/dn from the layer that reads n)
    r = sqrt(mean_H(x^2) + eps)       (T, B, 1)  dx = (dn - n * mean_H(dn * n)) / r
    n = x / r

    layer
    m = mean_H(x),  xc = x - m                   dx = (dn - mean_H(dn) - n * mean_H(dn * n)) / s
    s = sqrt(mean_H(xc^2) + eps)      (T, B, 1)
    n = xc / s

Both backwards come from dn/dx being (I - n n^T / H) / r (rms), and the same with the mean taken out
first (layer): the component of dn along n, and for LayerNorm along the all-ones row, is what the
normalisation removes.

Memory: n and r (or s), kept until backward.
"""

from dataclasses import dataclass

import numpy as np

from charrnn.model import NORM_EPS


@dataclass
class NormCache:
    kind: str            # "rms" or "layer"
    n: np.ndarray        # (T, B, H) the normalised rows
    scale: np.ndarray    # (T, B, 1) r or s


def forward(x: np.ndarray, kind: str) -> tuple[np.ndarray, NormCache]:
    """x (T, B, H) -> n (T, B, H), and the cache."""
    if kind == "layer":
        x = x - x.mean(axis=-1, keepdims=True)                       # (T, B, H) xc
    scale = np.sqrt(np.einsum("tbh,tbh->tb", x, x)[..., None] / x.shape[-1] + NORM_EPS)   # (T, B, 1)
    n = x / scale                                                    # (T, B, H)
    return n, NormCache(kind, n, scale)


def backward(dn: np.ndarray, cache: NormCache) -> np.ndarray:
    """dn (T, B, H) dL/dn -> dL/dx (T, B, H)."""
    n, H = cache.n, cache.n.shape[-1]
    dx = dn - n * (np.einsum("tbh,tbh->tb", dn, n)[..., None] / H)  # (T, B, H) dn - n mean_H(dn * n)
    if cache.kind == "layer":
        dx -= dn.mean(axis=-1, keepdims=True)                        # - mean_H(dn)
    dx /= cache.scale
    return dx
