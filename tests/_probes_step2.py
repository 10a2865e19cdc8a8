"""Step 2's probes: the learner-facing half of tests/test_step2_causal_mask.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with answers they compute themselves.

What the learner's function returned comes back as `{"type": ..., "tensor": ...}`: its
type's name, and the tensor itself where it is one (None otherwise), so a test can say
"should return a torch.Tensor, got list" instead of meeting something that is not data.
"""
from __future__ import annotations

import torch

from _support import not_implemented_guard as call, student

S2 = "step2_causal_mask"


def _returned(x: object) -> dict:
    """What a learner's function returned, as data: its type's name and, if a tensor, the tensor."""
    return {"type": type(x).__name__, "tensor": x if isinstance(x, torch.Tensor) else None}


def causal_mask(T: int) -> dict:
    """The learner's `causal_mask(T)` (see `_returned`)."""
    return _returned(call(student(S2).causal_mask, T))


def causal_mask_devices(T: int, device: str) -> dict:
    """The learner's `causal_mask(T, device=device)`, by its type and device type (a meta tensor
    has no values to send back), and `causal_mask(T, device="cpu")` itself (see `_returned`)."""
    s2 = student(S2)
    m = call(s2.causal_mask, T, device=device)
    return {"type": type(m).__name__, "device": m.device.type if isinstance(m, torch.Tensor) else None,
            "on_cpu": _returned(call(s2.causal_mask, T, device="cpu"))}


def scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> dict:
    """The learner's `masked_attention_scores(q, k, mask)` (see `_returned`)."""
    return _returned(call(student(S2).masked_attention_scores, q, k, mask))


def causal_scores(q: torch.Tensor, k: torch.Tensor, T: int) -> dict:
    """The learner's `masked_attention_scores(q, k, causal_mask(T))`: both functions of the
    learner's together, as attention uses them (see `_returned`)."""
    s2 = student(S2)
    return _returned(call(s2.masked_attention_scores, q, k, call(s2.causal_mask, T)))
