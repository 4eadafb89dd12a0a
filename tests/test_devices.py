"""backend.device: checked like every other key, one GPU per torchrun rank, a GPU run's checkpoint usable on a
CPU-only machine; and the tests that need a GPU, marked gpu (skipped with a reason where torch sees none)."""

import dataclasses
import io

import pytest
import torch

from charrnn import devices
from charrnn.devices import resolve_device
from charrnn.checkpoint import load_checkpoint, save_checkpoint
from charrnn.config import to_sample_config
from charrnn.start import run_config
from charrnn.errors import UserError
from charrnn.sampling import sample
from charrnn.tools import acceptance, bench_cli
from charrnn.training import loop as trainer
from tests.conftest import TINY, assert_user_error, compose_raw, make_config, run_scripts

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
NO_GPU = "but torch sees no CUDA device; use backend.device=auto or cpu"


@pytest.mark.parametrize("overrides,message", [
    pytest.param(["backend.device=cuda"], "backend.device=cuda " + NO_GPU, marks=no_cuda),
    pytest.param(["backend.device=cuda:1"], "backend.device=cuda:1 " + NO_GPU, marks=no_cuda),
    pytest.param(["backend.precision=fp16"], "backend.precision=fp16 trains on cuda only, not on the CPU; use "
                                             "backend.precision=bf16", marks=no_cuda),
    (["backend.device=cpu", "backend.precision=fp16"], "backend.precision=fp16 trains on cuda only, not on the CPU"),
    (["backend.device=tpu"], "backend.device='tpu' is not one of auto, cpu, cuda, cuda:N, mps"),
    (["backend.device=cuda:x"], "backend.device='cuda:x' is not one of auto, cpu, cuda, cuda:N, mps"),
    (["backend.precision=fp8"], "backend.precision='fp8' is not one of fp32, bf16, fp16"),
    (["backend.recurrence=fast"], "backend.recurrence='fast' is not one of auto, fused, loop"),
    (["backend.precision=bf16", "model.dtype=float64"], "backend.precision=bf16 computes from float32 weights, "
                                                        "not model.dtype=float64; set model.dtype=float32"),
    (["backend=numpy", "backend.precision=bf16"], "backend=numpy computes in model.dtype; backend.precision=bf16 "
                                                  "needs backend=torch"),
    (["backend=numpy", "+backend.recurrence=fused"], "backend=numpy runs its own loop; backend.recurrence=fused "
                                                     "chooses the torch backend's: leave it out, or use backend=torch"),
])
def test_backend_keys_are_checked_in_one_line(overrides, message):
    backend = [] if any(o.startswith("backend=") for o in overrides) else ["backend=torch"]
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        make_config([*backend, *overrides])


def test_every_accepted_combination_on_the_cpu_builds():
    for precision in ("fp32", "bf16"):
        for recurrence in ("auto", "fused", "loop"):
            cfg = make_config(["backend=torch", "backend.device=cpu", f"backend.precision={precision}",
                               f"backend.recurrence={recurrence}"])
            assert (cfg.backend.precision, cfg.backend.recurrence) == (precision, recurrence)


@no_cuda
def test_asking_for_cuda_without_one_ends_training_sampling_and_the_check_in_one_line(tmp_path, capsys):
    (train,) = run_scripts(["train.py", "backend=torch", "backend.device=cuda", f"hydra.run.dir={tmp_path / 'run'}"])
    assert_user_error(train, "backend.device=cuda " + NO_GPU)
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="backend.device=cuda " + NO_GPU):
        to_sample_config(compose_raw([f"checkpoint={tmp_path}", "backend=torch", "backend.device=cuda"], "sample"))
    with pytest.raises(SystemExit) as exit_:
        bench_cli.main(["--device", "cuda", "--check"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: --device=cuda but torch sees no CUDA device; use --device=auto or cpu\n"


@pytest.fixture
def two_gpus(monkeypatch):
    """torch told that it sees two CUDA devices: enough to name them (nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_each_torchrun_rank_takes_its_own_gpu(two_gpus, monkeypatch):
    assert resolve_device("cuda") == resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UserError, match=r"backend.device=cuda:2 but torch sees 2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match=r"backend.device=cuda:0 under torchrun: each rank takes its own GPU "
                                        r"\(cuda:LOCAL_RANK\); pass backend.device=cuda"):
        resolve_device("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(UserError, match=r"start at most 2 processes per machine \(--nproc_per_node=2\)"):
        resolve_device("cuda")


def test_fp16_is_checked_against_the_device_auto_resolves_to(two_gpus):
    cfg = make_config(["backend=torch", "backend.precision=fp16"])
    assert cfg.backend.device == "auto" and cfg.backend.precision == "fp16"
    devices.check_precision("bf16", "cuda", "float32")
    with pytest.raises(UserError, match="backend.precision=fp16 trains on cuda only, not on mps; use "
                                        "backend.precision=bf16"):
        devices.check_precision("fp16", "mps", "float32")


@no_cuda
def test_a_gpu_run_s_checkpoint_samples_and_resumes_on_a_cpu_only_machine(corpus, tmp_path):
    """A checkpoint whose config says cuda and fp16 (what a GPU run writes) samples with either backend,
    and resumes once the device and precision are overridden, as the one-line error says."""
    run = trainer.train(make_config([f"data.path={corpus}", *TINY, "backend=torch", "backend.device=cpu",
                                     "train.max_iters=10"]), tmp_path / "run").run_dir
    for name in ("ckpt_last.npz", "ckpt_best.npz"):
        ckpt = load_checkpoint(run / name)
        gpu = {**ckpt.config["backend"], "device": "cuda", "precision": "fp16", "recurrence": "fused"}
        save_checkpoint(run / name, dataclasses.replace(ckpt, config={**ckpt.config, "backend": gpu}))
    texts = []
    for backend in ("numpy", "torch"):
        out = io.StringIO()
        sample(to_sample_config(compose_raw([f"checkpoint={run}", f"backend={backend}", "length=40", "seed=3"],
                                            config_name="sample")), out)
        texts.append(out.getvalue())
    assert len(texts[0]) > 40 and texts[0] == texts[1]
    resume = [f"train.resume={run}", "train.max_iters=12"]
    with pytest.raises(UserError, match=r"does not validate \(backend.device=cuda but torch sees no CUDA device"):
        run_config(compose_raw(resume), resume)
    overridden = [*resume, "backend.device=cpu", "backend.precision=fp32"]
    cfg = run_config(compose_raw(overridden), overridden)
    assert (cfg.backend.device, cfg.backend.precision, cfg.backend.recurrence) == ("cpu", "fp32", "fused")
    assert trainer.train(cfg, tmp_path / "new").steps == 12


@pytest.mark.gpu
def test_the_kernels_equal_the_loop_and_numpy_on_the_gpu():
    checks = list(acceptance.exactness("cuda"))
    assert len(checks) == 18 and all(c.passed for c in checks), [c.line() for c in checks if not c.passed]


@pytest.mark.gpu
def test_every_precision_trains_on_the_gpu():
    checks = list(acceptance.precision("cuda", shape=(64, 16, 32), steps=100))
    assert {c.name.split()[1] for c in checks} == {"fp32", "bf16", "fp16"}
    assert all(c.passed for c in checks), [c.line() for c in checks if not c.passed]


@pytest.mark.gpu
def test_a_gpu_run_resumes_bit_exact_and_samples_on_the_cpu(corpus, tmp_path):
    config = [f"data.path={corpus}", *TINY, "backend=torch", "backend.device=cuda", "model=lstm",
              "model.num_layers=2", "model.dropout=0.3", "train.max_iters=20"]
    trainer.train(make_config(config), tmp_path / "unbroken")
    trainer.train(make_config([*config, "train.max_iters=10", "train.lr_decay_iters=20"]), tmp_path / "resumed")
    trainer.train(make_config([*config, f"train.resume={tmp_path / 'resumed'}"]), tmp_path / "new")
    a, b = (load_checkpoint(tmp_path / run / "ckpt_last.npz") for run in ("unbroken", "resumed"))
    assert all((a.params[k] == b.params[k]).all() for k in a.params)
    out = io.StringIO()
    sample(to_sample_config(compose_raw([f"checkpoint={tmp_path / 'resumed'}", "backend=numpy", "length=20"],
                                        config_name="sample")), out)
    assert len(out.getvalue()) > 20
