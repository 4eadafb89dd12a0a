"""Data-parallel training (charrnn.distributed): 2 gloo ranks on the CPU follow one process's curve."""

import json
import os
import shutil
import signal
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from charrnn.tools import bench_distributed
from charrnn import distributed
from charrnn.training import loop as trainer
from charrnn.distributed import shard_state, stream_slice
from charrnn.errors import UserError
from charrnn.monitor import Monitor
from tests.conftest import HANG, TINY, make_config

torch = pytest.importorskip("torch")
mp = pytest.importorskip("torch.multiprocessing")

# float64, so that the curves can be held to 1e-9. 8 streams of 16 make 5 chunks an epoch: 50 steps
# cross ten epoch boundaries, and each rank's 4 streams carry their own state between chunks.
EXACT = [*TINY, "model.dtype=float64", "train.batch_size=8", "train.seq_length=16", "train.max_iters=50",
         "train.lr_decay_iters=50", "train.eval_interval=10", "train.log_interval=1", "optim.lr=0.01"]
STOP_AT = 30  # the 2-rank runs stop here and resume, once on 2 ranks and once in one process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record_losses(monkeypatch) -> list[float]:
    losses = []
    real = Monitor.step

    def step(self, step, result, *args, **kwargs):
        real(self, step, result, *args, **kwargs)
        losses.append(result.loss)

    monkeypatch.setattr(Monitor, "step", step)
    return losses


def capture_backends(monkeypatch) -> list:
    made = []
    real = trainer.make_backend

    def make(*args):
        made.append(real(*args))
        return made[-1]

    monkeypatch.setattr(trainer, "make_backend", make)
    return made


@contextmanager
def as_rank(rank: int, world_size: int, port: int):
    """The environment torchrun gives a worker on one machine, and what train.py does as a rank ends:
    leave the process group, whose gloo threads, torn down mid-work at exit, abort a rank now and then."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        yield
    finally:
        distributed.leave()


def rank_main(rank: int, world_size: int, port: int, backend: str, corpus: str, out: str, model: str = "rnn") -> None:
    """One rank: train to STOP_AT, copy the run, resume the copy to the end; save the losses (rank 0
    logs them) and this rank's final weights and optimizer state."""
    torch.set_num_threads(1)
    with as_rank(rank, world_size, port), pytest.MonkeyPatch.context() as m:
        losses, backends = record_losses(m), capture_backends(m)
        config = [f"data.path={corpus}", f"backend={backend}", f"model={model}", *EXACT]
        trainer.train(make_config([*config, f"train.max_iters={STOP_AT}"]), Path(out, "first"))
        if rank == 0:
            shutil.copytree(Path(out, "first"), Path(out, "resumed"))
        torch.distributed.barrier()
        trainer.train(make_config([*config, f"train.resume={Path(out, 'resumed')}"]), Path(out, "resumed"))
        np.savez(Path(out, f"rank{rank}.npz"), losses=np.array(losses),
                 **{f"param/{k}": v for k, v in backends[-1].export_params().items()},
                 **{f"optim/{k}": v for k, v in backends[-1].export_optimizer_state().items()})


def rank_dies(rank: int, world_size: int, port: int, corpus: str, out: str) -> None:
    """Rank 1 dies at its fifth step, as a killed process would; rank 0 must end with one clear error."""
    with as_rank(rank, world_size, port), pytest.MonkeyPatch.context() as m:
        if rank == 1:
            from charrnn.backends.numpy_backend import NumpyBackend

            real_step, steps = NumpyBackend.train_step, []

            def train_step(self, *args):
                steps.append(None)
                if len(steps) == 5:
                    os._exit(9)
                return real_step(self, *args)

            m.setattr(NumpyBackend, "train_step", train_step)
        try:
            trainer.train(make_config([f"data.path={corpus}", *EXACT]), Path(out, "run"))
        except UserError as e:
            Path(out, "error.txt").write_text(str(e))


def rank_signalled(rank: int, world_size: int, port: int, corpus: str, out: str) -> None:
    """Only rank 0 gets Ctrl-C, at step 12; both ranks must stop at the same step (or the next collective
    would fail). train.max_seconds makes them agree on the clock as well."""
    with as_rank(rank, world_size, port), pytest.MonkeyPatch.context() as m:
        real = Monitor.step

        def step(self, step, result, *args, **kwargs):
            real(self, step, result, *args, **kwargs)
            if step == 12:
                os.kill(os.getpid(), signal.SIGINT)

        m.setattr(Monitor, "step", step)
        result = trainer.train(make_config([f"data.path={corpus}", *EXACT, "train.max_seconds=1000"]), Path(out, "run"))
    Path(out, f"rank{rank}.json").write_text(json.dumps({"steps": result.steps, "stopped_by": result.stopped_by}))


def spawn(world_size: int, *args, main=rank_main) -> None:
    context = mp.start_processes(main, args=(world_size, free_port(), *args), nprocs=world_size,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + HANG
    try:
        while not context.join(timeout=1):
            assert time.monotonic() < deadline, f"the {world_size} ranks did not finish in {HANG} s"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


# Most of each is starting the two ranks (importing torch); the torch backend's first optimizer
# imports torch._dynamo too, which takes several seconds more.
@pytest.mark.parametrize("backend,model", [("numpy", "rnn"), pytest.param("torch", "rnn", marks=pytest.mark.slow),
                                           pytest.param("numpy", "mingru", marks=pytest.mark.slow)])
def test_two_ranks_follow_one_process_and_resume_anywhere(corpus, tmp_path, monkeypatch, backend, model):
    spawn(2, backend, str(corpus), str(tmp_path), model)
    config = [f"data.path={corpus}", f"backend={backend}", f"model={model}", *EXACT]
    losses = record_losses(monkeypatch)
    trainer.train(make_config(config), tmp_path / "one")
    one_process = np.array(losses)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    two_ranks = ranks[0]["losses"]  # stopped at STOP_AT and resumed on 2 ranks
    assert len(one_process) == len(two_ranks) == 50
    np.testing.assert_allclose(two_ranks, one_process, rtol=0, atol=1e-9)
    # every rank holds the same weights and optimizer state, to the bit
    assert ranks[0].files == ranks[1].files
    for key in set(ranks[0].files) - {"losses"}:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
    # the 2-rank checkpoint at STOP_AT, resumed in one process, continues the same curve
    losses.clear()
    trainer.train(make_config([*config, f"train.resume={tmp_path / 'first'}"]), tmp_path / "unused")
    np.testing.assert_allclose(losses, one_process[STOP_AT:], rtol=0, atol=1e-9)


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_others_with_one_message(corpus, tmp_path):
    context = mp.start_processes(rank_dies, args=(2, free_port(), str(corpus), str(tmp_path)), nprocs=2,
                                 join=False, start_method="spawn")
    try:
        for process in context.processes:
            process.join(HANG)
        assert [p.exitcode for p in context.processes] == [0, 9]
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    assert (tmp_path / "error.txt").read_text().startswith("rank 0 of 2 could not average the gradients (")


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(corpus, tmp_path):
    spawn(2, str(corpus), str(tmp_path), main=rank_signalled)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # the signal came after step 12's all-reduce, so the ranks agree on it at step 13's
    assert ranks == [{"steps": 14, "stopped_by": signal.SIGINT}, {"steps": 14, "stopped_by": signal.SIGTERM}]
    assert int(json.loads(np.load(tmp_path / "run" / "ckpt_last.npz")["progress"].item())["step"]) == 14


def test_streams_are_shared_out_whole_and_disjoint():
    for num_streams, world_size in [(8, 2), (7, 3), (2, 4)]:
        rows = [np.arange(num_streams)[stream_slice(r, world_size, num_streams)] for r in range(world_size)]
        np.testing.assert_array_equal(np.concatenate(rows), np.arange(num_streams))
        assert max(map(len, rows)) - min(map(len, rows)) <= 1


def test_a_state_is_sharded_on_its_stream_axis_whatever_its_layers():
    h = np.arange(2 * 6 * 3).reshape(2, 6, 3)       # (L, B, H)
    c = -h
    h_part, c_part = shard_state((h, c), slice(2, 4))
    np.testing.assert_array_equal(h_part, h[:, 2:4])
    np.testing.assert_array_equal(c_part, c[:, 2:4])
    (flat_part,) = shard_state((h[0],), slice(2, 4))  # today's (B, H), as a 1-tuple
    np.testing.assert_array_equal(flat_part, h[0, 2:4])


def test_one_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.join(batch_size=5) is distributed.SOLO


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UserError, match=r"train.batch_size=8 streams do not split evenly over 3 ranks"):
        distributed.join(batch_size=8)


def test_the_benchmark_worker_times_full_steps(capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    bench_distributed.main(["--worker", "--steps", "2"])
    figures = json.loads(capsys.readouterr().out)
    assert figures["world_size"] == 1 and figures["reduce_fraction"] == 0.0
    B, T = bench_distributed.B, bench_distributed.T
    assert figures["chars_per_sec"] == pytest.approx(B * T * 1000 / figures["step_ms"])
