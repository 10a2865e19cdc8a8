"""Step 4's probes: the learner-facing half of tests/test_step4_loss.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with answers they compute themselves.
"""
from __future__ import annotations

import torch

from _support import not_implemented_guard as call, student

S4 = "step4_loss"


def _returned(out: object) -> dict:
    """What `next_token_loss` returned, as data: "loss" is the result itself (a tensor
    comes back as a detached copy; a number as it is; anything else as None), and what
    only the object here shows: its type's name, its repr, whether it requires grad and
    whether it has a graph (a grad_fn)."""
    is_tensor = isinstance(out, torch.Tensor)
    return {
        "loss": out if is_tensor or isinstance(out, (bool, int, float)) else None,
        "type": type(out).__name__,
        "repr": repr(out)[:2000],
        "requires_grad": bool(is_tensor and out.requires_grad),
        "graph": bool(is_tensor and out.grad_fn is not None),
    }


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, *, requires_grad: bool = False, **kwargs) -> dict:
    """The learner's `next_token_loss(logits, labels, **kwargs)` (kwargs: `ignore_index`,
    or nothing for its default), described by `_returned`. With `requires_grad`, the
    logits are a leaf that requires grad, as a model's output would be."""
    if requires_grad:
        logits = logits.detach().clone().requires_grad_()
    return _returned(call(student(S4).next_token_loss, logits, labels, **kwargs))


def next_token_loss_backward(logits: torch.Tensor, labels: torch.Tensor, **kwargs) -> dict:
    """`next_token_loss(logits, labels, **kwargs).backward()` with `logits` a leaf that
    requires grad: {"loss": the loss, "grad": the logits' gradient (None if none reached them)}."""
    logits = logits.detach().clone().requires_grad_()
    out = call(student(S4).next_token_loss, logits, labels, **kwargs)
    out.backward()
    return {"loss": out, "grad": logits.grad}
