"""Catch code that would mix devices on a GPU, on a CPU-only machine.

A tensor made without `device=` (e.g. `torch.arange(T)`) lands on the CPU; on a GPU the
next op that meets a CUDA tensor raises "Expected all tensors to be on the same device".
CPU-only tests never see that. Here the module and its inputs live on PyTorch's `meta`
device (shapes only, no data) and a dispatch mode records every op whose tensor
arguments sit on more than one device, the ops CUDA would reject.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# Ops that accept CPU index tensors for a CUDA tensor (advanced indexing): not a mistake.
_MIXING_ALLOWED = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}


class MixedDevices(TorchDispatchMode):
    """`with MixedDevices() as m: ...` then `m.mixed`: ["aten::embedding on cpu, meta", ...]."""

    def __init__(self) -> None:
        super().__init__()
        self.mixed: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket._qualified_op_name if hasattr(func, "overloadpacket") else str(func)
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        # A 0-dim CPU tensor is a scalar every device accepts as an input, but not as the
        # output of an in-place op (`cpu_total += cuda_loss` raises on a GPU).
        inplace_self = args[0] if name.endswith("_") and args and isinstance(args[0], torch.Tensor) else None
        devices = {t.device.type for t in tensors
                   if t is inplace_self or not (t.device.type == "cpu" and t.dim() == 0)}
        if len(devices) > 1 and name not in _MIXING_ALLOWED:
            self.mixed.append(f"{name} on {', '.join(sorted(devices))}")
        return func(*args, **kwargs)


def run_recording_devices(fn, *args, until_item: bool = False, **kwargs):
    """(fn's result or None, the device problems seen): ops that mixed devices, or the
    error a meta kernel raised for one (some check devices themselves).

    `until_item`: fn reads a number from a tensor (`.item()`, `bool(t)`) at some point,
    which a meta tensor cannot give; the ops up to there are checked, then it stops."""
    with MixedDevices() as seen:
        try:
            out = fn(*args, **kwargs)
        except RuntimeError as e:
            if until_item and "cannot be called on meta tensors" in str(e):
                return None, seen.mixed
            if "device" not in str(e):
                raise
            return None, [*seen.mixed, f"RuntimeError: {str(e).splitlines()[0]}"]
    return out, seen.mixed
