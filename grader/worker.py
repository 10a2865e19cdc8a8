"""The learner's side of separated grading: runs probes on the learner's code, answers with data.

The judge (the pytest process that grades a step, grader/judge.py) starts this process
and sends it requests: "run probe `tests/_probes_step1.py:embeddings_forward` on these
arguments". A probe builds what the learner's code needs, calls it through the tests'
guard (tests/_support.py) and returns plain data: tensors, numbers, strings, booleans,
None, and lists, tuples and dicts of them. Nothing here decides a grade: this process
holds no test assertions, no expected answers and no results channel. Its replies are
`torch.save`d and read by the judge with `torch.load(weights_only=True)`, which rebuilds
data and runs no code, so whatever the learner's code does here (patch pytest, patch torch,
exit, write fake output) can only change the data the judge then checks.

Protocol, on two pipes the judge passes as file descriptors (argv: read fd, write fd):
each message is an 8-byte big-endian length and a payload. Requests are pickles from the
judge (trusted here), numbered; replies are `{"value": data, "rng": state, "seq": n}` or
`{"raised": {...}, "rng": state, "seq": n}` (see `describe`), and on Linux, where a clean
parent forks the process that runs the learner's code, `{"died": exit code, "seq": n}` when
that process ended while on request n (or after it: n is then an earlier request). The judge's torch RNG state, grad
mode and thread count travel with each request and the RNG state comes back, so a probe
draws the same numbers as the same code run inside the test (the in-process mode).
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import sys
from pathlib import Path

HEADER = struct.Struct(">Q")
PATH_ENV = "KATA_WORKER_PATH"  # the judge's sys.path, which this process takes as its own
WRITABLE_ENV = "KATA_WORKER_WRITABLE"  # the folders it may write (its scratch, the test's temporary folders)
HIDDEN_ENV = "KATA_WORKER_HIDDEN"  # more paths it may not read (the official tree's stored answers)
MAX_MESSAGE = 1 << 30  # bytes: a reply larger than this is refused by the judge


def to_data(x: object, where: str = "the probe's result") -> object:
    """`x` as plain data that `torch.load(weights_only=True)` rebuilds: tensors become plain,
    detached CPU copies (a Parameter or a view of a large storage too); tuples (named ones
    too), lists and dicts are converted item by item. Anything else is the kata's mistake
    (a probe must return data) and raises TypeError."""
    import torch

    if isinstance(x, torch.Tensor):
        return torch.Tensor(x.detach().cpu().clone()) if type(x) is not torch.Tensor else x.detach().cpu().clone()
    if x is None or type(x) in (bool, int, float, complex, str, bytes):
        return x
    for kind in (bool, int, float, complex, str, bytes):  # numpy's float64, an IntEnum, a str subclass: plain
        if isinstance(x, kind):
            return kind(x)
    if type(x).__module__ == "numpy" and hasattr(x, "item") and getattr(x, "shape", None) == ():
        return to_data(x.item(), where)
    if isinstance(x, (torch.dtype, torch.device)):
        return str(x)
    if isinstance(x, tuple):
        return tuple(to_data(i, where) for i in x)
    if isinstance(x, list):
        return [to_data(i, where) for i in x]
    if isinstance(x, dict):
        return {to_data(k, where): to_data(v, where) for k, v in x.items()}
    raise TypeError(f"{where} holds a {type(x).__module__}.{type(x).__qualname__}: probes return plain data only "
                    f"(tensors, numbers, strings, None, lists/tuples/dicts); this is the kata's mistake")


def describe(e: BaseException, solution: str) -> dict:
    """What the judge needs to re-raise `e` for the test: kind "skip" (a test that waits on
    another step), "fail" (the tests' guard failed the call: a stub, an input changed in
    place, an import error) or "error" (anything the learner's code raised), with the
    message, the exception's builtin base classes, whether a kata stub raised it and where
    in the learner's code it happened."""
    import pytest

    from grader.learner_code import learner_location
    from kata.unfinished import find_stub

    where = learner_location(e.__traceback__)
    stub = find_stub(e, solution) is not None
    if isinstance(e, pytest.skip.Exception):
        if where:  # a skip raised by the learner's own file is not a way to dodge a test
            return {"kind": "fail", "where": where, "stub": False, "type": "Failed", "bases": [],
                    "message": f"the code in {where} skipped the test (pytest.skip); solutions must not skip tests"}
        return {"kind": "skip", "message": str(e.msg), "where": "", "stub": False, "type": "Skipped", "bases": []}
    if isinstance(e, pytest.fail.Exception):
        return {"kind": "fail", "message": str(e.msg), "where": where, "stub": stub, "type": "Failed", "bases": []}
    bases = [c.__name__ for c in type(e).__mro__ if c.__module__ == "builtins" and isinstance(c, type)]
    return {"kind": "error", "type": type(e).__name__, "bases": bases, "message": str(e)[:20000], "where": where,
            "stub": stub}


def _read(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _write(fd: int, payload: bytes) -> None:
    view = memoryview(HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def _die_with_the_judge(parent: int | None = None) -> None:
    """Linux: the kernel kills this process when its parent exits (a killed judge leaves no
    worker); `parent`: the pid it must still have (a fork's parent may die before this runs)."""
    if sys.platform != "linux":
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1 or (parent is not None and os.getppid() != parent):  # the parent is already gone
        os._exit(0)


def _setup() -> None:
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # The judge's import path (the tests folder, the graded tree): its entries this process
    # lacks go first. PYTHONPATH's entries keep their place ahead of the judge's order, as
    # tests/mutants/run.py needs: it binds `exercises` to a mutated copy on PYTHONPATH in
    # the judge before the repository's conftest puts the repository first there.
    path = os.environ.get(PATH_ENV, "")
    sys.path[:0] = [p for p in path.split(os.pathsep) if p and p not in sys.path]
    import grader.pytest_plugin  # noqa: F401 - hides reference/ where the graded tree has none, leaves out datasets


def _confine(solution: str) -> None:
    """Landlock this process before any learner code runs (grader/confinement.py): the stored
    answers (and reference/, unless it is the graded solution) unreadable, writes only to
    the scratch folders the judge named."""
    from grader.confinement import confine

    tree = Path(os.environ.get("KATA_GRADER_ROOT") or os.getcwd())
    hidden = [tree / "tests" / "_snapshots"] + ([tree / "reference"] if solution != "reference" else [])
    hidden += [Path(p) for p in os.environ.get(HIDDEN_ENV, "").split(os.pathsep) if p]
    writable = [Path(p) for p in os.environ.get(WRITABLE_ENV, "").split(os.pathsep) if p]
    why = confine(tree, hidden=hidden, writable=writable)
    if not why and solution != "reference":
        # reference/ is unreadable now: let `import reference` fail as it does in a handout
        # (ModuleNotFoundError, so the tests use the learner's own other steps), not with EACCES.
        from grader.pytest_plugin import _NoReference

        if not any(isinstance(f, _NoReference) for f in sys.meta_path):
            sys.meta_path.insert(0, _NoReference())
    if why:
        print(f"grader worker: not confined ({why}); your code can read the stored answers here", file=sys.stderr)


def serve(fd_in: int, fd_out: int) -> None:
    import torch

    import _support  # noqa: F401 - imported before the snapshot, so its helpers are guarded too
    from grader.learner_code import patch_snapshot
    from kata.solution import solution_name

    solution = solution_name()
    _confine(solution)
    guard = patch_snapshot()
    if sys.platform == "linux" and not _memory_is_tight():
        _nanny(fd_in, fd_out, solution, guard)  # never returns
    _answer(fd_in, fd_out, None, solution, guard)


def _memory_is_tight() -> bool:
    """A cgroup limit under 2 GiB (Gradescope's default: 768 MB): no forking parent there. Each
    child writes to most pages it shares with that parent (reference counts), so a resident
    parent costs up to ~150 MB more: measured, step 8 no longer fit in 768 MB with it."""
    from kata.machine import FAST_MALLOC_MIN_MEMORY, memory_limit

    limit = memory_limit()
    return limit is not None and limit < FAST_MALLOC_MIN_MEMORY


def _nanny(fd_in: int, fd_out: int, solution: str, guard: dict) -> None:
    """Linux: this process, confined and with torch imported but no learner code run, forks
    the child that answers; when a child dies (os._exit, a crash, a signal) it tells the
    judge how, with the number of the request the child was on, and forks a fresh one at
    once. A restart then costs a fork, not a new Python importing torch (about 2 s); the
    learner's code never runs here, so every child starts as clean as a new process."""
    import mmap
    import select

    status = mmap.mmap(-1, HEADER.size)  # shared with each child: the number of the request it is on
    while True:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _die_with_the_judge(parent)  # with this process, which dies with the judge
            _answer(fd_in, fd_out, status, solution, guard)
            sys.stdout.flush()
            os._exit(0)
        _, code = os.waitpid(pid, 0)
        (last,) = HEADER.unpack(status[:HEADER.size])
        poll = select.poll()
        poll.register(fd_in, select.POLLIN)
        if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poll.poll(0)):
            os._exit(0)  # the judge closed its end: done
        buf = io.BytesIO()
        import torch

        torch.save({"died": os.waitstatus_to_exitcode(code), "seq": last}, buf)
        try:
            _write(fd_out, buf.getvalue())
        except OSError:  # the judge is gone
            os._exit(0)


def _answer(fd_in: int, fd_out: int, status, solution: str, guard: dict) -> None:
    """Answer the judge's requests until it closes the pipe."""
    import torch

    from grader.learner_code import changed_attributes

    while True:
        try:
            (size,) = HEADER.unpack(_read(fd_in, HEADER.size))
            seq, target, args, kwargs, context = pickle.loads(_read(fd_in, size))
        except EOFError:
            return
        if status is not None:
            status[:HEADER.size] = HEADER.pack(seq)
        if context.get("rng") is not None:  # None: a run before the judge starts (grader/judge.py `prerun`)
            torch.set_rng_state(context["rng"])
        if context.get("test"):  # which test asks: a stub of another step then waits (tests/_support.py)
            os.environ["PYTEST_CURRENT_TEST"] = context["test"]
        if context.get("threads"):
            torch.set_num_threads(context["threads"])
        torch.set_grad_enabled(context.get("grad", True))
        try:
            module, _, name = target.partition(":")
            fn = __import__(module, fromlist=["_"])
            for part in name.split("."):
                fn = getattr(fn, part)
            reply = {"value": to_data(fn(*args, **kwargs), f"{target}'s result")}
        except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt from learner code too
            reply = {"raised": describe(e, solution)}
        patched = changed_attributes(guard)
        if patched:
            reply = {"raised": {"kind": "fail", "type": "Failed", "bases": [], "stub": False, "where": "",
                                "message": f"the code replaced {', '.join(patched[:5])} while the test ran; solutions "
                                           "must not monkeypatch torch, pytest or the kata's test helpers"}}
        reply["rng"] = torch.get_rng_state()
        reply["seq"] = seq
        buf = io.BytesIO()
        try:
            torch.save(reply, buf)
        except Exception as e:  # noqa: BLE001 - e.g. a tensor torch cannot save
            buf = io.BytesIO()
            torch.save({"raised": describe(e, solution), "rng": torch.get_rng_state(), "seq": seq}, buf)
        _write(fd_out, buf.getvalue())


def main() -> None:
    fd_in, fd_out = int(sys.argv[1]), int(sys.argv[2])
    _die_with_the_judge()
    _setup()
    serve(fd_in, fd_out)
    sys.stdout.flush()
    os._exit(0)  # no atexit work in a process whose code nobody trusts


if __name__ == "__main__":
    main()
