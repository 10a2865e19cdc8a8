"""The one seam between the tests and the code under test (the CS336 'adapters' idea).

Tests never import `exercises` or `reference` directly:
- `student(module)` is the code being graded (exercises/ or reference/, by the switch);
- `oracle(module)` is the hidden reference the student's output is compared with;
- `with_reference_deps(...)` runs a student's step on top of the reference versions
  of the *other* steps, so an unfinished step 2 does not fail step 3's tests;
- where the reference is absent (the learner handout), a test that meets another
  step's stub or import error skips as "waiting on step N: ..." (the grader shows the
  step as waiting on step N): a step never fails because another one is unfinished.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import pickle
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from kata.paths import atomic_path
from kata.solution import load, solution_name
from kata.unfinished import stub_site


_STEP_FILE = re.compile(r"^(step|bonus)(\d+)_\w+$")


def _step_label(stem: str) -> str:
    """`step4_loss` -> "step 4", `bonus1_encoder_decoder` -> "bonus 1", anything else -> ""."""
    m = _STEP_FILE.match(stem)
    return f"{m.group(1)} {m.group(2)}" if m else ""


def _current_test_step() -> str:
    """The step whose test file is running (`tests/test_step3_blocks.py::...` -> "step 3")."""
    m = re.search(r"test_((?:step|bonus)\d+)_", os.environ.get("PYTEST_CURRENT_TEST", ""))
    return _step_label(m.group(1) + "_x") if m else ""


def _solution_frame(tb, solution: str) -> tuple[Path, int, str] | None:
    """(file, line, function) of the innermost traceback frame in the graded solution's folder."""
    found = None
    while tb is not None:
        code = tb.tb_frame.f_code
        path = Path(code.co_filename)
        if path.parent.name == solution:
            found = path, tb.tb_lineno, getattr(code, "co_qualname", code.co_name)
        tb = tb.tb_next
    return found


def _import_failure(e: BaseException, solution: str) -> tuple[Path | None, str]:
    """(the file that really failed, what happened there) for an exception raised by an import."""
    if isinstance(e, SyntaxError) and e.filename:
        return Path(e.filename), f"has a syntax error at line {e.lineno}: {e.msg}"
    frame = _solution_frame(e.__traceback__, solution)
    if frame is None:
        return None, f"failed: {type(e).__name__}: {e}"
    path, line, _ = frame
    return path, f"raised {type(e).__name__} at line {line} while being imported: {e}"


def _waiting(label: str, detail: str) -> None:
    """Skip a test that needs another step which is unfinished or broken. The grader
    reports it (and, when nothing else fails, the step's row) as waiting on that step."""
    pytest.skip(f"waiting on {label}: {detail}")


def student(module: str) -> ModuleType:
    """The graded solution's module, e.g. `student("step3_blocks")`.

    Import errors fail the test with a message naming the file and line that really
    failed, not the module being loaded: a syntax error in step 2 is step 2's. When the
    failing file is another step's (step 3 imports step 2), the module is loaded on top
    of the reference's version of that step where the reference exists; in the learner
    handout the test waits on that step ("waiting on step 2: ..."), it does not fail.
    """
    if _in_judge():
        raise RuntimeError(
            f"kata error: a test called student({module!r}) in the judge process of a separated grading; the "
            "learner's code runs only in the worker, through probe(...) (grader/judge.py)")
    solution = solution_name()
    standins: list[str] = []
    problem = None
    try:
        for _ in range(16):  # one stand-in per broken step the module imports
            try:
                return load(module)
            except Exception as e:  # noqa: BLE001 - a syntax error, a missing name, anything raised at import
                path, what = _import_failure(e, solution)
            problem = (path, what)
            dep = path.stem if path is not None and path.parent.name == solution else None
            if (dep is None or dep == module or dep in standins or not _step_label(dep)
                    or solution == "reference" or not reference_available()):
                break
            sys.modules[f"{solution}.{dep}"] = importlib.import_module(f"reference.{dep}")
            standins.append(dep)
    finally:
        package = sys.modules.get(solution)
        for dep in standins:  # the stand-ins serve this import only: step 2's own tests see step 2
            stand_in = sys.modules.pop(f"{solution}.{dep}", None)
            if package is not None and getattr(package, dep, None) is stand_in:
                delattr(package, dep)
    path, what = problem
    where = f"{solution}/{path.name}" if path is not None else f"{solution}/{module}.py"
    if path is not None and path.stem != module and _step_label(path.stem):
        _waiting(_step_label(path.stem), f"{where} {what} ({solution}/{module}.py imports it)")
    pytest.fail(f"{where} {what}" if path is not None else f"importing {where} {what}", pytrace=False)


def _in_judge() -> bool:
    from grader.judge import separated

    return separated()


def probe(fn, *args, **kwargs):
    """Run `fn`, a function of a `tests/_probes_<step>.py` module, on the learner's code.

    The probe builds what the learner's code needs, calls it (through `student` and
    `not_implemented_guard`, as tests do) and returns plain data: tensors, numbers,
    strings, None and lists/tuples/dicts of them, never the learner's objects. The test
    compares that data with answers it computes itself. In a separated grading
    (grader/judge.py) the probe runs in the worker process and the data comes back
    through a pipe; otherwise it runs here. Both give the same data: tensors come back
    as plain detached CPU copies, dtypes and devices as strings.
    """
    from grader.judge import call_in_worker
    from grader.worker import to_data

    if _in_judge():
        return call_in_worker(f"{fn.__module__}:{fn.__qualname__}", args, kwargs)
    # The probe gets its own copies, as the worker does: code that writes into an argument
    # fails that test in both modes and never changes the test's constants for later tests.
    args, kwargs = pickle.loads(pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL))
    return to_data(fn(*args, **kwargs), f"{fn.__qualname__}'s result")


def oracle(module: str) -> ModuleType:
    """The reference implementation of a step (the answer key)."""
    try:
        return importlib.import_module(f"reference.{module}")
    except ImportError:
        pytest.skip("the reference solution is not in this checkout (learner handout)")


def _other_step_stub(e: BaseException, own: str) -> str:
    """"waiting on ..." detail when a stub of another step than `own` raised `e`, else ""."""
    site = stub_site(e, solution_name())
    if site is None or not own:
        return ""
    path, _, fn = site
    label = _step_label(path.stem)
    if not label or label == own:
        return ""
    return f"{fn} in {solution_name()}/{path.name} still raises NotImplementedError (this test uses it)"


@contextlib.contextmanager
def with_reference_deps(module: ModuleType, **names: str):
    """Temporarily replace names a student's step module imported from other steps.

    `with_reference_deps(s3, causal_mask="step2_causal_mask")` makes the student's
    step 3 call the reference `causal_mask`. Only the given names change. In the
    learner handout (no reference/) the learner's own steps stand in; a test that then
    meets another step's stub waits on that step ("waiting on step 4: ...") instead of
    failing.
    """
    if not reference_available():  # the learner handout: the student's own steps stand in
        detail = label = ""
        try:
            yield module
        except NotImplementedError as e:
            detail = _other_step_stub(e, _step_label(module.__name__.rsplit(".", 1)[-1]))
            if not detail:
                raise
            label = _step_label(stub_site(e, solution_name())[0].stem)
        if detail:  # outside the `except`: the report is the message, not a chained traceback
            _waiting(label, detail)
        return
    saved = {n: getattr(module, n) for n in names if hasattr(module, n)}
    try:
        for n, step in names.items():
            setattr(module, n, getattr(oracle(step), n))
        yield module
    finally:
        for n in names:
            if n in saved:
                setattr(module, n, saved[n])


def _watched_tensors(fn, args: tuple, kwargs: dict) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of every tensor the caller hands `fn`: each argument, and the items
    of a list, tuple or dict argument (one level). Named as in `fn`'s signature (`labels`,
    `batches[2]`); where the arguments do not bind, by position.

    Left out: Parameters (a model's or init function's own to change: training and
    `init_weights` change them on purpose), tensor subclasses, meta tensors (no values to
    compare) and non-strided layouts. A tensor that requires grad is watched too: in-place
    changes to it are as wrong, and its copy is detached, so autograd never sees it.
    """
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        bound = inspect.signature(target).bind(*args, **kwargs)
        named = []
        for name, value in bound.arguments.items():
            kind = bound.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                named += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
            elif kind is inspect.Parameter.VAR_KEYWORD:
                named += list(value.items())
            else:
                named.append((name, value))
    except (TypeError, ValueError):  # no signature, or arguments that do not fit: the call itself will say
        named = [(f"argument {i + 1}", v) for i, v in enumerate(args)] + list(kwargs.items())
    found: list[tuple[str, torch.Tensor]] = []
    for name, value in named:
        if isinstance(value, (list, tuple)):
            found += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            found += [(f"{name}[{k!r}]", v) for k, v in value.items()]
        else:
            found.append((name, value))
    seen: set[int] = set()
    watched = []
    for name, t in found:
        if (type(t) is torch.Tensor and id(t) not in seen and t.device.type != "meta"
                and t.layout == torch.strided):
            seen.add(id(t))
            watched.append((name, t))
    return watched


def _change(before: torch.Tensor, after: torch.Tensor) -> str:
    """How `after` differs from the copy `before` taken before the call ("" if it does not)."""
    if after.shape != before.shape or after.dtype != before.dtype:
        return (f"it was {before.dtype} of shape {tuple(before.shape)}, now {after.dtype} of shape "
                f"{tuple(after.shape)}")
    now = after.detach()
    if now.device != before.device:
        now = now.to(before.device)
    differs = now != before
    if before.is_floating_point() or before.is_complex():
        differs &= ~(now.isnan() & before.isnan())  # NaN where there was NaN is unchanged
    if not bool(differs.any()):
        return ""
    where = tuple(int(i) for i in torch.nonzero(differs)[0])
    return (f"{int(differs.sum())} of {differs.numel()} entries differ; at index {where} it was "
            f"{before[where].item():.4g}, now {now[where].item():.4g}")


def not_implemented_guard(fn, *args, **kwargs):
    """Call student code; turn a kata stub's NotImplementedError into a clear failure.

    Only the kata's own stubs count as unwritten (`kata.unfinished.stub_site`): any other
    NotImplementedError (torch's, a library's) propagates as the error it is.

    A stub of another step than the test's (bonus 1 calling an unfinished step 2) makes
    the test wait on that step instead: it is not this step's failure.
    The call must leave the caller's tensors as they were: every tensor argument (see
    `_watched_tensors`) is copied before the call and compared after it, and a tensor
    changed in place fails the test, naming the function and the argument. (Without this,
    the test would go on to ask the reference about the changed tensor, and its message
    would blame something else.)
    """
    watched = _watched_tensors(fn, args, kwargs)
    copies = [t.detach().clone() for _, t in watched]
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError as e:
        site = stub_site(e, solution_name())
        if site is None:
            # Not one of the kata's stubs (torch's NotImplementedError for an op a tensor kind
            # lacks, or the learner's own): an ordinary error, reported with its own message.
            raise
        # Name the stub that raised (it may be deeper than `fn`, e.g. Block.forward
        # inside TinyGPT.forward) and repeat its "what to do" message.
        path, _, where = site
        message = f"{where} still raises NotImplementedError: open {solution_name()}/{path.name} and implement it. {e}"
        other = _other_step_stub(e, _current_test_step())
        other_label = _step_label(path.stem) if other else ""
    else:
        for (name, tensor), before in zip(watched, copies):
            change = _change(before, tensor)
            if change:
                what = getattr(fn, "__qualname__", None) or type(fn).__qualname__
                pytest.fail(
                    f"{what} (or a function it calls) changed its argument `{name}` in place ({change}). The "
                    f"caller's tensor must stay as it was: compute on a new tensor instead of writing into this "
                    f"one (an augmented assignment such as `/=` or `+=`, a method ending in `_`, or an indexed "
                    f"assignment all write into it). Why it matters: the caller keeps using that tensor — "
                    f"train_step passes the same input_ids as the labels, the residual stream reads x again, "
                    f"autograd may need its old values for backward — so the change silently corrupts whatever "
                    f"comes next.",
                    pytrace=False,
                )
        return result
    if other:
        _waiting(other_label, other)
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
        f"{what}: not the reference's values, max abs difference {diff.max().item():.3g} at index {where} "
        f"(tolerance atol={atol}, rtol={rtol}). {hint}\n{first_line}",
        pytrace=False,
    )


# --------------------------------------------------------------------------- recorded answers

SNAPSHOT_DIR = Path(__file__).with_name("_snapshots")
SNAPSHOT_MODES = ("auto", "live", "record", "replay", "verify")
# Stale-snapshot check in live runs: a stored answer must match the live reference up
# to float noise between CPUs / BLAS builds (fp32), far below any test's tolerance.
_STALE_RTOL, _STALE_ATOL = 1e-4, 1e-5
_store: dict[Path, dict[str, object]] = {}
_dirty: set[Path] = set()


def recording_versions() -> dict[str, str]:
    """The versions that decide which inputs a derandomized Hypothesis test draws
    (written next to the answers when they are recorded: `VERSIONS.json`)."""
    import platform

    import hypothesis

    return {"hypothesis": hypothesis.__version__, "python": platform.python_version(), "torch": torch.__version__}


def _version_hint() -> str:
    try:
        recorded_with = json.loads((SNAPSHOT_DIR / "VERSIONS.json").read_text())
    except (OSError, ValueError):
        return ""

    def same(k: str, v: str) -> str:  # a Python patch release draws the same inputs
        return v.rsplit(".", 1)[0] if k == "python" else v

    diff = [f"{k} {recorded_with.get(k)} (here {v})" for k, v in recording_versions().items()
            if same(k, str(recorded_with.get(k))) != same(k, v)]
    if not diff:
        return ""
    return (" The stored answers were recorded with " + ", ".join(diff)
            + ": install the kata's pinned versions (`nox -s check` does) so the tests draw the recorded inputs.")


def snapshot_mode() -> str:
    """`$KATA_SNAPSHOTS`: auto (default: live where reference/ exists, else replay),
    live, record (live, and store every answer), replay, verify (live, must equal the store)."""
    mode = os.environ.get("KATA_SNAPSHOTS", "auto") or "auto"
    if mode not in SNAPSHOT_MODES:
        raise ValueError(f"KATA_SNAPSHOTS={mode!r}: use one of {', '.join(SNAPSHOT_MODES)}")
    if mode == "auto":
        return "live" if reference_available() else "replay"
    return mode


def reference_available() -> bool:
    """Is the reference solution importable here (not in the learner handout)?"""
    try:
        return importlib.util.find_spec("reference") is not None
    except ImportError:
        return False


def _feed(h, x: object) -> None:
    """Hash `x` by value: tensors by dtype, shape and bytes; containers recursively."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        h.update(f"T|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif x is None or isinstance(x, (bool, int, float, complex, str, bytes, torch.dtype, torch.device)):
        h.update(f"{type(x).__name__}|{x!r}|".encode())
    elif isinstance(x, (tuple, list)):
        h.update(f"{type(x).__name__}[{len(x)}|".encode())
        for item in x:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(x, dict):
        h.update(f"dict[{len(x)}|".encode())
        for k in sorted(x, key=repr):
            _feed(h, k)
            _feed(h, x[k])
        h.update(b"]")
    elif type(x).__module__ == "numpy":
        _feed(h, torch.from_numpy(__import__("numpy").ascontiguousarray(x)))
    else:
        raise TypeError(
            f"@recorded arguments must be tensors, numbers, strings, None or tuples/lists/dicts of them; "
            f"got {type(x).__name__}. Pass a config as a dict and build objects inside the recorded function."
        )


def snapshot_key(fn, args: tuple, kwargs: dict) -> tuple[Path, str]:
    """(file, key) of one call: the file per test function, the key a hash of its arguments."""
    h = hashlib.sha256()
    _feed(h, [list(args), dict(kwargs)])
    module = fn.__module__.rsplit(".", 1)[-1]
    return SNAPSHOT_DIR / module / f"{fn.__qualname__.replace('<locals>.', '')}.pt", h.hexdigest()[:24]


def _load(path: Path) -> dict[str, object]:
    if path not in _store:
        _store[path] = torch.load(path, weights_only=True) if path.exists() else {}
    return _store[path]


def _same(a: object, b: object, rtol: float = _STALE_RTOL, atol: float = _STALE_ATOL) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point() or a.is_complex():
            return torch.allclose(a.detach().cpu(), b.detach().cpu(), rtol=rtol, atol=atol, equal_nan=True)
        return torch.equal(a.cpu(), b.cpu())
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y, rtol, atol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rtol, atol) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol) or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def _plain(x: object) -> object:
    """The answer as it will be stored: detached CPU tensors (what a replay returns)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().clone()
    if isinstance(x, tuple):
        return tuple(_plain(i) for i in x)
    if isinstance(x, list):
        return [_plain(i) for i in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"@recorded functions must return tensors, numbers, strings, None or tuples/lists/dicts of them; got {type(x).__name__}")


@atexit.register
def _flush() -> None:
    if not _dirty:
        return
    for path in sorted(_dirty):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(sorted(_store[path].items())), path)
    _dirty.clear()
    with atomic_path(SNAPSHOT_DIR / "VERSIONS.json") as tmp:  # every recording process writes the same
        tmp.write_text(json.dumps(recording_versions(), indent=2, sort_keys=True) + "\n")


def _derandomized() -> bool:
    """Is the active Hypothesis profile the derandomized one that recorded the answers?
    (A `dev` profile draws other inputs on purpose: nothing to check then.)"""
    from hypothesis import settings

    return bool(settings.default.derandomize)


class SnapshotMiss(AssertionError):
    """No stored reference answer for these arguments: the kata's error, never the learner's.

    A test's recorded arguments come from the test alone (its Hypothesis draws and
    constants, never from what the learner's code returned), so a correct or wrong
    solution alike meets exactly the recorded inputs; a miss means the stored answers are
    stale or incomplete. The grader reports such a test as a kata error, not as a failure
    of the learner's code, and leaves it out of the score (grader/pytest_plugin.py).
    """

    _kata_snapshot_miss = True


def recorded(fn=None, *, stale_atol: float = _STALE_ATOL, stale_rtol: float = _STALE_RTOL):
    """Mark a function that computes the reference's answer for a test; record / replay it.

    `@recorded(stale_atol=...)`: how far a live answer may drift from the stored one before
    the store counts as stale. The default allows float noise between CPUs and BLAS builds;
    an answer that comes out of a training run (its loss moves by ~1e-2 with the thread
    count, which reorders float sums) needs a tolerance of its own, far below the test's.

    Rules, so the grader's learner handout (which has no reference/ source) can replay
    stored answers: the function calls `oracle(...)` itself, is deterministic, and takes
    and returns only tensors, numbers, strings, None and tuples/lists/dicts of them.
    Answers live in `tests/_snapshots/<test module>/<function>.pt`, keyed by a hash of
    the arguments (tensors by dtype, shape and bytes); `nox -s snapshots` records them
    from the reference, and `$KATA_SNAPSHOTS` (see `snapshot_mode`) picks live / record /
    replay / verify. In a live run a stored answer that disagrees with the reference
    fails the test: the snapshots are stale.
    Tests that use the reference in any other way carry `@pytest.mark.needs_reference`.
    """

    if fn is None:
        return functools.partial(recorded, stale_atol=stale_atol, stale_rtol=stale_rtol)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        path, key = snapshot_key(fn, args, kwargs)
        mode = snapshot_mode()
        if mode == "replay":
            stored = _load(path)
            if key not in stored:
                raise SnapshotMiss(
                    f"the kata has no stored reference answer for {fn.__qualname__} with this test's input "
                    f"({path.parent.name}/{path.name}, key {key}). This is the kata's error, not your code's: the "
                    "inputs come from the test alone, and its stored answers are out of date or incomplete. This "
                    "test is left out of your score; tell your instructor (instructors: `nox -s snapshots` "
                    "re-records them)." + _version_hint()
                )
            return stored[key]
        answer = fn(*args, **kwargs)
        stored = _load(path)
        if mode == "record":
            stored[key] = _plain(answer)
            _dirty.add(path)
        elif key in stored and not _same(_plain(answer), stored[key], stale_rtol, stale_atol):
            pytest.fail(f"the stored answer of {fn.__qualname__} in {path} no longer matches the reference: "
                        "the snapshots are stale — run `nox -s snapshots`", pytrace=False)
        elif key not in stored and (mode == "verify" or _derandomized()):
            # Where the learner grades (the handout) this input would meet no answer: the
            # stored answers are incomplete. Live runs (CI) catch that here, at no cost.
            pytest.fail(f"{path} has no stored answer for this call of {fn.__qualname__}: the handout would meet a "
                        f"missing answer here. Re-record: `nox -s snapshots`", pytrace=False)
        return answer

    wrapper.__recorded__ = True
    return wrapper
