"""What every unit of every layer does over a text: one forward pass of the NumPy layers, read off their
forward caches (numpy_layers/*.py keep every step's h_t, the LSTM's c_t and gates, the GRU's gates).

Which quantities a cell has is its record's (charrnn.cells: Cell.quantities); for the cells here:

    quantity   cell          range     what it is at step t (after reading symbol t)
    h          every cell    (-1, 1)   the layer's output and state (any, for mingru and minlstm)
    c          lstm          any       the cell state: c_t = f * c_{t-1} + i * g
    i, f, o    lstm          (0, 1)    input, forget and output gates
    g          lstm          (-1, 1)   the candidate written into c
    r, z       gru           (0, 1)    reset and update gates: h_t = (1 - z) * n + z * h_{t-1}
    n          gru           (-1, 1)   the candidate state
    z          mingru        (0, 1)    update gate: h_t = (1 - z) * h_{t-1} + z * cand
    f, i       minlstm       (0, 1)    forget and input gates before their normalisation:
                                       h_t = (f * h_{t-1} + i * cand) / (f + i)
    cand       mingru, minlstm  any    the candidate h~_t = Wxh x_t + bh, linear in x_t (g of it with
                                       model.activation=g)

The head reads the top of the stack: logits_t = Why s_t + by score symbol t+1, s_t the top layer's h_t
(with the parallel cells' residual path and norm, the stream they make: numpy_backend.layers_forward). A backend's weights enter as
NumPy arrays (Backend.export_params), so a model loaded on either backend traces the same way, in
its own dtype, one stream, from the zero state, without dropout (as evaluation and sampling run it).
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from charrnn.backends.numpy_backend import layers_forward, warm_up_blas
from charrnn.cells import CELLS, Cell
from charrnn.model import ModelSpec, zero_state

CHUNK = 4096   # steps per forward call: the caches' buffers and a chunk's logits stay this long, whatever
               # the text's length


@dataclass
class Trace:
    ids: np.ndarray                      # (T,) the text's symbol ids
    layers: list[dict[str, np.ndarray]]  # per layer (0 = the bottom one), each of the cell's quantities -> (T, H)
    logits: np.ndarray                   # (T, V) row t scores symbol t+1, having read symbols 0..t

    def state_after(self, step: int, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        """The recurrent state after `step` (-1: before the text), as (L, H) arrays for each name."""
        if step < 0:
            return tuple(np.zeros((len(self.layers), self.layers[0]["h"].shape[1]), self.logits.dtype)
                         for _ in names)
        return tuple(np.stack([layer[name][step] for layer in self.layers]) for name in names)


def quantity_names(cell: Cell) -> list[str]:
    return [q.name for q in cell.quantities]


def _read(cell: Cell, cache) -> dict[str, np.ndarray]:
    """One stream's quantities from a layer's cache after forward: (T, H) each. A state array's history is
    the cache's <name>s (hs, cs: entry 0 the state before the chunk), a gate's value its block of gates."""
    H = cache.hs.shape[2]
    found = {}
    for name in quantity_names(cell):
        if name in cell.state:
            found[name] = getattr(cache, name + "s")[1:, 0]
        else:
            found[name] = cache.gates[:, 0, cell.gate_block(name, H)]
    return {name: value.copy() for name, value in found.items()}


def trace(params: dict[str, np.ndarray], spec: ModelSpec, ids: np.ndarray) -> Trace:
    """Run the model over ids (T,) from the zero state and keep every step of every quantity."""
    T, H, V = len(ids), spec.hidden_size, params["Why"].shape[0]
    dtype = params["Why"].dtype
    names = quantity_names(CELLS[spec.cell])
    layers = [{name: np.empty((T, H), dtype) for name in names} for _ in range(spec.num_layers)]
    logits = np.empty((T, V), dtype)
    for start, pieces, chunk_logits in chunks(params, spec, ids):
        stop = start + len(chunk_logits)
        for layer, piece in zip(layers, pieces):
            for name, values in piece.items():
                layer[name][start:stop] = values
        logits[start:stop] = chunk_logits
    return Trace(ids=np.asarray(ids), layers=layers, logits=logits)


def chunks(params: dict[str, np.ndarray], spec: ModelSpec,
           ids: np.ndarray) -> Iterator[tuple[int, list[dict[str, np.ndarray]], np.ndarray]]:
    """The model over ids (T,) from the zero state, CHUNK steps at a time, the state carried from one chunk
    to the next: (start, per layer each quantity -> (C, H), logits (C, V)) for steps start .. start + C - 1.
    Only one chunk's arrays are alive at a time, however long the text."""
    # One stream: each step's products are too small for a second BLAS thread to help, and on a busy
    # machine waiting for one made a 2 x 512 GRU's steps 17x slower (docs/explore.md).
    warm_up_blas()
    cell = CELLS[spec.cell]
    state = zero_state(spec, 1, params["Why"].dtype)
    for start in range(0, len(ids), CHUNK):
        x = np.asarray(ids[start:start + CHUNK], np.int64)[:, None]      # (C, 1)
        with threadpool_limits(limits=1, user_api="blas"):
            top, cache = layers_forward(params, spec, x, state)             # top (C, 1, H)
            pieces = [_read(cell, layer) for layer in cache.layers]
            logits = top[:, 0] @ params["Why"].T + params["by"]                # (C, V)
        state = cache.state_last                                           # (L, 1, H) each
        yield start, pieces, logits


def stream_losses(params: dict[str, np.ndarray], spec: ModelSpec, ids: np.ndarray) -> np.ndarray:
    """losses(trace(...)) read chunk by chunk: memory for the (T-1,) result and one chunk, not (T, V) logits
    and (T, H) quantities. The last row of a chunk's logits scores the next chunk's first symbol."""
    out = np.empty(len(ids) - 1, np.float64)
    for start, _, logits in chunks(params, spec, ids):
        targets = ids[start + 1:start + 1 + len(logits)]                  # (C,), one short at the text's end
        logp = log_softmax(logits[:len(targets)])
        out[start:start + len(targets)] = -logp[np.arange(len(targets)), targets]
    return out


def stream_top_k(params: dict[str, np.ndarray], spec: ModelSpec, ids: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """top_k(trace(...), k) read chunk by chunk: memory for the (T, k) results and one chunk."""
    k = min(k, params["Why"].shape[0])
    top_ids, top_probs = np.empty((len(ids), k), np.int64), np.empty((len(ids), k), np.float64)
    for start, _, logits in chunks(params, spec, ids):
        stop = start + len(logits)
        top_ids[start:stop], top_probs[start:stop] = _top_k(logits, k)
    return top_ids, top_probs


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(T, V) log-probabilities, in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def losses(traced: Trace) -> np.ndarray:
    """(T-1,) nats: entry t is -log p(symbol t+1 | symbols 0..t)."""
    logp = log_softmax(traced.logits[:-1])
    return -logp[np.arange(len(logp)), traced.ids[1:]]


def top_k(traced: Trace, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k likeliest next symbols at every step, most likely first: ids (T, k) and probabilities (T, k)."""
    return _top_k(traced.logits, k)


def _top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    probs = np.exp(log_softmax(logits))
    k = min(k, probs.shape[1])
    ids = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(probs, ids, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    return ids, np.take_along_axis(probs, ids, axis=1)
