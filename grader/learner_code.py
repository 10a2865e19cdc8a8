"""What the grader can tell about learner code from the outside: where in a traceback it
ran, and whether it replaced attributes of torch, pytest or the kata's test helpers.

Used on both sides of separated grading: by the pytest plugin (the judge, and the
in-process mode) and by the worker that runs the learner's code (grader/worker.py).
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

LEARNER_DIRS = ("exercises", "reference")


def learner_location(tb) -> str:
    """`exercises/step3_blocks.py:42` for the deepest traceback frame in learner code."""
    where = ""
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename)
        if len(path.parts) >= 2 and path.parts[-2] in LEARNER_DIRS:
            where = f"{path.parts[-2]}/{path.name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


# --------------------------------------------------------------------------- patch guard

def _guarded() -> dict[str, ModuleType]:
    mods: dict[str, ModuleType] = {}
    for name in ("torch", "torch.nn", "torch.nn.functional", "torch.testing", "_support", "pytest"):
        mod = sys.modules.get(name)
        if mod is not None:
            mods[name] = mod
    return mods


def patch_snapshot() -> dict[tuple[str, str], object]:
    """The callables of torch, pytest and the test helpers as they are now (see `changed_attributes`)."""
    if "torch" not in sys.modules:  # the tests do not use torch (the kata's conftest always does)
        return {}
    import torch.nn.functional  # noqa: F401
    import torch.testing  # noqa: F401

    snap: dict[tuple[str, str], object] = {}
    for name, mod in _guarded().items():
        for attr, value in list(vars(mod).items()):
            if callable(value) and not attr.startswith("__"):
                snap[(name, attr)] = value
    import torch

    for attr, value in list(vars(torch.Tensor).items()):
        if callable(value) and not attr.startswith("__"):
            snap[("torch.Tensor", attr)] = value
    return snap


def _learner_made(value: object) -> bool:
    """True when `value` is a function written in the graded solution (or in exec'd text).

    torch swaps some of its own attributes lazily (importing torch._dynamo wraps
    torch.manual_seed), so only replacements that come from the learner count.
    """
    code = getattr(value, "__code__", None) or getattr(getattr(value, "__func__", None), "__code__", None)
    if code is None:
        return False
    name = code.co_filename
    if name.startswith("<") and not name.startswith("<frozen"):
        return True
    parts = Path(name).parts
    return len(parts) >= 2 and parts[-2] in LEARNER_DIRS


def changed_attributes(before: dict[tuple[str, str], object]) -> list[str]:
    """The attributes in `before` that learner code replaced since; each is put back."""
    torch = sys.modules.get("torch")
    changed = []
    for (name, attr), value in before.items():
        owner = torch.Tensor if name == "torch.Tensor" else sys.modules.get(name)
        if owner is None:
            continue
        now = vars(owner).get(attr, None)
        if now is not value and (now is None or _learner_made(now)):
            changed.append(f"{name}.{attr}")
            try:
                setattr(owner, attr, value)
            except (AttributeError, TypeError):
                pass
        elif now is not value:
            before[(name, attr)] = now  # torch's own lazy replacement: the new normal
    return changed
