"""Bonus 4's probes: the learner-facing half of tests/test_bonus4_label_smoothing.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with answers they compute themselves (the cross-entropy oracle, hand-made targets).

Every probe builds the criterion itself, `LabelSmoothingLoss(V, pad_id=pad_id,
smoothing=eps)` (its `__init__` is given), from the numbers the test sends. What the
learner's method returned comes back as `_returned` describes it: the result itself
where it is a tensor or a number, and its type's name, so a test can say "got list"
instead of meeting something that is not data.
"""
from __future__ import annotations

import torch

from _support import not_implemented_guard as call, student

MODULE = "bonus4_label_smoothing"


def _criterion(V: int, pad_id: int, eps: float):
    return call(student(MODULE).LabelSmoothingLoss, V, pad_id=pad_id, smoothing=eps)


def _returned(out: object, key: str) -> dict:
    """What a learner's method returned, as data: `key` is the result itself (a tensor comes
    back as a detached CPU copy, a number as it is, anything else as None), "type" its
    type's name."""
    keep = isinstance(out, (torch.Tensor, bool, int, float))
    return {key: out if keep else None, "type": type(out).__name__}


def smoothed_targets(V: int, pad_id: int, eps: float, target: torch.Tensor) -> dict:
    """The learner's `LabelSmoothingLoss(V, pad_id, eps).smoothed_targets(target)`:
    {"targets": the (N, V) rows, "type": the result's type's name}."""
    return _returned(call(_criterion(V, pad_id, eps).smoothed_targets, target), "targets")


def loss(V: int, pad_id: int, eps: float, logits: torch.Tensor, target: torch.Tensor) -> dict:
    """The learner's `LabelSmoothingLoss(V, pad_id, eps)(logits, target)`:
    {"loss": the loss, "type": the result's type's name}."""
    return _returned(call(_criterion(V, pad_id, eps), logits, target), "loss")


def loss_backward(V: int, pad_id: int, eps: float, logits: torch.Tensor, target: torch.Tensor) -> dict:
    """`LabelSmoothingLoss(V, pad_id, eps)(logits, target).backward()` with `logits` a leaf
    that requires grad: {"loss": the loss, "grad": the logits' gradient (None if none
    reached them)}."""
    logits = logits.detach().clone().requires_grad_()
    out = call(_criterion(V, pad_id, eps), logits, target)
    out.backward()
    return {"loss": out, "grad": logits.grad}
