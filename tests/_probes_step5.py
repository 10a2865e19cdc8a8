"""Step 5's probes: the learner-facing half of tests/test_step5_*.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with answers they compute themselves. The models here are `_tiny_lm.TinyLM` and test
doubles built on it (spies on the optimizer, a fake gradient scaler), rebuilt in the
probe from their seed; the batches, gradients and schedules come from the test.

What the learner's functions return is handed back through `returned`, a description
as data (kind, type name, repr, whether a tensor still requires grad), so the tests'
return-contract checks (tests/_step5_checks.py) say what came back as they did when
they held the object itself.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from _fake_device import DeviceMixError, FakeGPU, module_to_fake_gpu
from _support import _solution_frame, not_implemented_guard as call, solution_name, student
from _tiny_lm import TinyLM

S5 = "step5_train_loop"


def _s5(name: str):
    return getattr(student(S5), name)


# --------------------------------------------------------------- what came back, as data


def returned(x: object) -> dict:
    """What a learner's function returned, as data for the tests' contract checks.

    kind "tensor" (the value, detached, and whether it still required grad), "float" (a
    Python float, numpy's float64 included, as a plain float), "sequence" (a tuple or
    list: its items described the same way), "dict" (its str-keyed items) or "other";
    every kind but "tensor" carries the type's name and the repr the messages show.
    """
    if isinstance(x, torch.Tensor):
        return {"kind": "tensor", "value": x, "requires_grad": bool(x.requires_grad), "type": type(x).__name__}
    shown = {"type": type(x).__name__, "repr": repr(x)}
    if isinstance(x, float):
        return {"kind": "float", "value": float(x), **shown}
    if isinstance(x, (tuple, list)):
        return {"kind": "sequence", "items": [returned(i) for i in x], **shown}
    if isinstance(x, dict):
        return {"kind": "dict", "items": {k: returned(v) for k, v in x.items() if isinstance(k, str)}, **shown}
    try:
        number = float(x)  # what float(...) in a test made of it (an int, a numpy scalar)
    except Exception:  # noqa: BLE001 - not a number: the tests say what it is
        number = None
    return {"kind": "other", "float": number, "dtype": str(getattr(x, "dtype", "")), **shown}


def _number(x: object) -> object:
    """lr_at's value as data: a tensor, a plain float (a float subclass too), an int, or a description."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, float):
        return float(x)
    if isinstance(x, int) and not isinstance(x, bool):
        return int(x)
    return {"type": type(x).__name__, "repr": repr(x)}


def _plain(x: object) -> object:
    """An optimizer setting (lr, weight_decay, betas) as data; anything else as its repr."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, bool):
        return bool(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if isinstance(x, (tuple, list)):
        return tuple(_plain(i) for i in x)
    return repr(x)


def _dtypes(seen: list) -> list:
    return [None if d is None else str(d) for d in seen]


# ---------------------------------------------------------------- join_documents, chunk_tokens


def join_documents(docs: list, eos: int) -> dict:
    """join_documents(docs, eos) as numpy sees it: its dtype, number of dimensions and size,
    and its values (when they are int64 ids)."""
    arr = np.asarray(call(_s5("join_documents"), docs, eos))
    return {"dtype": str(arr.dtype), "ndim": int(arr.ndim), "size": int(arr.size),
            "values": arr.tolist() if arr.dtype == np.int64 else None}


STREAM_KINDS = {  # how a test's int64 stream is handed to chunk_tokens
    "list": lambda t: t.tolist(),
    "numpy": lambda t: t.numpy(),
    "tensor": lambda t: t,
    "numpy uint16": lambda t: t.numpy().astype(np.uint16),
    "numpy int32": lambda t: t.numpy().astype(np.int32),
    "torch int32": lambda t: t.to(torch.int32),
}


def chunk_tokens(stream: torch.Tensor, kind: str, block: int) -> object:
    """chunk_tokens on the int64 `stream` given as `kind` (a list, a numpy array, a tensor, of
    another dtype): the tensor it returned, or a description of what else it returned."""
    out = call(_s5("chunk_tokens"), STREAM_KINDS[kind](stream.clone()), block)
    if isinstance(out, torch.Tensor):
        return out
    return {"kind": "other", "type": type(out).__name__, "dtype": str(getattr(out, "dtype", ""))}


# ----------------------------------------------------------------------- configure_optimizer


def configure_optimizer(lr: float, weight_decay: float, betas: tuple | None, grads: dict) -> dict:
    """configure_optimizer(TinyLM(), lr, weight_decay[, betas=betas]): the optimizer's class and
    its parameter groups (each parameter by its name in the model, None for one that is not
    the model's), then the parameters after one step from the gradients `grads` (by name)."""
    model = TinyLM()
    kwargs = {} if betas is None else {"betas": tuple(betas)}
    opt = call(_s5("configure_optimizer"), model, lr, weight_decay, **kwargs)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = {"type": type(opt).__name__, "is_adamw": isinstance(opt, torch.optim.AdamW), "groups": None,
            "after_step": None, "step_error": ""}
    try:
        seen["groups"] = [
            {"params": [names.get(id(p)) for p in g["params"]],
             "weight_decay": _plain(g.get("weight_decay")), "lr": _plain(g.get("lr")), "betas": _plain(g.get("betas"))}
            for g in opt.param_groups]
    except Exception as e:  # noqa: BLE001 - not an optimizer's groups: the test says so
        seen["step_error"] = f"{type(e).__name__}: {e}"
        return seen
    try:
        for name, p in model.named_parameters():
            p.grad = grads[name].clone()
        opt.step()
        seen["after_step"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    except Exception as e:  # noqa: BLE001 - reported by the test, after the groups
        seen["step_error"] = f"{type(e).__name__}: {e}"
    return seen


# ------------------------------------------------------------------------------------ lr_at


def lr_at(steps: list, max_lr: float, warmup: int, total: int, min_lr: float) -> list:
    """lr_at(step, max_lr, warmup, total, min_lr) for each step of `steps`, in order."""
    fn = _s5("lr_at")
    return [_number(call(fn, s, max_lr, warmup, total, min_lr)) for s in steps]


# ------------------------------------------------------------------------------- train_step


class SpyOptimizer(torch.optim.Optimizer):
    """Wraps a real optimizer; records the gradients as they are when step() runs."""

    def __init__(self, inner: torch.optim.Optimizer, model: torch.nn.Module) -> None:
        self.inner, self.model = inner, model
        self.grad_norms: list[float] = []
        self.grads: list[list[torch.Tensor | None]] = []
        self.zero_grad_calls = 0

    @property
    def param_groups(self):
        return self.inner.param_groups

    @property
    def state(self):
        return self.inner.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.zero_grad_calls += 1
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        grads = [None if p.grad is None else p.grad.detach().clone() for p in self.model.parameters()]
        self.grads.append(grads)
        self.grad_norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads if g is not None])).item())
        return self.inner.step(closure)


def _params(model: torch.nn.Module) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def train_step_with_a_spy(seed: int, x: torch.Tensor, max_norm: float) -> dict:
    """One train_step of TinyLM(seed) on `x` with AdamW(lr=1e-2, no decay) behind a spy: what it
    returned, the gradient norm each optimizer.step() saw, and the state dict afterwards."""
    model = TinyLM(seed=seed)
    spy = SpyOptimizer(torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0), model)
    out = call(_s5("train_step"), model, x, spy, max_norm)
    return {"out": returned(out), "grad_norms": list(spy.grad_norms), "params": dict(model.state_dict())}


def train_step_twice(seed: int, x: torch.Tensor) -> dict:
    """Two train_steps of TinyLM(seed) on the same batch `x` with SGD at lr 0 behind a spy
    (max_grad_norm 1e9): the norms they returned and the gradient norm each step saw."""
    model = TinyLM(seed=seed)
    spy = SpyOptimizer(torch.optim.SGD(model.parameters(), lr=0.0), model)
    _, n1 = call(_s5("train_step"), model, x, spy, 1e9)
    _, n2 = call(_s5("train_step"), model, x, spy, 1e9)
    return {"grad_norms": list(spy.grad_norms), "norms": [returned(n1), returned(n2)]}


def train_step_from_eval_mode(x: torch.Tensor, rng_seed: int) -> dict:
    """train_step (SGD at lr 0, max_grad_norm 1) of TinyLM(seed=2, dropout=0.5) given in eval
    mode, the CPU generator seeded with `rng_seed` just before: the model's mode after, and
    what it returned."""
    model = TinyLM(seed=2, dropout=0.5).eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    torch.manual_seed(rng_seed)  # the dropout mask the test's expected loss draws too
    out = call(_s5("train_step"), model, x, opt, 1.0)
    return {"training": bool(model.training), "out": returned(out)}


class AutocastSpy(TinyLM):
    """TinyLM that records, at every forward, whether CPU autocast is on and its dtype."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.seen: list[torch.dtype | None] = []

    def forward(self, input_ids, labels=None):
        on = torch.is_autocast_enabled(input_ids.device.type)
        self.seen.append(torch.get_autocast_dtype(input_ids.device.type) if on else None)
        return super().forward(input_ids, labels)


def train_step_autocast(seed: int, x: torch.Tensor, dtype: torch.dtype | None) -> dict:
    """train_step(..., autocast_dtype=dtype) of an AutocastSpy(seed) (SGD at lr 0): the autocast
    dtype each forward ran under (None: none) and what it returned."""
    model = AutocastSpy(seed=seed)
    out = call(_s5("train_step"), model, x, torch.optim.SGD(model.parameters(), lr=0.0), 1.0, autocast_dtype=dtype)
    return {"seen": _dtypes(model.seen), "out": returned(out)}


# --------------------------------------------------------------------------------- evaluate


def _model(spec: dict) -> torch.nn.Module:
    cls = {"TinyLM": TinyLM, "AutocastSpy": AutocastSpy}[spec.get("cls", "TinyLM")]
    model = cls(seed=spec.get("seed", 0), dropout=spec.get("dropout", 0.0))
    return model.train(spec.get("training", True))


def evaluate(spec: dict, chunks: torch.Tensor, args: tuple = (), kwargs: dict | None = None) -> dict:
    """evaluate(model, chunks, *args, **kwargs) of the model `spec` describes (its class, seed,
    dropout and mode): what it returned, the model's mode after it, and the autocast dtype
    of each forward (an AutocastSpy's)."""
    model = _model(spec)
    out = call(_s5("evaluate"), model, chunks, *args, **(kwargs or {}))
    return {"out": returned(out), "training": bool(model.training), "seen": _dtypes(getattr(model, "seen", []))}


def _solution_line(e: BaseException) -> str:
    """` (step5_train_loop.py:154)`: the deepest line of the learner's code in the traceback."""
    frame = _solution_frame(e.__traceback__, solution_name())
    return f" ({frame[0].name}:{frame[1]})" if frame is not None else ""


def evaluate_on_a_fake_gpu(seed: int, chunks: torch.Tensor, batch_size: int) -> dict:
    """evaluate(TinyLM(seed) on the fake GPU, CPU `chunks`, batch_size=batch_size): what it
    returned ("out"), or the device mix-up it raised and where ("mixed", "line"), or another
    error, which the fake GPU may not support ("unsupported")."""
    try:
        with FakeGPU():
            out = call(_s5("evaluate"), module_to_fake_gpu(TinyLM(seed=seed)), chunks, batch_size=batch_size)
    except DeviceMixError as e:
        return {"mixed": f"{type(e).__name__}: {e}", "line": _solution_line(e)}
    except Exception as e:  # noqa: BLE001 - not a device error: the test asks the CPU
        return {"unsupported": f"{type(e).__name__}: {e}"}
    return {"out": returned(out)}


# ------------------------------------------------------------------------ a gradient scaler


SCALE = 1024.0  # a power of two: scaling and unscaling fp32 gradients is exact


class CountingSGD(torch.optim.SGD):
    """SGD that counts its steps, whether a scaler made them, and the gradient norm each step used."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.direct_steps = 0
        self.scaler_steps = 0
        self.via_scaler = False
        self.norms_used: list[float] = []

    def step(self, closure=None):
        if self.via_scaler:
            self.scaler_steps += 1
        else:
            self.direct_steps += 1
        grads = [p.grad.detach().flatten() for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.norms_used.append(torch.linalg.vector_norm(torch.cat(grads)).item() if grads else 0.0)
        return super().step(closure)


class FakeScaler:
    """Scales by a fixed SCALE and records calls; the GradScaler methods train_step needs."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.calls: list[str] = []

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        self.calls.append("scale")
        return loss * SCALE

    def unscale_(self, optimizer) -> None:
        self.calls.append("unscale_")
        with torch.no_grad():
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad /= SCALE

    def step(self, optimizer, *args, **kwargs):
        self.calls.append("step")
        optimizer.via_scaler = True
        try:
            return optimizer.step(*args, **kwargs)
        finally:
            optimizer.via_scaler = False

    def update(self, new_scale=None) -> None:
        self.calls.append("update")


def train_step_counting_sgd(seed: int, x: torch.Tensor, max_norm: float, fake_scaler: bool) -> dict:
    """One train_step of TinyLM(seed) on `x` with CountingSGD(lr=0.1), with a FakeScaler or
    without a scaler: what it returned, the optimizer's steps (direct and through the
    scaler) and the gradient norm each used, the scaler's calls, the parameters after."""
    model = TinyLM(seed=seed)
    opt = CountingSGD(model.parameters(), lr=0.1)
    scaler = FakeScaler(model) if fake_scaler else None
    args = (None, scaler) if fake_scaler else ()
    out = call(_s5("train_step"), model, x, opt, max_norm, *args)
    return {"out": returned(out), "norms_used": list(opt.norms_used), "direct_steps": opt.direct_steps,
            "scaler_steps": opt.scaler_steps, "calls": list(scaler.calls) if scaler else [], "params": _params(model)}


def train_steps_with_and_without_a_grad_scaler(seed: int, x: torch.Tensor, max_norm: float) -> dict:
    """Two copies of TinyLM(seed), one train_step each on `x` with AdamW(lr=1e-2): one without a
    scaler, one with torch's GradScaler on the CPU (init_scale 2**12); both parameter sets."""
    model = TinyLM(seed=seed)
    want = copy.deepcopy(model)
    call(_s5("train_step"), want, x, torch.optim.AdamW(want.parameters(), lr=1e-2), max_norm)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)  # GradScaler runs on the CPU since torch 2.3
    loss, _ = call(_s5("train_step"), model, x, torch.optim.AdamW(model.parameters(), lr=1e-2), max_norm, None, scaler)
    return {"without": _params(want), "with": _params(model)}


class HugeLossLM(TinyLM):
    """TinyLM with its loss multiplied by 1e30: finite in fp32, but its gradients x 2^40 are not."""

    def forward(self, input_ids, labels=None):
        logits, loss = super().forward(input_ids, labels)
        return logits, None if loss is None else loss * 1e30


def train_step_overflowing_a_grad_scaler(seed: int, x: torch.Tensor) -> dict:
    """train_step of HugeLossLM(seed) on `x` (SGD lr 0.1, max_grad_norm 1) with a GradScaler whose
    scale 2**40 overflows the gradients: what it returned, the parameters and the scale after."""
    model = HugeLossLM(seed=seed)
    # Gradients ~1e28 x 2^40 overflow fp32 to inf, as fp16 gradients overflow at 65504.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = call(_s5("train_step"), model, x, opt, 1.0, None, scaler)
    return {"out": returned(out), "params": _params(model), "scale": float(scaler.get_scale())}
