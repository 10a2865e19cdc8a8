"""Bonus 2's probes: the learner-facing half of tests/test_bonus2_batch.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with masks and counts they compute themselves.

- a mask function's result comes back as the tensor itself, or, when it is not a
  tensor, as `{NOT_DATA: type name, "repr": its repr}` (`returned`);
- a `Batch` comes back as its attributes (`batch`): for each one that exists, its value
  (a tensor, a number, None, or the description above), its type's full name and its
  repr, so the test can read `b.ntokens` and ask whether it is a Python int.
"""
from __future__ import annotations

import torch

from _support import not_implemented_guard as call, student

MODULE = "bonus2_batch"
NOT_DATA = "kata: not data"
BATCH_FIELDS = ("src", "src_mask", "tgt_in", "tgt_out", "tgt_mask", "ntokens", "pad_id")


def returned(x: object) -> object:
    """What the learner's code returned, as data: a tensor (a number, None) as it is, anything
    else described by its type's name and its repr."""
    from grader.worker import to_data

    if isinstance(x, torch.Tensor):
        return x
    try:
        return to_data(x)  # None, a number, a string (numpy's int64 becomes an int)
    except TypeError:
        return {NOT_DATA: type(x).__name__, "repr": repr(x)[:2000]}


def mask(name: str, ids: torch.Tensor, pad_id: int) -> object:
    """The learner's `name(ids, pad_id)` (src_padding_mask or target_mask; see `returned`)."""
    return returned(call(getattr(student(MODULE), name), ids, pad_id))


def batch(src: torch.Tensor, tgt: torch.Tensor | None, pad_id: int) -> dict:
    """The learner's `Batch(src, tgt, pad_id=pad_id)`, as `{attribute: {"value", "type", "repr"}}`
    for each attribute of `BATCH_FIELDS` it has ("type" is the full name, e.g. "builtins.int",
    "torch.Tensor"; "value" as `returned` gives it). An attribute it lacks is left out: the
    test that reads it fails there, as it would on the object itself."""
    b = call(student(MODULE).Batch, src, tgt, pad_id=pad_id)
    seen = {}
    for name in BATCH_FIELDS:
        try:
            x = getattr(b, name)
        except AttributeError:
            continue
        seen[name] = {"value": returned(x), "type": f"{type(x).__module__}.{type(x).__qualname__}",
                      "repr": repr(x)[:2000]}
    return seen
