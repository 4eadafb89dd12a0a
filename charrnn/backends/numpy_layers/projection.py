"""The input projection every cell starts with, and its gradient: Wxh x_t + bh for all T steps at once.

Layer 0 reads characters: x is (T, B) ids, x_t one-hot, so Wxh x_t is column x_t of Wxh, a gather.
Layers above read the layer below: x is (T, B, In) floats, and the projection is one (N, In) @ (In, G)
product. Neither depends on h_{t-1}, so it stays out of the time loop, as does its backward.

    forward                          backward (da_t = dL/d(Wxh x_t + bh), (B, G), for every t)
    a_t = Wxh x_t + bh               dWxh = sum_t da_t x_t^T,  dbh = sum_t da_t,  dx_t = Wxh^T da_t
"""

import numpy as np

# Above this vocabulary size the one-hot product for dWxh costs more than a scatter-add
# (measured: 9x faster at V=65, 8x slower at V=5000).
ONE_HOT_MAX_VOCAB = 512


def is_ids(x: np.ndarray) -> bool:
    return x.dtype.kind in "iu"


def project(Wxh: np.ndarray, bh: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out (T, B, G) = Wxh x_t + bh for every step; x (T, B) ids (checked in range by the caller) or (T, B, In)."""
    if is_ids(x):
        # Adding bh to the (V, G) table first saves a pass over the (T, B, G) result; mode="clip" (a
        # no-op for ids in range) skips the buffered copy np.take makes for out= in its default mode.
        np.take(Wxh.T + bh, x, axis=0, out=out, mode="clip")
    else:
        T, B, In = x.shape
        np.matmul(x.reshape(T * B, In), Wxh.T, out=out.reshape(T * B, -1))
        out += bh


def one_hot_buffer(x: np.ndarray, V: int, dtype) -> np.ndarray:
    """The (N, V) buffer project_backward fills with the one-hot x_t rows, or an empty one when it will
    scatter instead (large V, or float inputs)."""
    use = is_ids(x) and V <= ONE_HOT_MAX_VOCAB
    return np.zeros((x.size if use else 0, V), dtype)


def project_backward(da: np.ndarray, x: np.ndarray, Wxh: np.ndarray, one_hot: np.ndarray,
                     dx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """da (N, G) -> dWxh (G, In), dbh (G,); writes dL/dx_t (T, B, In) into dx for float inputs."""
    N = da.shape[0]
    if not is_ids(x):
        x_flat = x.reshape(N, -1)                          # (N, In)
        np.matmul(da, Wxh, out=dx.reshape(N, -1))          # (N, In) Wxh^T da_t
        return da.T @ x_flat, da.sum(axis=0)               # (G, In), (G,)
    V = Wxh.shape[1]
    if one_hot.shape[0] == N:
        one_hot.fill(0)
        one_hot[np.arange(N), x.reshape(N)] = 1
        dWxh = da.T @ one_hot                              # (G, V) sum_t da_t x_t^T
    else:
        dWxhT = np.zeros((V, da.shape[1]), da.dtype)
        np.add.at(dWxhT, x.reshape(N), da)                 # (V, G) row x_t collects da_t
        dWxh = np.ascontiguousarray(dWxhT.T)
    # Each x_t is one-hot, so summing dWxh's columns adds up every da_t once: that is dbh, obtained
    # from a (G, V) array instead of another pass over the (N, G) one.
    return dWxh, dWxh.sum(axis=1)                          # (G, V), (G,)
