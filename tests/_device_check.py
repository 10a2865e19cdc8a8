"""Catch code that would mix devices on a GPU, on a CPU-only machine.

A tensor made without `device=` (e.g. `torch.arange(T)`) lands on the CPU; on a GPU the
next op that meets a CUDA tensor raises "Expected all tensors to be on the same device".
CPU-only tests never see that. `device_mistakes` runs the learner's code on the fake GPU
of tests/_fake_device.py (real data, so any correct code runs: `.item()`, boolean masks,
`nonzero`); where the fake GPU cannot run an op the CPU can (sdpa's fused kernels), it
falls back to PyTorch's `meta` device (shapes only) with a dispatch mode that records every
op whose tensor arguments sit on more than one device; code that reads a value there is
not checked rather than failed.
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


def device_mistakes(build, run) -> tuple[str | None, str | None]:
    """(what mixed devices, or None; why nothing could be checked, or None).

    `build(device)` returns the inputs (module, tensors) on `device`; `run(*inputs)` calls the
    learner's code on them. First on the fake GPU, then, if that cannot run the code for a
    reason other than devices, on `meta`."""
    from _fake_device import FAKE_GPU, DeviceMixError, FakeGPU

    try:
        with FakeGPU():
            run(*build(FAKE_GPU))
        return None, None
    except DeviceMixError as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0]}", None
    except NotImplementedError:
        raise  # a kata stub: the guard around the learner's code reports it
    except Exception as e:  # noqa: BLE001 - the fake GPU could not run it: try the shapes-only device
        fake_problem = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    try:
        _, mixed = run_recording_devices(run, *build(torch.device("meta")))
    except RuntimeError as e:
        if "meta" in str(e):  # reads a value, or an op meta lacks: nothing to check here
            return None, f"neither the fake GPU ({fake_problem}) nor the meta device could run it"
        raise
    return (", ".join(mixed[:3]) if mixed else None), None
