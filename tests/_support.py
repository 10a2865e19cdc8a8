"""The one seam between the tests and the code under test (the CS336 'adapters' idea).

Tests never import `exercises` or `reference` directly:
- `student(module)` is the code being graded (exercises/ or reference/, by the switch);
- `oracle(module)` is the hidden reference the student's output is compared with;
- `with_reference_deps(...)` runs a student's step on top of the reference versions
  of the *other* steps, so an unfinished step 2 does not fail step 3's tests.
"""
from __future__ import annotations

import contextlib
import importlib
from types import ModuleType

import pytest
import torch

from kata.solution import load, solution_name


def student(module: str) -> ModuleType:
    """The graded solution's module, e.g. `student("step3_blocks")`.

    Import errors (a syntax error, a missing name) fail the test with a message that
    names the file, instead of an import traceback.
    """
    try:
        return load(module)
    except SyntaxError as e:
        pytest.fail(f"{solution_name()}/{module}.py has a syntax error at line {e.lineno}: {e.msg}", pytrace=False)
    except ImportError as e:
        pytest.fail(f"importing {solution_name()}/{module}.py failed: {e}", pytrace=False)


def oracle(module: str) -> ModuleType:
    """The reference implementation of a step (the answer key)."""
    try:
        return importlib.import_module(f"reference.{module}")
    except ImportError:
        pytest.skip("the reference solution is not in this checkout (learner handout)")


@contextlib.contextmanager
def with_reference_deps(module: ModuleType, **names: str):
    """Temporarily replace names a student's step module imported from other steps.

    `with_reference_deps(s3, causal_mask="step2_causal_mask")` makes the student's
    step 3 call the reference `causal_mask`. Only the given names change.
    """
    saved = {n: getattr(module, n) for n in names if hasattr(module, n)}
    try:
        for n, step in names.items():
            setattr(module, n, getattr(oracle(step), n))
        yield module
    finally:
        for n in names:
            if n in saved:
                setattr(module, n, saved[n])


def not_implemented_guard(fn, *args, **kwargs):
    """Call student code; turn a stub's NotImplementedError into a clear failure."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as e:
        # Name the stub that raised (it may be deeper than `fn`, e.g. Block.forward
        # inside TinyGPT.forward) and repeat its "what to do" message.
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code if tb is not None else None
        where = getattr(code, "co_qualname", getattr(code, "co_name", "")) or getattr(fn, "__qualname__", repr(fn))
        file = code.co_filename.rsplit("/", 1)[-1] if code is not None else "?"
        message = f"{where} still raises NotImplementedError: open {solution_name()}/{file} and implement it. {e}"
    # Fail outside the `except`, so the report is the message, not a chained traceback.
    pytest.fail(message, pytrace=False)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float, what: str, hint: str = "") -> None:
    """`torch.testing.assert_close` with a message that says what was compared and what to check."""
    if actual.shape != expected.shape:
        pytest.fail(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}. {hint}", pytrace=False)
    try:
        torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)
        return
    except AssertionError as e:
        first_line = str(e).splitlines()[0]
    # Fail outside the `except`, so the report is the message, not a chained traceback.
    a, b = actual.detach().double(), expected.detach().double()
    # Equal infinities match (masked scores are -inf); a NaN counts as the worst mismatch.
    diff = torch.where(a == b, 0.0, (a - b).abs()).nan_to_num(nan=float("inf"))
    where = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0]) if diff.numel() else ()
    pytest.fail(
        f"{what} differs from the reference: max abs difference {diff.max().item():.3g} at index {where} "
        f"(tolerance atol={atol}, rtol={rtol}). {hint}\n{first_line}",
        pytrace=False,
    )


def recorded(fn):
    """Mark a function that computes the reference's answer for a test.

    Rules, so the grader's learner handout (which has no reference/ source) can replay
    stored answers: the function calls `oracle(...)` itself, is deterministic, and takes
    and returns only tensors, numbers, strings, None and tuples/lists/dicts of them.
    (Today this is the identity; the grader turns it into record / replay.)
    Tests that use the reference in any other way carry `@pytest.mark.needs_reference`.
    """
    return fn
