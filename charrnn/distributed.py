"""Data-parallel training over torch.distributed: one model, its B streams shared out among the ranks.

    global batch B = 8 streams, 2 ranks          every step, on every rank:
      streams 0..3  -> rank 0                      forward and backward over its rows of the (B, T) chunk,
      streams 4..7  -> rank 1                      one all-reduce of [loss, every gradient] as one flat buffer,
                                                   then clip and update: the same numbers on every rank

Averaging the ranks' gradients of their mean losses gives the gradient of the mean over all B streams,
so a run on any number of ranks follows the curve of one process to round-off; clipping and the
optimizer see that global gradient, and weights and optimizer state stay identical on every rank
without ever being sent. Each rank carries the state of its own streams; a checkpoint gathers them all,
so it resumes on any number of ranks that divides B, or in one process.

Launch with torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT:

    torchrun --standalone --nproc_per_node=2 train.py backend=torch

A plain `python train.py` is one process: join() returns SOLO, whose methods do nothing, and
torch.distributed is never imported. Collectives run on gloo for CPU tensors (the NumPy backend's
arrays travel as tensors sharing their memory) and, when backend.device is CUDA, on NCCL for the CUDA
tensors, each rank on its own GPU (cuda:LOCAL_RANK).
"""

import os
import re
import signal as signals
import sys
import time
from datetime import timedelta
from typing import Protocol

import numpy as np

from charrnn.devices import resolve_device
from charrnn.errors import UserError

# How long a rank waits in a collective for the others: long enough for the others' share of an
# evaluation or a checkpoint write, short enough that a hung rank ends the run instead of stalling it.
TIMEOUT = timedelta(minutes=5)


def is_main_process() -> bool:
    """Rank 0, or a process torchrun did not start: the one that writes to the terminal."""
    return os.environ.get("RANK", "0") == "0"


def stream_slice(rank: int, world_size: int, num_streams: int) -> slice:
    """The rank's streams: contiguous, disjoint, as even as num_streams allows."""
    return slice(rank * num_streams // world_size, (rank + 1) * num_streams // world_size)


def shard_state(state: tuple[np.ndarray, ...], rows: slice) -> tuple[np.ndarray, ...]:
    """The rows' part of a carried state: a tuple of arrays whose stream axis is -2 ((B, H) or (L, B, H))."""
    return tuple(a[..., rows, :] for a in state)


class Ranks(Protocol):
    """The processes training one model, as a step, the trainer and a checkpoint see them: Solo (one
    process) or Replicas (torchrun's ranks)."""

    rank: int
    world_size: int
    is_main: bool

    def streams(self, num_streams: int) -> slice: ...
    def local(self, inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def shard(self, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]: ...
    def gather(self, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]: ...
    def watch(self, stop) -> None: ...
    def average_(self, loss, grads: list, reduction: str): ...
    def sum(self, value: float) -> float: ...
    def agree(self, signal: int | None, train_seconds: float, clock: bool) -> tuple[int | None, float]: ...


class Solo(Ranks):
    """One process: its streams are all the streams, and there is nothing to agree on."""

    rank = 0
    world_size = 1
    is_main = True

    def streams(self, num_streams: int) -> slice:
        return slice(0, num_streams)

    def local(self, inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return inputs, targets

    def shard(self, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return state

    def gather(self, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return state

    def watch(self, stop) -> None:
        pass

    def average_(self, loss, grads: list, reduction: str):
        return loss

    def sum(self, value: float) -> float:
        return value

    def agree(self, signal: int | None, train_seconds: float, clock: bool) -> tuple[int | None, float]:
        return signal, train_seconds


SOLO = Solo()


class Replicas(Ranks):
    """This process's rank among world_size ranks training one model (see the module's docstring)."""

    def __init__(self, rank: int, world_size: int, batch_size: int):
        import torch.distributed

        self.dist = torch.distributed
        self.rank, self.world_size, self.is_main = rank, world_size, rank == 0
        self.rows = stream_slice(rank, world_size, batch_size)
        self.reduce_seconds = 0.0  # wall time spent in the gradient all-reduce, for the benchmark
        self.stop = None           # the StopRequest whose signal rides in the all-reduce
        self.signalled = None      # the ranks' signals, summed by the last all-reduce (a 1-element tensor)

    def streams(self, num_streams: int) -> slice:
        return stream_slice(self.rank, self.world_size, num_streams)

    def local(self, inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This rank's rows of a (B, T) chunk of the train streams."""
        return inputs[self.rows], targets[self.rows]

    def shard(self, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """This rank's rows of the carried state of all B train streams."""
        return shard_state(state, self.rows)

    def gather(self, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """Every rank's rows of the carried state, in stream order (on every rank: a collective)."""
        import torch

        gathered = []
        for part in state:
            mine = torch.from_numpy(np.ascontiguousarray(part))
            parts = [torch.empty_like(mine) for _ in range(self.world_size)]
            self._collective("gather the carried state", self.dist.all_gather, parts, mine)
            gathered.append(torch.cat(parts, dim=-2).numpy())
        return tuple(gathered)

    def watch(self, stop) -> None:
        """Send whether `stop` (a charrnn.signals.StopRequest) has seen a signal with every step's gradients."""
        self.stop = stop

    def average_(self, loss, grads: list, reduction: str):
        """The step's one all-reduce, between backward and clipping; it also carries whether this rank
        has been signalled (see agree). grads: the rank's gradients, tensors or NumPy arrays, overwritten
        with the gradient of the global loss: the ranks' mean with reduction="mean", their sum with
        "sum". loss (a float or a 0-d tensor) comes back as the ranks' mean, a float or a tensor as it
        came: the global mean loss, or with "sum" the global sum over the world size (a per-rank sum
        divided by the rank's chars is the global mean)."""
        import torch

        # torch.from_numpy shares the arrays' memory: the results are copied straight back into them.
        tensors = [torch.from_numpy(g) if isinstance(g, np.ndarray) else g for g in grads]
        signal = self.stop.signal if self.stop is not None else None
        like = dict(dtype=tensors[0].dtype, device=tensors[0].device)
        with torch.no_grad():
            head = [torch.as_tensor(loss, **like).reshape(1), torch.tensor([float(signal or 0)], **like)]
            flat = torch.cat(head + [t.reshape(-1) for t in tensors])
            started = time.perf_counter()
            self._collective("average the gradients", self.dist.all_reduce, flat)
            self.reduce_seconds += time.perf_counter() - started
            flat[0] /= self.world_size
            if reduction == "mean":
                flat[2:] /= self.world_size
            self.signalled = flat[1:2]
            offset = 2
            for t in tensors:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()
        return flat[0] if isinstance(loss, torch.Tensor) else float(flat[0])

    def sum(self, value: float) -> float:
        """A float summed over the ranks (an evaluation's share of the loss)."""
        import torch

        total = torch.tensor([value], dtype=torch.float64)
        self._collective("add up the evaluation", self.dist.all_reduce, total)
        return float(total[0])

    def agree(self, signal: int | None, train_seconds: float, clock: bool) -> tuple[int | None, float]:
        """What every rank must decide alike after a step: stop if any rank had been signalled when the
        step's all-reduce ran (a signal after it stops the ranks one step later), and with clock (a run
        under train.max_seconds, whose clock also drives the learning rate schedule) go by the slowest
        rank's clock, which takes an all-reduce of its own."""
        import torch

        if clock:
            seconds = torch.tensor([train_seconds], dtype=torch.float64)
            self._collective("agree on the clock", self.dist.all_reduce, seconds, self.dist.ReduceOp.MAX)
            train_seconds = float(seconds[0])
        if self.signalled is None or not float(self.signalled[0]):
            return None, train_seconds
        return signal or signals.SIGTERM, train_seconds

    def _collective(self, what: str, op, *args) -> None:
        try:
            op(*args)
        except RuntimeError as e:  # torch's DistBackendError and gloo's errors are RuntimeErrors
            raise UserError(f"rank {self.rank} of {self.world_size} could not {what} ({first_sentence(e)}): "
                            f"another rank has stopped or died; its own error, above, says why") from None


def first_sentence(error: Exception) -> str:
    """"Connection reset by peer" out of gloo's "[.../pair.cc:537] Read error [...]: Connection reset by peer.
    This is typically caused by ...": the cause without the source location and the advice."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(error).strip())
    return text.split(". ")[0].rstrip(".") or type(error).__name__


class Muted:
    """Stands in for the Monitor on ranks other than 0, which write nothing: every call does nothing."""

    def __enter__(self) -> "Muted":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def leave() -> None:
    """End this process's part in a run over torchrun: its process group is destroyed before the interpreter
    exits, so that gloo's threads are joined rather than torn down mid-work (which aborted a rank at exit
    now and then). One process never imported torch.distributed for a run: nothing to do."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_initialized():
        dist.destroy_process_group()


def join(batch_size: int, device: str = "auto") -> Ranks:
    """The ranks of this run: SOLO unless torchrun started WORLD_SIZE > 1 processes; then join the
    process group (once per process) and take this rank's share of the batch_size train streams.
    device is the run's backend.device: on CUDA each rank takes its own GPU, cuda:LOCAL_RANK."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return SOLO
    if batch_size % world_size:
        raise UserError(f"train.batch_size={batch_size} streams do not split evenly over {world_size} ranks; "
                        f"make it a multiple of the number of processes")
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        run_device = resolve_device(device)
        if run_device.type == "cuda":
            torch.cuda.set_device(run_device)
            # the gradients (on the GPU) through NCCL; the small CPU collectives (the evaluation's sum, the
            # state gather, the clock) through gloo
            dist.init_process_group("cpu:gloo,cuda:nccl", timeout=TIMEOUT)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)
    return Replicas(dist.get_rank(), dist.get_world_size(), batch_size)
