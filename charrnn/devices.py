"""backend.device and backend.precision: which device a name means on this machine, and which arithmetic
each device can train in. torch is imported only for a name that needs it, so that checking a NumPy
run's config never pays for it.

    backend.device     auto (CUDA when torch sees a GPU, else the CPU) | cpu | cuda | cuda:N | mps
    backend.precision  fp32 (the weights' own dtype) | bf16 (CUDA, CPU, MPS) | fp16 (CUDA)

Under torchrun each rank takes its own GPU, cuda:LOCAL_RANK (local_rank; charrnn.distributed runs the ranks).
"""

import os
import re

from charrnn.errors import UserError

DEVICES = "auto, cpu, cuda, cuda:N, mps"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
PRECISIONS = ("fp32", "bf16", "fp16")
# The device types each reduced precision trains on (torch has no fp16 gradient path worth using on the CPU).
PRECISION_DEVICES = {"bf16": ("cuda", "cpu", "mps"), "fp16": ("cuda",)}


def valid_device(name: str) -> bool:
    """Whether name has one of the forms of DEVICES (whether this machine has it is resolve_device's)."""
    return bool(_DEVICE.fullmatch(name))


def needs_torch(device: str, precision: str) -> bool:
    """Whether checking this pair takes torch: any accelerator, and fp16, whose device "auto" decides."""
    return device not in ("auto", "cpu") or precision == "fp16"


def local_rank() -> int | None:
    """This process's index among the ranks torchrun started on its machine (LOCAL_RANK), or None for a
    run of one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return None
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str, key: str = "backend.device"):
    """The torch.device that name (the value of key) names here, or a UserError naming the fix."""
    import torch

    if not valid_device(name):
        raise UserError(f"{key}={name!r} is not one of {DEVICES}")
    rank = local_rank()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise UserError(f"{key}=mps but torch sees no Apple GPU (MPS); use {key}=auto or cpu")
        return torch.device("mps")
    if not name.startswith("cuda"):
        return torch.device(name)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UserError(f"{key}={name} but torch sees no CUDA device; use {key}=auto or cpu")
    if ":" in name:
        index = int(name.split(":")[1])
        if rank is not None:
            raise UserError(f"{key}={name} under torchrun: each rank takes its own GPU (cuda:LOCAL_RANK); "
                            f"pass {key}=cuda")
        if index >= count:
            raise UserError(f"{key}={name} but torch sees {count} CUDA device(s), cuda:0 to "
                            f"cuda:{count - 1}; name one of them")
        return torch.device("cuda", index)
    if rank is not None and rank >= count:
        raise UserError(f"torchrun started rank {rank} of this machine but torch sees {count} CUDA device(s); "
                        f"start at most {count} processes per machine (--nproc_per_node={count})")
    return torch.device("cuda", rank or 0)


def check_precision(precision: str, device_type: str, dtype: str | None) -> None:
    """A UserError unless backend.precision can train model.dtype weights (None: any) on a device of this type."""
    if precision == "fp32":
        return
    if dtype not in (None, "float32"):
        raise UserError(f"backend.precision={precision} computes from float32 weights, not model.dtype={dtype}; "
                        f"set model.dtype=float32, or backend.precision=fp32")
    if device_type not in PRECISION_DEVICES[precision]:
        fix = "use backend.precision=bf16" if device_type in PRECISION_DEVICES["bf16"] else "use backend.precision=fp32"
        where = "the CPU" if device_type == "cpu" else device_type
        raise UserError(f"backend.precision={precision} trains on {', '.join(PRECISION_DEVICES[precision])} only, "
                        f"not on {where}; {fix}")
