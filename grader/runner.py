"""Grade steps: each step's tests run in their own pytest process, with limits.

A child process per step means learner code that loops, exits, crashes, eats memory,
prints megabytes or monkeypatches torch can only fail its own step. The child reports
per-test results through `grader.pytest_plugin` (JSON lines, flushed as they happen);
this module turns them into a `StepResult`.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from grader import judge
from kata.machine import fast_malloc_env, threads_per_job

from .manifest import Step

GRADER_PARENT = Path(__file__).resolve().parents[1]
# Address space for a step's test process: torch itself needs ~2-3 GiB of mappings;
# a learner's `torch.empty(10**12)` must fail inside the test, not swap the machine.
DEFAULT_MEMORY_LIMIT = 12 * 2**30
OUTPUT_LIMIT = 64 * 2**20  # bytes a step's process may write to its console log file
# The most memory a separated grading of the reference took (steps 7 and 8, in a cgroup,
# benchmarks/results/grading-cpu-2core.jsonl): a machine that grants less cannot grade it.
REFERENCE_PEAK_MEMORY = 740 * 2**20
PER_TEST_TIMEOUT = 120  # pytest-timeout per test, capped by the step's time limit
MAX_RESTARTS = 3  # a test that kills the process fails; the step's other tests run again, this often

# status values
PASSED, FAILED, NOT_STARTED, WAITING, NEEDS_GPU, NO_TESTS, KATA_ERROR = (
    "passed", "failed", "not started", "waiting", "needs a GPU", "no tests", "kata error")
# A test outcome: the test met an input the kata has no stored answer for. The kata's
# fault, never the learner's: left out of the score, and the step says so (KATA_ERROR).
KATA_ERROR_OUTCOME = "kata-error"


@dataclass
class TestResult:
    name: str
    # passed | failed | skipped | waiting (needs another step that is unfinished or broken)
    # | kata-error (no stored answer for the test's input: the kata's fault, not graded)
    outcome: str
    message: str = ""
    stub: bool = False
    where: str = ""
    duration: float = 0.0
    extras: dict = field(default_factory=dict)  # what the test recorded (pytest's record_property)
    file: str = ""  # the test file, as pytest names it ("tests/test_step5_train_loop.py")


@dataclass
class StepResult:
    step: Step
    status: str
    tests: list[TestResult] = field(default_factory=list)
    note: str = ""  # why a step did not run (waiting on step N, needs a GPU) or why it crashed
    seconds: float = 0.0
    cached: bool = False  # reused: nothing it depends on changed since it was graded
    blocked_by: str = ""  # the id of the step it waits on ("step4"), when status is WAITING

    @property
    def graded(self) -> list[TestResult]:
        return [t for t in self.tests if t.outcome not in ("skipped", KATA_ERROR_OUTCOME)]

    @property
    def kata_errors(self) -> list[TestResult]:
        """Tests the kata could not grade (a missing stored answer): not the learner's failures."""
        return [t for t in self.tests if t.outcome == KATA_ERROR_OUTCOME]

    @property
    def passed(self) -> int:
        return sum(t.outcome == "passed" for t in self.graded)

    @property
    def total(self) -> int:
        return len(self.graded)

    @property
    def score(self) -> float:
        # A step not started scores 0 even where tests of its given scaffolding pass; tests the
        # kata could not grade (KATA_ERROR) are left out of `total`, not counted as failed.
        if self.status in (WAITING, NEEDS_GPU, NO_TESTS, NOT_STARTED) or not self.total:
            return 0.0
        return round(self.step.points * self.passed / self.total, 2)

    @property
    def counts_toward_max(self) -> bool:
        """A GPU-only step on a machine without one is neither passed nor failed."""
        return not self.step.bonus and self.status != NEEDS_GPU

    @property
    def first_failure(self) -> TestResult | None:
        """The failure the report shows: the first of the step's main test file,
        tests/test_<module>.py, that ran; else the first in run order (the files in
        name order), so an auxiliary file (`test_step5_grad_scaling.py` sorts before
        `test_step5_train_loop.py`) does not pre-empt the main file's diagnosis."""
        failed = [t for t in self.tests if t.outcome == "failed"]
        main = f"test_{self.step.module}.py"
        ran = [t for t in failed if Path(t.file).name == main and not t.message.startswith("not run:")]
        return (ran or failed or [None])[0]


def cuda_available() -> bool:
    if os.environ.get("KATA_GRADER_NO_GPU"):
        return False
    if sys.platform == "darwin" or (sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists()):
        # No NVIDIA driver: no CUDA, and no need to import torch (seconds, and ~200 MB) to learn it.
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def _is_stub_body(fn: ast.AST) -> bool:
    body = [n for n in fn.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc
    exc = exc.func if isinstance(exc, ast.Call) else exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def untouched(root: Path, solution: str, step: Step) -> bool:
    """True when every function the manifest's `open` names is still a bare
    `raise NotImplementedError` stub in the graded file: the learner has not started."""
    names = [n.strip() for n in step.functions.split(",") if n.strip()]
    try:
        tree = ast.parse((root / solution / f"{step.module}.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return False
    defs: dict[str, ast.AST] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defs[prefix + child.name] = child
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    if not names:
        names = [n for n, fn in defs.items() if _is_stub_body(fn)]
    return bool(names) and all(n in defs and _is_stub_body(defs[n]) for n in names)


def step_test_files(root: Path, step: Step) -> list[Path]:
    """tests/test_<group>_*.py in name order; tests/test_<module>.py among them is the step's
    main file, whose failures the report shows first (`StepResult.first_failure`)."""
    return sorted((root / "tests").glob(f"test_{step.test_group}_*.py"))


def _limits(memory: int) -> None:  # runs in the child between fork and exec
    import resource

    os.setsid()
    for what, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, OUTPUT_LIMIT * 4), (resource.RLIMIT_CORE, 0)):
        try:
            soft, hard = resource.getrlimit(what)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(what, (value, hard))
        except (ValueError, OSError):
            pass


def _child_env(root: Path, solution: str, results: Path, threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:  # the CPUs shared out among the steps graded side by side (kata/machine.py)
        env.update(KATA_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for k, v in fast_malloc_env().items():  # no page faults for every step's logits (kata/machine.py)
        env.setdefault(k, v)
    # The grader comes from the graded tree itself when it has one (a handout does).
    paths = [str(root)] + ([str(GRADER_PARENT)] if not (root / "grader").is_dir() else [])
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        KATA_SOLUTION=solution,
        KATA_GRADER_RESULTS=str(results),
        KATA_GRADER_ROOT=str(root),
        PYTHONHASHSEED="0",  # two runs on the same code give the same grade
        PYTHONDONTWRITEBYTECODE="1",
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _describe_exit(rc: int | None, timed_out: bool, limit: float) -> str:
    if timed_out:
        return (f"the step's tests were still running after its time limit of {limit:.0f} s "
                "— is there an infinite loop (a `while` whose condition never changes)?")
    if rc is not None and rc < 0:
        sig = -rc
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        if sig == signal.SIGKILL:
            from kata.machine import memory_limit

            text = "the test process was killed (SIGKILL) — usually it ran out of memory: is a tensor absurdly large?"
            granted = memory_limit()
            if granted is not None and granted < REFERENCE_PEAK_MEMORY:
                text += (f" (This machine grants the grading {granted // 2**20} MB and the reference's own grading "
                         f"peaks at ~{REFERENCE_PEAK_MEMORY // 2**20} MB: that is the kata's problem, not your code's; "
                         "tell your instructor.)")
            return text
        if sig == signal.SIGXFSZ:
            return "the test process wrote too much output (over 256 MB) — is there a print inside a loop?"
        return f"the test process crashed ({name})"
    return (f"the test process exited with code {rc} in the middle of the test — "
            "does the code call os._exit() or exit the interpreter?")


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _short_name(nodeid: str) -> str:
    return nodeid.split("::", 1)[1] if "::" in nodeid else nodeid


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0] if "::" in nodeid else ""


_WORD = re.compile(r"\b\w+\b")
_RELATIVE = re.compile(r"^\s*from\s+\.(\w+)\s+import", re.M)
_KATA = re.compile(r"\bkata(?:\.(\w+)|\s+import\s+\(?\s*([\w, \n]+))")
_PLAIN = re.compile(r"^\s*(?:from|import)\s+(\w+)", re.M)


def _names_in(text: str) -> set[str]:
    """Identifiers and string constants of a Python file, docstrings and comments aside
    (a docstring's example `load("step3_blocks")` loads nothing); every word when the
    file does not parse (a learner's syntax error must not hide what it imports)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return set(_WORD.findall(text))
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    names: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            names.update(_WORD.findall(n.value))
        elif isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.alias):
            names.update(n.name.split("."))
        elif isinstance(n, ast.ImportFrom) and n.module:
            names.update(n.module.split("."))
    return names


def _kata_imports(text: str) -> set[str]:
    """The kata/ modules a Python file imports (`from kata.final import x`, `import kata.tokens`,
    `from kata import presets`); read from the code, not from its docstrings and comments
    (a docstring that mentions `kata.trainer_run` imports nothing). A file that does not parse
    is read as text."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        found: set[str] = set()
        for a, b in _KATA.findall(text):
            found.update([a] if a else [n for n in re.split(r"[\s,()]+", b) if n])
        return found
    found = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            parts = n.module.split(".")
            if parts[0] == "kata":
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in n.names])
        elif isinstance(n, ast.Import):
            for a in n.names:
                parts = a.name.split(".")
                if parts[0] == "kata" and len(parts) > 1:
                    found.add(parts[1])
    return found


def graded_files(step: Step, root: Path, solution: str) -> list[Path]:
    """Every file a step's grade can depend on, whatever `--step` filter is in force.

    The step's own test files, every test helper and stored answer (tests/ except other
    steps' test files and the instructors' tests/mutants/), kata/ and grader/ (with the
    manifest), pyproject.toml and the root conftest, and the solution files the step can
    reach: its own module, any solution module named in a file reached (a test's
    `student("step3_blocks")`, kata/final.py's list of graded steps), followed through
    relative imports (`from .step2_causal_mask import`), `kata.*` imports and test helper
    imports. A file that cannot be parsed is read as text, so a syntax error in step 2
    still counts for step 3.
    """
    tests = root / "tests"
    own = step_test_files(root, step)
    graded = re.compile(r"test_(step|bonus)\d+_")
    # tests/mutants/ (the full kata's self-checks: mutants, outside solutions, attacks) is never
    # imported by a graded test; its step-named solution files are not the learner's.
    files = [f for f in sorted(tests.rglob("*")) if f.is_file() and "__pycache__" not in f.parts
             and (tests / "mutants") not in f.parents and (f in own or not graded.match(f.name))]
    for d in ("kata", "grader"):
        files += [f for f in sorted((root / d).rglob("*")) if f.is_file() and "__pycache__" not in f.parts
                  and f.suffix in (".py", ".toml")]
    files += [root / "pyproject.toml", root / "conftest.py", root / solution / "__init__.py"]
    stems = {f.stem for f in (root / solution).glob("*.py")} - {"__init__"}
    seen: set[Path] = set()
    todo = [*own, tests / "_support.py", tests / "conftest.py", tests / "strategies.py", root / solution / f"{step.module}.py"]
    while todo:
        f = todo.pop()
        if f in seen or not f.is_file():
            continue
        seen.add(f)
        text = f.read_text(encoding="utf-8", errors="replace")
        reached = {root / solution / f"{w}.py" for w in _names_in(text) & stems}
        if f.parent == root / solution:
            reached |= {root / solution / f"{m}.py" for m in _RELATIVE.findall(text)}
        for name in _kata_imports(text):
            reached.add(root / "kata" / f"{name}.py")
        reached |= {tests / f"{m}.py" for m in _PLAIN.findall(text)}
        todo += [r for r in reached if r not in seen]
    files += sorted(p for p in seen if p.parent == root / solution)
    return files


def cache_key(step: Step, root: Path, solution: str, extra: str = "") -> str:
    """A hash of everything a step's grade depends on (`graded_files`), the Python and
    torch versions and the step's settings. It does not depend on which other steps are
    graded in the same run: `--step 3` and a full check share one cache."""
    h = hashlib.sha256(f"{solution}|{sys.version}|{extra}|{step!r}".encode())
    for f in graded_files(step, root, solution):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() if f.exists() else b"<missing>")
        h.update(b"\0")
    try:
        from importlib.metadata import version

        h.update(version("torch").encode())
    except Exception:
        pass
    return h.hexdigest()[:32]


def _to_json(r: StepResult) -> dict:
    return {"status": r.status, "note": r.note, "seconds": r.seconds, "blocked_by": r.blocked_by,
            "tests": [vars(t) for t in r.tests]}


def _from_json(step: Step, d: dict) -> StepResult:
    return StepResult(step, d["status"], [TestResult(**t) for t in d["tests"]], d.get("note", ""), d.get("seconds", 0.0),
                      blocked_by=d.get("blocked_by", ""))


def _cache_path(step: Step, root: Path, solution: str, cache: Path, kw: dict) -> Path:
    return cache / f"{solution}-{step.id}-{cache_key(step, root, solution, repr(sorted(kw.items())))}.json"


def stored_grade(step: Step, root: Path, solution: str, cache: Path, **kw) -> tuple[StepResult, bool] | None:
    """The grade stored for `step` (one is kept per step), and whether it is for the files as
    they are now (the same `kw` as the run that stored it); None when none is stored. A grade
    for older files is only what the step was, for "re-grade it": never reused."""
    current = _cache_path(step, root, solution, cache, kw)
    for path in cache.glob(f"{solution}-{step.id}-*.json"):
        if (result := _load(step, path)) is not None:
            return result, path == current
    return None


def _load(step: Step, path: Path) -> StepResult | None:
    try:
        result = _from_json(step, json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    result.cached = True
    return result


def run_step_cached(step: Step, root: Path, solution: str, cache: Path | None, threads: int | None = None,
                    refresh: bool = False, **kw) -> StepResult:
    """`run_step`, reusing the stored result when nothing the step depends on changed
    (`threads` is how the step runs, not what it grades: not part of the key). `refresh`:
    grade again whatever is stored, and store the new result."""
    if cache is None or os.environ.get("KATA_SNAPSHOTS") in ("record", "verify"):
        return run_step(step, root, solution, threads=threads, **kw)
    path = _cache_path(step, root, solution, cache, kw)
    result = None if refresh else _load(step, path)
    if result is not None:
        return result
    result = run_step(step, root, solution, threads=threads, **kw)
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob(f"{solution}-{step.id}-*.json"):
        old.unlink(missing_ok=True)
    path.write_text(json.dumps(_to_json(result)), encoding="utf-8")
    return result


def run_step(step: Step, root: Path, solution: str, *, memory: int = DEFAULT_MEMORY_LIMIT,
             time_limit: float | None = None, python: str = sys.executable, threads: int | None = None,
             separate: bool = False) -> StepResult:
    """Run one step's tests in a fresh pytest process and collect its per-test results.

    `separate`: the step's tests (where the manifest says they can: `separate = true`) run
    the learner's code in a worker process and decide in one it cannot reach (grader/judge.py)."""
    files = step_test_files(root, step)
    if not files:
        return StepResult(step, NO_TESTS, note=f"no tests/test_{step.test_group}_*.py yet")
    limit = float(time_limit or step.time_limit)
    start = time.monotonic()
    base = [python, "-m", "pytest", "-p", "grader.pytest_plugin", "-p", "no:cacheprovider", "-o", "addopts=",
            "-q", "--tb=no", "--no-header", "--show-capture=no", "--color=no",
            f"--timeout={int(min(PER_TEST_TIMEOUT, max(5, limit - 5)))}",
            "-W", "ignore::DeprecationWarning", "-W", "ignore::FutureWarning",  # KATA_SOLUTION picks the code
            # Tests of the kata's machinery that use the live reference are not the learner's
            # grade (and the handout skips them): the repo and the handout grade alike.
            "-m", "not needs_reference and not infra"]
    if step.select:
        base += ["-k", step.select]
    targets = [str(f.relative_to(root)) for f in files]
    events: list[dict] = []
    # ignore_cleanup_errors: a killed worker may still be writing its scratch inside
    with tempfile.TemporaryDirectory(prefix=f"kata-grade-{step.id}-", ignore_cleanup_errors=True) as tmp:
        for attempt in range(MAX_RESTARTS + 1):
            results, console = Path(tmp) / f"results{attempt}.jsonl", Path(tmp) / f"console{attempt}.txt"
            left = limit - (time.monotonic() - start)
            env = _child_env(root, solution, results, threads)
            env.pop("KATA_SEPARATE", None)
            if separate and step.separate:
                env["KATA_SEPARATE"] = "1"
                env["KATA_WORKER_SCRATCH_IN"] = tmp  # removed with it, even after a kill at the time limit
                if step.prerun and not attempt:
                    env[judge.PRERUN_ENV] = str(_prerun(step, root, python, env, Path(tmp), start + limit, memory))
            rc, timed_out = _run_child(base + targets, root, env, console, memory, left)
            new = _read_events(results)
            if attempt:  # keep the first run's list of tests
                new = [e for e in new if e.get("event") != "collected"]
            events += new
            if timed_out or any(e.get("event") == "finished" for e in new):
                break
            # The process died in a test (os._exit, a crash): that test fails, the rest run again.
            collected = next((e["nodeids"] for e in events if e.get("event") == "collected"), [])
            done = {e["nodeid"] for e in events if e.get("event") == "result"}
            running = next((e["nodeid"] for e in reversed(new) if e.get("event") == "start"), None)
            if running is not None and running not in done:
                events.append({"event": "result", "nodeid": running, "outcome": "failed",
                               "message": _describe_exit(rc, False, limit)})
                done.add(running)
            targets = [n for n in collected if n not in done]
            if not targets or running is None or attempt == MAX_RESTARTS:
                break
        result = _assemble(step, events, rc, timed_out, limit, _tail(console), untouched(root, solution, step))
    result.seconds = time.monotonic() - start
    return result


def _prerun(step: Step, root: Path, python: str, env: dict, tmp: Path, deadline: float, memory: int) -> Path:
    """The step's training runs, each in a worker of its own before the judge starts (see
    grader/judge.py `prerun`); their replies' file for the judge."""
    out = tmp / "prerun.pickle"
    judge.prerun(root, python, env, [str(root / "tests"), str(root)], step.prerun, out, deadline,
                 preexec=lambda: _limits(memory))
    return out


# Step processes lead their own process groups (`_limits` calls setsid), so a signal to
# the grader never reaches them: the grader kills them itself (`stop_on_signals`).
_children: set[int] = set()  # pids (= process group ids) of the step processes running now
# Reentrant: the signal handler runs in the main thread, possibly while that thread holds it.
_children_lock = threading.RLock()
_stopped_by: int | None = None  # the signal that stopped the grader; no step process starts after it


class GradingStopped(Exception):
    """A signal stopped the grader: the step's process was killed, the step has no grade."""


def _kill_group(pid: int) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(pid, signal.SIGKILL)  # the step's pytest and anything it started
        else:
            os.kill(pid, signal.SIGTERM)  # Windows: TerminateProcess
    except OSError:  # already gone
        pass


def _run_child(cmd: list[str], root: Path, env: dict, console: Path, memory: int, limit: float) -> tuple[int, bool]:
    """Run one step's pytest in its own process group; kill the group after `limit` s.
    Raises GradingStopped when a signal stops the grader meanwhile."""
    timed_out = False
    with open(console, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=lambda: _limits(memory))
        with _children_lock:
            _children.add(proc.pid)
            if _stopped_by is not None:  # the signal came while this process was starting
                _kill_group(proc.pid)
        try:
            rc = proc.wait(timeout=max(1.0, limit))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            rc = proc.wait()
        finally:
            with _children_lock:
                _children.discard(proc.pid)
    if _stopped_by is not None:  # killed by us, not by the learner's code: no result to cache
        raise GradingStopped(signal.Signals(_stopped_by).name)
    return rc, timed_out


def _on_signal(signum: int, frame) -> None:
    global _stopped_by
    with _children_lock:
        again = _stopped_by is not None
        _stopped_by = signum
        for pid in list(_children):
            _kill_group(pid)
    if again:  # a second Ctrl-C while the first one unwinds: leave now
        os._exit(128 + signum)
    # KeyboardInterrupt for every signal: it unwinds the grading loop the way Ctrl-C
    # always did, and watchfiles turns any exception a handler raises into one anyway.
    raise KeyboardInterrupt


@contextmanager
def stop_on_signals():
    """While inside: SIGINT, SIGTERM or SIGHUP to the grader kills every running step
    process group and raises KeyboardInterrupt in the main thread; `stopped_by()` then
    says which signal it was. Only the main thread can install signal handlers, so
    elsewhere this does nothing; a signal that is ignored (nohup) stays ignored."""
    global _stopped_by
    _stopped_by = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP: a closed terminal; not on Windows
    wanted = [getattr(signal, n) for n in names if hasattr(signal, n)]
    previous = {s: signal.getsignal(s) for s in wanted}
    for s, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, old in previous.items():
            if old is not signal.SIG_IGN and old is not None:  # None: set outside Python, cannot restore
                signal.signal(s, old)


def stopped_by() -> int | None:
    """The signal that stopped grading inside `stop_on_signals`, or None."""
    return _stopped_by


def _read_events(path: Path) -> list[dict]:
    events = []
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut off by a kill
    return events


def _assemble(step: Step, events: list[dict], rc: int | None, timed_out: bool, limit: float, console: str,
              stubs_untouched: bool = False) -> StepResult:
    collected: list[str] = []
    errors: list[dict] = []
    done: dict[str, TestResult] = {}
    running: str | None = None
    finished = False
    for e in events:
        kind = e.get("event")
        if kind == "collected":
            collected = list(e.get("nodeids", []))
        elif kind == "collect_error":
            errors.append(e)
        elif kind == "start":
            running = e["nodeid"]
        elif kind == "result":
            done[e["nodeid"]] = TestResult(_short_name(e["nodeid"]), e["outcome"], e.get("message", ""),
                                           bool(e.get("stub")), e.get("where", ""), float(e.get("duration", 0.0)),
                                           dict(e.get("extras") or {}), _file_of(e["nodeid"]))
            running = None
        elif kind == "finished":
            finished = True
    crashed = not finished
    why = _describe_exit(rc, timed_out, limit) if crashed else ""
    tests: list[TestResult] = []
    if errors:
        msg = "\n".join(f"{e.get('where') or 'collection'}: {e.get('message', '')}" for e in errors)
        tests.append(TestResult(f"collecting the tests of {step.id}", "failed",
                                "the step's test file could not be loaded:\n" + msg[-1500:]))
    if not collected and crashed and not errors:
        detail = f"\n{console[-800:]}" if console else ""
        tests.append(TestResult(f"collecting the tests of {step.id}", "failed", why + detail))
    for nodeid in collected:
        if nodeid in done:
            tests.append(done[nodeid])
        elif nodeid == running:
            tests.append(TestResult(_short_name(nodeid), "failed", why, file=_file_of(nodeid)))
        else:
            reason = why if crashed else "did not run"
            tests.append(TestResult(_short_name(nodeid), "failed", f"not run: the step's test process stopped early ({reason})",
                                    file=_file_of(nodeid)))
    if not tests:
        return StepResult(step, NO_TESTS, note=f"no tests selected in tests/test_{step.test_group}_*.py")
    kata_errors = [t for t in tests if t.outcome == KATA_ERROR_OUTCOME]
    graded = [t for t in tests if t.outcome not in ("skipped", KATA_ERROR_OUTCOME)]
    if not graded and not kata_errors:
        return StepResult(step, NO_TESTS, tests, note="every test was skipped: " + tests[0].message[:200])
    failures = [t for t in graded if t.outcome == "failed"]
    waiting = [t for t in graded if t.outcome == WAITING_OUTCOME]
    if not failures and waiting:
        # Only unfinished or broken other steps stand between this step and a pass:
        # it waits on the earliest of them (its own failures would have come first).
        ids = sorted({_waiting_on(t.message) for t in waiting}, key=_order)
        first = next(t for t in waiting if _waiting_on(t.message) == ids[0])
        return StepResult(step, WAITING, tests, note=first.message.split(":", 1)[0], blocked_by=ids[0])
    if not failures and kata_errors:
        return StepResult(step, KATA_ERROR, tests, note=(
            f"{len(kata_errors)} test(s) not graded: the kata has no stored answer for their input — the kata's "
            f"error, not your code's (tell your instructor)"))
    if not failures:
        status = PASSED
    elif stubs_untouched and all(t.stub for t in failures):
        status = NOT_STARTED
    else:
        status = FAILED
    return StepResult(step, status, tests, note=why)


WAITING_OUTCOME = "waiting"
_WAITING = re.compile(r"^waiting on (step|bonus) (\d+)")


def _waiting_on(message: str) -> str:
    """`waiting on step 4: ...` -> "step4" (tests/_support.py words it so)."""
    m = _WAITING.match(message)
    return f"{m.group(1)}{m.group(2)}" if m else ""


def _order(step_id: str) -> tuple[int, int]:
    m = re.match(r"(step|bonus)(\d+)", step_id)
    return (m.group(1) == "bonus", int(m.group(2))) if m else (2, 0)


def grade(steps: list[Step], root: Path, solution: str, *, jobs: int = 1, gpu: bool | None = None,
          on_result=None, ignore_needs: bool = False, cache: Path | None = None, on_start=None,
          refresh: bool = False, **kw) -> list[StepResult]:
    """Grade steps; a step whose `needs` have not all passed waits.

    A step starts as soon as its needs are graded and a worker is free (`jobs` at a
    time): main steps before bonus steps, and among those the longest (the largest time
    limit: step 8's training run) first, so the run that takes minutes does not queue
    behind bonus steps. The result list is always in manifest order, so the report does
    not depend on scheduling.
    """
    has_gpu = [gpu]  # asked lazily: importing torch to ask costs seconds

    def gpu_here() -> bool:
        if has_gpu[0] is None:
            has_gpu[0] = cuda_available()
        return has_gpu[0]

    threads = threads_per_job(jobs)
    by_id = {s.id: s for s in steps}
    order = {s.id: i for i, s in enumerate(steps)}
    results: dict[str, StepResult] = {}
    pending = list(steps)
    running: dict = {}  # future -> step

    def blocker(step: Step) -> str | None:
        for need in step.needs:
            r = results.get(need)
            # A kata error is the kata's fault: it never holds back a step that needs this one.
            if need in by_id and (r is None or r.status not in (PASSED, KATA_ERROR)):
                return need
        return None

    def settle(s: Step, r: StepResult) -> None:
        results[s.id] = r
        if on_result:
            on_result(r)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while pending or running:
            ready = [s for s in pending if not [n for n in s.needs if n in by_id and n not in results]]
            if not ready and not running and pending:  # a cycle in needs: treat as waiting rather than hang
                ready = list(pending)
            ready.sort(key=lambda s: (s.bonus, -s.time_limit, order[s.id]))
            for s in ready:
                need = None if ignore_needs else blocker(s)
                if need is not None:
                    r = by_id[need]
                    settle(s, StepResult(s, WAITING, note=f"waiting on {'' if r.bonus else 'step '}{r.number}",
                                         blocked_by=r.id))
                elif s.gpu and not gpu_here():
                    settle(s, StepResult(s, NEEDS_GPU,
                                         note=f"needs a GPU — run `{s.gpu_command or 'nox -s final'}` on a GPU machine"))
                elif len(running) < max(1, jobs):
                    if on_start:
                        on_start(s)
                    running[pool.submit(run_step_cached, s, root, solution, cache, threads, refresh, **kw)] = s
                else:
                    continue  # no free worker: stays pending, ordered again next round
                pending.remove(s)
            if running:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: order[running[f].id]):
                    settle(running.pop(fut), fut.result())
    return [results[s.id] for s in steps]
