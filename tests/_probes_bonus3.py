"""Bonus 3's probes: the learner-facing half of tests/test_bonus3_noam.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with the closed form they compute themselves. The learner's exceptions are not caught
here: they travel to the judge and are raised there (`pytest.raises(ValueError)` still
catches a ValueError).

What `noam_lr` returned travels as `returned(...)`: whether it is a Python float, its
value if so, its type's full name and its repr (the test's message names a tensor or
numpy scalar as what it is, which plain data alone would not: a numpy float64 would
come back as a float).
"""
from __future__ import annotations

import torch

from _support import not_implemented_guard as call, student

MODULE = "bonus3_noam"


def returned(x: object) -> dict:
    """What `noam_lr` returned, as data: {"float": is it a Python float, "value": the float
    (None if it is not one), "type": module.qualname of its type, "repr": its repr}."""
    is_float = isinstance(x, float)
    return {
        "float": is_float,
        "value": float(x) if is_float else None,
        "type": f"{type(x).__module__}.{type(x).__qualname__}",
        "repr": repr(x)[:2000],
    }


def noam_lr(*args) -> dict:
    """The learner's `noam_lr(*args)` (step, d_model, warmup[, factor]), described by `returned`."""
    return returned(call(student(MODULE).noam_lr, *args))


def noam_lrs(steps: list[int], d_model: int, warmup: int, factor: float) -> list[dict]:
    """`noam_lr(s, d_model, warmup, factor)` for each s in `steps`, in order, each described by `returned`."""
    lr = student(MODULE).noam_lr
    return [returned(call(lr, s, d_model, warmup, factor)) for s in steps]


def _optimizer(d_model: int, warmup: int, factor: float):
    """(Linear(3, 2), what the learner's noam_optimizer(its parameters, ...) returned)."""
    lin = torch.nn.Linear(3, 2)
    return lin, call(student(MODULE).noam_optimizer, lin.parameters(), d_model, warmup, factor)


def _pair(out: object) -> dict:
    """Is `out` the documented (optimizer, scheduler) pair? As data, with its type's name."""
    return {"pair": isinstance(out, tuple) and len(out) == 2, "type": type(out).__qualname__}


def optimizer_settings(d_model: int, warmup: int, factor: float) -> dict:
    """`noam_optimizer(Linear(3, 2).parameters(), d_model, warmup, factor)`, observed: `_pair`'s
    fields, and if it is a pair: the optimizer's type (name, and whether it is exactly
    torch.optim.Adam), the first param group's betas, eps and lr (right after
    construction), and whether the optimizer holds exactly the Linear's parameters."""
    lin, out = _optimizer(d_model, warmup, factor)
    seen = _pair(out)
    if not seen["pair"]:
        return seen
    opt, _ = out
    group = opt.param_groups[0]
    params = {id(p) for g in opt.param_groups for p in g["params"]}
    return {
        **seen,
        "optimizer": type(opt).__name__,
        "is_adam": type(opt) is torch.optim.Adam,
        "betas": tuple(group["betas"]),
        "eps": group["eps"],
        "lr": group["lr"],
        "same_params": params == {id(p) for p in lin.parameters()},
    }


def lrs_while_training(d_model: int, warmup: int, factor: float, x: torch.Tensor, updates: int) -> dict:
    """`noam_optimizer` on a Linear(3, 2), then `updates` training updates on the input `x`
    (loss = (lin(x) ** 2).sum(); zero_grad, backward, optimizer.step(), scheduler.step()):
    `_pair`'s fields and "lrs", the first param group's lr before each update."""
    lin, out = _optimizer(d_model, warmup, factor)
    seen = _pair(out)
    if not seen["pair"]:
        return seen
    opt, sched = out
    lrs = []
    for _ in range(updates):
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        lin(x).pow(2).sum().backward()
        opt.step()
        sched.step()
    return {**seen, "lrs": lrs}
