"""Telling the kata's own stubs apart from every other NotImplementedError.

A stub in `exercises/` is written by `grader/stubs.py` and raises

    NotImplementedError("<function> is not written yet (step N): ...")

Only that is "not written yet". A NotImplementedError raised anywhere else — by torch
(an op a device or tensor kind does not implement), by a library, or by the learner's own
code — is an ordinary error: the grader shows its own message and line, and never tells
the learner to implement a function that is already written.
"""
from __future__ import annotations

from pathlib import Path

# The words every generated stub's message carries (grader/stubs.py writes them).
STUB_MARK = "is not written yet ("


def raise_site(exc: BaseException) -> tuple[Path, int, str] | None:
    """(file, line, function) of the frame that raised `exc`: its traceback's innermost entry."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return Path(code.co_filename), tb.tb_lineno, getattr(code, "co_qualname", code.co_name)


def stub_site(exc: BaseException, solution: str) -> tuple[Path, int, str] | None:
    """Where one of the kata's stubs raised `exc`, or None when `exc` is anything else.

    A stub's NotImplementedError carries `STUB_MARK` and is raised in a file of the graded
    solution's folder (`exercises/step3_blocks.py`), by that file's own code. `solution` is
    the folder's name ("exercises" or "reference").
    """
    if not isinstance(exc, NotImplementedError) or STUB_MARK not in str(exc):
        return None
    site = raise_site(exc)
    if site is None or site[0].parent.name != solution:
        return None
    return site


def exception_chain(exc: BaseException | None):
    """`exc`, then its causes, contexts and (for exception groups) members, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend([e.__cause__, e.__context__])
        todo.extend(getattr(e, "exceptions", ()) or ())


def find_stub(exc: BaseException | None, solution: str) -> tuple[BaseException, tuple[Path, int, str]] | None:
    """The first stub error in `exc`, its causes, contexts and (for exception groups) members."""
    for e in exception_chain(exc):
        site = stub_site(e, solution)
        if site is not None:
            return e, site
    return None
