"""A fake GPU for CPU-only tests: tensors that claim `cuda:0` but hold real CPU data.

Code that makes a tensor without `device=` (a finished-rows mask, a loss accumulator)
works on a CPU and breaks on a GPU with "Expected all tensors to be on the same device".
A CPU-only test cannot see that with real tensors, and PyTorch's `meta` device has no
data, so anything that reads a value (`.item()`, `nonzero`, boolean indexing,
`.tolist()`) stops it. Here every tensor of the fake GPU is a wrapper
(`torch.Tensor._make_wrapper_subclass`, as FakeTensor and DTensor are built) around a
real CPU tensor: each op runs on the real data, and an op that mixes the fake GPU with a
CPU tensor raises the error CUDA raises. The rules are CUDA's:

- a 0-dim CPU tensor is a scalar every device accepts as an *input* (`cuda_t * cpu_0dim`),
  but not as the *output* of an in-place op (`cpu_total += cuda_loss` raises);
- copies between devices (`.to`, `.cpu()`, `copy_`) mix devices by design;
- advanced indexing accepts CPU index tensors for a CUDA tensor (`cuda_t[cpu_idx]`),
  not CUDA indices for a CPU tensor;
- a random op on the GPU needs a GPU generator, not a CPU one.

`with FakeGPU():` makes factories given `device=FAKE_GPU` (or `"cuda"`) and `.to(FAKE_GPU)`
produce fake-GPU tensors; the mode also declares itself PyTorch's fake-tensor mode, which is
what stops PyTorch from initialising CUDA for a `device="cuda"` argument on a machine that
has none (FakeTensorMode does the same). Outside the mode, fake-GPU tensors still compute
(test code can compare results) and `.cpu()` brings them back.

    with FakeGPU():
        model = module_to_fake_gpu(TinyLM())
        out = generate(model, prompt.to(FAKE_GPU), 4)   # raises DeviceMixError on a mix-up
    out.cpu()

Its own tests: tests/test_infra_fake_device.py. Used by test_step5_contracts.py and
test_step6_contracts.py.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

FAKE_GPU = torch.device("cuda", 0)
aten = torch.ops.aten

# Ops that move data between devices: mixing is what they are for.
_COPIES = {aten._to_copy.default, aten.copy_.default, aten._copy_from.default,
           aten._copy_from_and_resize.default, aten.lift_fresh.default, aten.lift_fresh_copy.default}
# Advanced indexing: index tensors may sit on the CPU whatever the indexed tensor's device.
_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
             aten._index_put_impl_.default, aten._unsafe_index.Tensor}


class DeviceMixError(RuntimeError):
    """The error a real GPU raises for an op that mixes a GPU tensor with a CPU one."""


def is_fake_gpu(x: object) -> bool:
    return isinstance(x, FakeGPUTensor)


def _is_fake_device(device: object) -> bool:
    return device is not None and torch.device(device).type == FAKE_GPU.type


class FakeGPUTensor(torch.Tensor):
    """A tensor on the fake GPU: `.device` is cuda:0, `._host` its CPU data."""

    _host: torch.Tensor

    @staticmethod
    def __new__(cls, real: torch.Tensor, requires_grad: bool = False):
        if isinstance(real, FakeGPUTensor):
            raise TypeError("FakeGPUTensor wraps a plain CPU tensor, not another FakeGPUTensor")
        r = torch.Tensor._make_wrapper_subclass(
            cls, real.shape, strides=real.stride(), storage_offset=real.storage_offset(), dtype=real.dtype,
            layout=real.layout, device=FAKE_GPU, requires_grad=requires_grad)
        r._host = real
        return r

    def __repr__(self, *, tensor_contents=None) -> str:  # noqa: D105
        text = repr(self._host)
        return text[:-1] + f", device='{FAKE_GPU}')" if text.endswith(")") else text

    def __format__(self, spec: str) -> str:
        return self.item().__format__(spec) if self.dim() == 0 else object.__format__(self, spec)

    def tolist(self):  # CUDA tensors give their values (PyTorch's own tolist refuses subclasses)
        return self._host.tolist()

    def numpy(self, *args, **kwargs):
        raise TypeError(f"can't convert {FAKE_GPU} device type tensor to numpy. Use Tensor.cpu() to copy the "
                        f"tensor to host memory first.")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.is_grad_enabled() or func is torch.Tensor.requires_grad_:
            _refuse_autograd(func, args, kwargs)
        own = _GUARDED.get(func)
        if own is not None:
            return own(*args, **kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)  # no conversion of the results: .cpu() stays a CPU tensor

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


# --- the Python entry points that take a device guard before they dispatch
#
# A few of PyTorch's Python bindings (indexing, nonzero, contiguous, copy_, ~, int()) set the
# current device of their tensor's device type before they reach the dispatcher, which
# a CPU-only build cannot do for `cuda` ("PyTorch is not linked with support for cuda
# devices"). For fake-GPU tensors they are rebuilt here from the aten ops they stand
# for, which dispatch (and go through autograd) as any other op. (Found by calling every
# Tensor method and torch function on a fake-GPU tensor; a binding missed here raises
# "not linked with support for cuda devices", which the tests treat as "cannot check
# this code on the fake GPU", never as the learner's mistake.)


def _index_parts(x: torch.Tensor, index) -> tuple[torch.Tensor, list]:
    """Apply the basic part of `x[index]` (ints, slices, None, ...) as PyTorch does (select,
    slice, unsqueeze); return the view and the advanced indices aligned to its dims."""
    if not isinstance(index, tuple):
        index = (index,)
    index = tuple(torch.tensor(i) if isinstance(i, list) else i for i in index)
    consumed = sum(0 if i is None or i is Ellipsis else
                   (i.dim() if isinstance(i, torch.Tensor) and i.dtype == torch.bool else 1) for i in index)
    out, dim, advanced, covered = x, 0, [], 0  # covered: the dims the advanced list spans so far
    for i in index:
        if i is None:
            out = aten.unsqueeze.default(out, dim)
            dim += 1
        elif i is Ellipsis:
            dim += x.dim() - consumed
        elif isinstance(i, bool):
            raise TypeError("a Python bool as an index is not supported by the fake GPU")
        elif isinstance(i, int) or (hasattr(i, "__index__") and not isinstance(i, torch.Tensor)):
            out = aten.select.int(out, dim, int(i))
        elif isinstance(i, slice):
            step = 1 if i.step is None else int(i.step)
            out = aten.slice.Tensor(out, dim, i.start, i.stop, step)
            dim += 1
        elif isinstance(i, torch.Tensor):
            span = i.dim() if i.dtype == torch.bool else 1  # a k-dim mask covers k dims in one entry
            advanced += [None] * (dim - covered) + [i]
            dim += span
            covered = dim
        else:
            raise TypeError(f"the fake GPU does not support the index {i!r}")
    return out, advanced


def _getitem(x: torch.Tensor, index):
    out, advanced = _index_parts(x, index)
    return aten.index.Tensor(out, advanced) if advanced else out


def _setitem(x: torch.Tensor, index, value) -> None:
    out, advanced = _index_parts(x, index)
    if not isinstance(value, torch.Tensor):  # a Python number: a 0-dim CPU scalar, as PyTorch makes it
        value = torch.tensor(value, dtype=x.dtype)
    while value.dim() > out.dim() and value.size(0) == 1:  # PyTorch drops a value's leading 1-dims
        value = value[0]
    if advanced:
        aten.index_put_.default(out, advanced, value)
    else:
        aten.copy_.default(out, value)  # broadcasts, and may copy across devices


def _nonzero(x: torch.Tensor, *, as_tuple: bool = False):
    idx = aten.nonzero.default(x)
    return tuple(idx.unbind(1)) if as_tuple else idx


def _contiguous(x: torch.Tensor, memory_format=torch.contiguous_format):
    return x if x.is_contiguous(memory_format=memory_format) else aten.clone.default(x, memory_format=memory_format)


def _new_tensor(x: torch.Tensor, data, dtype=None, device=None, requires_grad=False):
    t = torch.tensor(data, dtype=dtype or x.dtype)
    return to_fake_gpu(t) if device is None or _is_fake_device(device) else t.to(device)


def _number(kind):
    return lambda x: kind(aten._local_scalar_dense.default(x))


_GUARDED = {
    torch.Tensor.__int__: _number(int),
    torch.Tensor.__index__: _number(int),
    torch.Tensor.__float__: _number(float),
    torch.Tensor.__complex__: _number(complex),
    torch.Tensor.__invert__: lambda x: aten.bitwise_not.default(x),
    torch.Tensor.new_tensor: _new_tensor,
    torch.Tensor.cuda: lambda x, *args, **kwargs: x,
    torch.Tensor.__getitem__: _getitem,
    torch.Tensor.__setitem__: _setitem,
    torch.Tensor.nonzero: _nonzero,
    torch.nonzero: _nonzero,
    torch.Tensor.contiguous: _contiguous,
    torch.Tensor.copy_: lambda x, src, non_blocking=False: aten.copy_.default(x, src, non_blocking),
}


def _refuse_autograd(func, args, kwargs) -> None:
    """Autograd cannot record a graph on a CUDA tensor in a CPU-only build (it asks for a CUDA
    device guard, and PyTorch aborts the whole process): a clear error instead, before it does."""
    wants = func is torch.Tensor.requires_grad_ and (args[1] if len(args) > 1 else kwargs.get("requires_grad", True))
    with torch._C.DisableTorchFunctionSubclass():  # reading .requires_grad is a torch function too
        wants = wants or any(is_fake_gpu(t) and t.requires_grad for t in tree_flatten((args, kwargs))[0])
    if wants:
        raise RuntimeError(f"{func.__name__}: the fake GPU runs without autograd (a tensor on it requires grad); "
                           f"use it under torch.no_grad() or with tensors that do not require grad")


def _where(t: torch.Tensor) -> str:
    return str(FAKE_GPU) if is_fake_gpu(t) else str(t.device)


def _written(func, args, kwargs) -> list[object]:
    """The arguments an op writes to: self of an in-place op, `out=` of an out variant."""
    out = []
    for i, a in enumerate(func._schema.arguments):
        if a.alias_info is not None and a.alias_info.is_write:
            if a.kwarg_only or i >= len(args):
                if a.name in kwargs:
                    out.append(kwargs[a.name])
            else:
                out.append(args[i])
    return [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]


def _mix_error(func, devices: set[str], detail: str = "") -> DeviceMixError:
    return DeviceMixError(
        f"Expected all tensors to be on the same device, but found at least two devices, "
        f"{', '.join(sorted(devices))}! (in {func}{detail}; on a real GPU this op raises the same)")


def _check_devices(func, args, kwargs, flat: list[object]) -> None:
    tensors = [t for t in flat if isinstance(t, torch.Tensor)]
    if not any(is_fake_gpu(t) for t in tensors) and not _is_fake_device(kwargs.get("device")):
        return
    if func in _COPIES:
        return
    generators = [g for g in flat if isinstance(g, torch.Generator)]
    for g in generators:
        if g.device.type != FAKE_GPU.type:
            raise DeviceMixError(f"Expected a '{FAKE_GPU.type}' device type for generator but found "
                                 f"'{g.device.type}' (in {func}: a random op on the GPU drew with a CPU generator)")
    if func in _INDEXING:
        indexed = args[0]
        indices = args[1] if len(args) > 1 else kwargs.get("indices", [])
        for i in indices:
            if i is not None and is_fake_gpu(i) and not is_fake_gpu(indexed):
                raise DeviceMixError(
                    f"indices should be either on cpu or on the same device as the indexed tensor (cpu) "
                    f"(in {func}: a {FAKE_GPU} index into a CPU tensor)")
        tensors = [indexed] + [t for t in (list(args[2:3]) + [kwargs.get("values")]) if isinstance(t, torch.Tensor)]
    written = _written(func, args, kwargs)
    devices = {_where(t) for t in tensors
               if is_fake_gpu(t) or t.dim() > 0 or any(t is w for w in written)}
    if len(devices) > 1:
        plain = [t for t in tensors if not is_fake_gpu(t)]
        detail = "" if not plain else f": a CPU tensor of shape {tuple(plain[0].shape)} met a {FAKE_GPU} one"
        raise _mix_error(func, devices, detail)


def _run(func, args, kwargs):
    """Run `func` on the real data; wrap what it returns when it lands on the fake GPU."""
    flat, spec = tree_flatten((args, kwargs))
    _check_devices(func, args, kwargs, flat)
    wrappers = [t for t in flat if is_fake_gpu(t)]
    device = kwargs.get("device")
    to_gpu = _is_fake_device(device) if device is not None else bool(wrappers)
    real_args, real_kwargs = tree_unflatten([t._host if is_fake_gpu(t) else t for t in flat], spec)
    if _is_fake_device(device):
        real_kwargs = dict(real_kwargs, device=torch.device("cpu"))
    out = func(*real_args, **real_kwargs)
    # An op that returns one of its inputs (in-place, out=) returns that very object.
    inputs = {id(t._host): t for t in wrappers}
    inputs.update({id(t): t for t in flat if isinstance(t, torch.Tensor) and not is_fake_gpu(t)})

    def wrap(x):
        if not isinstance(x, torch.Tensor):
            return x
        if id(x) in inputs:
            return inputs[id(x)]
        return FakeGPUTensor(x) if to_gpu else x

    flat_out, out_spec = tree_flatten(out)
    return tree_unflatten([wrap(x) for x in flat_out], out_spec)


class FakeGPU(TorchDispatchMode):
    """Factories and `.to()` given the fake GPU's device make fake-GPU tensors; every op is checked."""

    def __init__(self) -> None:
        super().__init__()
        # The fake-tensor mode's slot: with it taken, PyTorch does not initialise CUDA for a
        # `device="cuda"` argument (which raises on a machine without CUDA).
        self._mode_key = torch._C._TorchDispatchModeKey.FAKE

    def __enter__(self):
        # A no-op device guard for CUDA where none is registered (a CPU-only build), as
        # FakeTensorMode installs: indexing and friends ask for one before they dispatch.
        torch._C._ensureCUDADeviceGuardSet()
        # `torch.tensor(data, device=...)` builds a CPU tensor and then moves it through the
        # dispatcher (where this mode sees the move), as under FakeTensorMode.
        self._lift_cpu_before = torch._C._only_lift_cpu_tensors()
        torch._C._set_only_lift_cpu_tensors(True)
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            torch._C._set_only_lift_cpu_tensors(self._lift_cpu_before)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def to_fake_gpu(x: torch.Tensor) -> FakeGPUTensor:
    """A copy of a CPU tensor on the fake GPU (without autograd: see `_refuse_autograd`)."""
    if is_fake_gpu(x):
        return x
    return FakeGPUTensor(x.detach().clone())


def module_to_fake_gpu(module: nn.Module) -> nn.Module:
    """Move a module's parameters and buffers to the fake GPU, in place; tied ones stay tied.

    The parameters no longer require grad (no autograd on the fake GPU): for forward-only
    code (evaluation, sampling), whether or not it turns gradients off itself."""
    done: dict[int, torch.Tensor] = {}
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                if id(p) not in done:
                    done[id(p)] = nn.Parameter(to_fake_gpu(p.detach()), requires_grad=False)
                m._parameters[name] = done[id(p)]
        for name, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[name] = done.setdefault(id(b), to_fake_gpu(b))
    return module
