"""Data-parallel plumbing for runs launched by `torchrun` (PyTorch's own launcher).

`torchrun --nproc_per_node N -m reference.step8_pretrain ...` starts N copies of the
same program and tells each who it is through environment variables: `RANK` (0..N-1
over all machines), `WORLD_SIZE`, `LOCAL_RANK` (which GPU on this machine) and
`MASTER_ADDR`/`MASTER_PORT` (where rank 0 listens). `setup()` reads them, joins the
process group (NCCL between GPUs, gloo on CPU) and picks this rank's device. Started
with plain `python`, none of those variables exist and everything here is a no-op:
rank 0 of a world of 1.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, plots, samples and writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def _device_for(name: str, local_rank: int) -> torch.device:
    """`auto` -> CUDA, else MPS, else CPU (`kata.precision.resolve_device`); under
    torchrun a CUDA device becomes this rank's GPU `cuda:LOCAL_RANK`."""
    from kata.precision import resolve_device

    device = resolve_device(name)  # ValueError naming the fix when the device is absent
    if device.type != "cuda" or not launched_by_torchrun():
        return device
    if device.index is None:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPU(s): "
                f"start at most that many processes per machine (torchrun --nproc_per_node)"
            )
        device = torch.device("cuda", local_rank)
    return device


def setup(device_name: str = "auto") -> DistInfo:
    """Join the process group if `torchrun` started us; return rank, world size and device.

    Idempotent: a second call (or a caller that already initialised the group) just
    reports the current state. The backend follows the device: NCCL for GPUs (it
    all-reduces gradients GPU to GPU), gloo for CPU (tests and laptops).
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device_for(device_name, local_rank)
    if not launched_by_torchrun() and not is_initialized():
        return DistInfo(0, 1, 0, device)
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing and not is_initialized():
        raise RuntimeError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} is set but {', '.join(missing)} is not: "
            f"start multi-process runs with torchrun (see docs/scale-out.md), not by hand"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before init, so NCCL binds this rank to its own GPU
    if not is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # init_method env:// reads MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE.
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def teardown(wait_for_all: bool = True) -> None:
    """Leave the process group (a no-op when there is none).

    `wait_for_all` waits until every rank got here first; after an error it must be
    False, since the other ranks may be stuck in a collective and never arrive
    (torchrun then stops them when this process exits with an error).
    """
    if is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of `t` over all ranks (a new tensor; `t` itself is left alone)."""
    if not is_initialized():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over all ranks (a new tensor)."""
    if not is_initialized():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (any picklable object; tensors arrive on the CPU)."""
    if not is_initialized():
        return obj
    box = [obj]
    # NCCL moves the pickled bytes through this rank's GPU (set by setup()); gloo through memory.
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def main_first():
    """Each machine's first process runs the block first, then the others.

    For work that fills a cache on local disk: every process tokenising the corpus at
    once would race on the same cache file; with this, one process per machine
    (LOCAL_RANK 0) writes it and the others read it.
    """
    first = int(os.environ.get("LOCAL_RANK", "0")) == 0
    if not first:
        barrier()
    try:
        yield
    finally:
        if first:
            barrier()


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """`DistributedDataParallel(model)` when there are several ranks, else `model` itself.

    DDP broadcasts rank 0's weights at construction (so every rank starts identical,
    resumed or not) and averages gradients across ranks during `backward()`: after
    it, every rank holds the gradient of the mean loss over the whole global batch.
    """
    if info.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model under `torch.compile` and/or DDP wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model) if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
