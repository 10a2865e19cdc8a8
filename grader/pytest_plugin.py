"""The grader's pytest plugin: per-test results as JSON lines, written as they happen.

Loaded in the child pytest that grades one step (`-p grader.pytest_plugin`), with the
results file in `$KATA_GRADER_RESULTS`. One JSON object per line:

    {"event": "collected", "nodeids": [...]}
    {"event": "collect_error", "where": "...", "message": "..."}
    {"event": "start", "nodeid": "..."}
    {"event": "result", "nodeid": "...", "outcome": "passed|failed|skipped|waiting|kata-error",
     "message": "...", "stub": bool, "where": "exercises/x.py:12", "duration": 0.1, "extras": {...}}

"waiting": the test skipped itself with "waiting on step N: ..." (tests/_support.py does,
when it needs another step that is unfinished or broken); "kata-error": the test met an
input the kata has no stored answer for (the kata's fault, never the learner's: left out
of the score); "extras": its `record_property`s.

Each line is flushed at once, so when learner code kills the process (`os._exit`, a
segfault, the grader's time limit) the grader still knows which tests finished and
which one was running. Nothing here parses pytest's console text.

It also guards the test process against learner code that monkeypatches torch or the
kata's test helpers: the patched attribute is restored and the test fails.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
import pytest

from grader.learner_code import changed_attributes as _changed, learner_location as _learner_location, patch_snapshot as _snapshot

MAX_MESSAGE = 2000  # characters per failure message: a megabyte of output must not reach the table
STUB_MARKER = "NotImplementedError"


class _Log:
    def __init__(self, path: str) -> None:
        self._f = open(path, "a", encoding="utf-8")

    def write(self, **event: object) -> None:
        self._f.write(json.dumps(event) + "\n")
        self._f.flush()


def _truncate(text: str, limit: int = MAX_MESSAGE) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit - 60].rstrip() + f"\n... ({len(text) - limit + 60} more characters cut)"


def _is_stub(exc: BaseException) -> bool:
    """True when the failure is one of the kata's stubs (`kata.unfinished`): raised directly,
    or reported by the tests ("... still raises NotImplementedError: ..."). A NotImplementedError
    from torch or anything else is an ordinary failure, shown with its own message."""
    from kata.unfinished import STUB_MARK, exception_chain, find_stub

    if getattr(exc, "_kata_stub", False):  # reported so by the worker (grader/judge.py)
        return True
    if find_stub(exc, os.environ.get("KATA_SOLUTION", "exercises")) is not None:
        return True
    for e in exception_chain(exc):
        text = str(e)[:500]
        if STUB_MARKER in text and "still raises" in text and STUB_MARK in text:
            return True
    return False


def _is_kata_error(exc: BaseException) -> bool:
    """True when every failure in `exc` is a missing stored answer (tests/_support.py's
    SnapshotMiss): the kata's error, not the learner's. A group that also holds a real
    failure is that real failure (`_message` shows it first)."""
    groups = getattr(exc, "exceptions", None)
    if groups:
        return all(_is_kata_error(e) for e in groups)
    return bool(getattr(exc, "_kata_snapshot_miss", False))


def _message(exc: BaseException) -> str:
    """A readable one-paragraph message: pytest.fail text as is, others as `Type: message`."""
    groups = getattr(exc, "exceptions", None)
    if groups:  # hypothesis can report several distinct failures: show the first real one
        firsts = [e for e in groups if not getattr(e, "_kata_snapshot_miss", False)] or list(groups)
        exc = firsts[0]
    if isinstance(exc, pytest.fail.Exception):
        text = str(exc.msg if hasattr(exc, "msg") else exc)
        if text.startswith("Timeout (>"):  # pytest-timeout
            limit = text[len("Timeout (>"):].split(")", 1)[0]
            return (f"the test was still running after its time limit of {limit} — "
                    "is there an infinite loop (a `while` whose condition never changes)?")
        return text
    if isinstance(exc, SystemExit) or type(exc).__name__ == "SystemExit":  # here, or in the worker
        code = exc.code if isinstance(exc, SystemExit) else str(exc) or None
        return f"the code called sys.exit({code!r}); a library function must return or raise, never exit"
    name = type(exc).__name__
    text = str(exc)
    return f"{name}: {text}" if text else name


class GraderPlugin:
    def __init__(self, path: str) -> None:
        self.log = _Log(path)
        self.snapshot: dict[tuple[str, str], object] = {}
        self.patched: dict[str, list[str]] = {}

    # collection -----------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.log.write(event="collected", nodeids=[i.nodeid for i in session.items])
        self.snapshot = _snapshot()

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            text = str(report.longrepr)
            self.log.write(event="collect_error", where=report.nodeid, message=_truncate(text))

    # tests ----------------------------------------------------------------------
    def pytest_runtest_logstart(self, nodeid: str, location) -> None:
        self.log.write(event="start", nodeid=nodeid)
        self._outcome = {"outcome": "passed", "message": "", "stub": False, "where": "", "duration": 0.0, "extras": {}}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        state = self._outcome
        state["duration"] += call.duration
        # Figures a test records (`record_property("loss", 6.35)`) travel to the report.
        state["extras"] = {str(k): v for k, v in item.user_properties if isinstance(v, (int, float, str, bool))}
        if call.when == "teardown":  # after fixtures (pytest's monkeypatch) have undone their patches
            patched = _changed(self.snapshot)
            if patched:
                report.outcome = "failed"
                report.longrepr = (
                    f"the code replaced {', '.join(patched[:5])} while the test ran; "
                    "solutions must not monkeypatch torch, pytest or the kata's test helpers"
                )
                state.update(outcome="failed", message=report.longrepr)
                return
        if state["outcome"] == "failed" or call.excinfo is None:
            return
        exc = call.excinfo.value
        where = _learner_location(call.excinfo.tb) or getattr(exc, "_kata_where", "")
        if report.skipped:
            # A skip raised from the learner's own file is not a way to dodge a test.
            text = str(getattr(exc, "msg", "") or exc)
            if where:
                report.outcome = "failed"
                state.update(outcome="failed", where=where,
                             message=f"the code in {where} skipped the test (pytest.skip); solutions must not skip tests")
            elif text.startswith("waiting on ") and state["outcome"] in ("passed", "skipped"):
                # tests/_support.py: the test needs another step that is unfinished or broken.
                state.update(outcome="waiting", message=_truncate(text))
            elif state["outcome"] == "passed":
                state.update(outcome="skipped", message=_truncate(_message(exc)))
            return
        if report.failed:
            prefix = "" if call.when == "call" else f"(in test {call.when}) "
            if _is_kata_error(exc):  # not the learner's failure: reported, left out of the score
                state.update(outcome="kata-error", message=_truncate(prefix + _message(exc)))
                return
            state.update(outcome="failed", message=_truncate(prefix + _message(exc)), stub=_is_stub(exc), where=where)

    def pytest_runtest_logfinish(self, nodeid: str, location) -> None:
        self.log.write(event="result", nodeid=nodeid, **self._outcome)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.log.write(event="finished", exitstatus=int(exitstatus))


def _grading_profile() -> None:
    """The conftest's `ci` profile without shrinking: the first failing example is
    reported as found. Same grade every run, a faster verdict on a wrong solution, and
    no inputs outside the stored reference answers when the handout replays them."""
    try:
        from hypothesis import Phase, settings
    except ImportError:  # pragma: no cover
        return
    try:
        parent = settings.get_profile("ci")
    except Exception:
        parent = settings.default
    seed = official_seed(Path(os.environ.get("KATA_GRADER_ROOT") or "."))
    settings.register_profile("kata-grader", parent=parent, derandomize=seed is None, database=None,
                              phases=(Phase.explicit, Phase.reuse, Phase.generate))
    settings.load_profile("kata-grader")
    if seed is not None:
        # The autograder's official inputs (grader/autograder.py, `record_official_answers`):
        # every test draws from this seed instead of its derandomized one, so the inputs are
        # ones the learner handout never contained, and so are their stored answers.
        from hypothesis import core

        core.global_force_seed = seed


OFFICIAL_INPUTS = "official_inputs.toml"  # in grader/ of an autograder's official tree


def official_seed(root: Path) -> int | None:
    """The Hypothesis seed of the official inputs where `root` is an autograder's official tree, else None."""
    path = root / "grader" / OFFICIAL_INPUTS
    if not path.is_file():
        return None
    import tomllib

    return int(tomllib.loads(path.read_text(encoding="utf-8"))["hypothesis_seed"])


class _NoReference:
    """Meta-path finder that hides `reference` when the graded tree has none (a handout),
    even where an editable install of the full kata would find one elsewhere."""

    def find_spec(self, name, path=None, target=None):
        if name == "reference" or name.startswith("reference."):
            raise ModuleNotFoundError(f"No module named {name!r} (the learner handout has no reference/)", name=name)
        return None


# No graded test uses `datasets`, nor the pandas and pyarrow it brings: transformers' Trainer
# imports them only because they are installed (for the hub corpora). Left out of the step
# processes, they save ~85 MB each, which Gradescope's default 768 MB autograder needs for
# step 7's Trainer run (measured: 617 MB at its peak instead of 679 MB), and a second of imports.
if os.environ.get("KATA_GRADER_RESULTS"):
    for _name in ("datasets", "pandas", "pyarrow"):
        sys.modules.setdefault(_name, None)

class _NoLearnerCode:
    """Meta-path finder for the judge of a separated grading: the learner's package cannot be
    imported here at all (it runs in the worker, grader/worker.py)."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, name, path=None, target=None):
        if name == self.package or name.startswith(self.package + "."):
            raise ImportError(f"kata error: {name} was imported in the judge process of a separated grading; the "
                              "learner's code runs only in the worker (grader/judge.py)", name=name)
        return None


if os.environ.get("KATA_SEPARATE") == "1" and os.environ.get("KATA_WORKER") != "1":
    _solution = os.environ.get("KATA_SOLUTION") or "exercises"
    if _solution != "reference" and not any(isinstance(f, _NoLearnerCode) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoLearnerCode(_solution))

_root = os.environ.get("KATA_GRADER_ROOT")
if _root and not (Path(_root) / "reference").is_dir() and not any(isinstance(f, _NoReference) for f in sys.meta_path):
    sys.meta_path.insert(0, _NoReference())


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get("KATA_GRADER_RESULTS")
    if path:
        _grading_profile()
        config.pluginmanager.register(GraderPlugin(path), "kata-grader")
