"""The one switch that chooses whose code runs: the learner's or the reference.

`KATA_SOLUTION=reference` (or pytest's `--solution reference`, or the grader's
`--solution reference`) makes every test, the grader and the training run import
`reference.stepN_*` instead of `exercises.stepN_*`. The default is `exercises`.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

SOLUTIONS = ("exercises", "reference")
ENV_VAR = "KATA_SOLUTION"


def solution_name(explicit: str | None = None) -> str:
    """Return `"exercises"` or `"reference"`; raise a clear error for anything else."""
    name = explicit or os.environ.get(ENV_VAR) or "exercises"
    if name not in SOLUTIONS:
        raise ValueError(
            f"{ENV_VAR}={name!r} is not a solution; use one of {', '.join(SOLUTIONS)}"
        )
    return name


def load(module: str, solution: str | None = None) -> ModuleType:
    """Import `<solution>.<module>`, e.g. `load("step3_blocks")`."""
    return importlib.import_module(f"{solution_name(solution)}.{module}")
