"""The trusted side of separated grading: the test process asks a worker to run the learner's code.

In separated mode (`KATA_SEPARATE=1`, set by the grader for the course paths and by
`python -m grader --separate`) the pytest process that decides a step's grade — the
judge — never imports the learner's modules. Each `probe(...)` in a test
(tests/_support.py) becomes a request to one worker process (grader/worker.py), started
at the first request and ended with the test session. The judge sends the probe's
name and arguments, reads back plain data with `torch.load(weights_only=True)` (no code
runs while loading), and the test's assertions compare that data with answers the judge
computes or has stored. Whatever the learner's code does in the worker — patch pytest
or torch, write to files, exit — it cannot reach the assertions, the stored answers or
the results channel, which live here.

Where the grader runs as root (Gradescope), `KATA_WORKER_USER` names the unprivileged
user the worker runs as (grader/autograder.py creates it), so it can read neither the
official answers nor write the results, nor signal or inspect this process.
"""
from __future__ import annotations

import atexit
import builtins
import io
import os
import pickle
import shutil
import signal
import subprocess
import tempfile
import sys
import time
from pathlib import Path

from grader.worker import HEADER, MAX_MESSAGE, PATH_ENV, WRITABLE_ENV

SEPARATE_ENV = "KATA_SEPARATE"
WORKER_ENV = "KATA_WORKER"
WORKER_USER_ENV = "KATA_WORKER_USER"
SCRATCH_ENV = "KATA_WORKER_SCRATCH_IN"  # the grader's temporary folder for the step: the worker's scratch goes inside
# What only the judge may know: the worker's environment leaves these out.
PRERUN_ENV = "KATA_PRERUN_REPLIES"  # the runner's file of replies to probe calls it made before this judge
_JUDGE_ONLY = ("KATA_GRADER_RESULTS", SEPARATE_ENV, SCRATCH_ENV, "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS", PRERUN_ENV)


def separated() -> bool:
    """Is this the judge of a separated grading (learner code runs only in the worker)?"""
    return os.environ.get(SEPARATE_ENV) == "1" and os.environ.get(WORKER_ENV) != "1"


class WorkerDied(AssertionError):
    """The worker process ended while it ran the learner's code (os._exit, a crash, a signal)."""


def _exit_text(rc: int | None) -> str:
    if rc is None:
        return "did not exit"
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


def _died_text(rc: int | None) -> str:
    return (f"the process running your code {_exit_text(rc)} during this test, before it returned (os._exit, "
            "sys.exit in a thread, a crash, or output that is not the worker's reply); a library function must "
            "return or raise")


class Worker:
    """One worker process and its two pipes; started on the first request, restarted after a crash."""

    def __init__(self, root: Path, python: str = sys.executable, *, env: dict | None = None,
                 path: list[str] | None = None, cache: Path | None = None, preexec=None) -> None:
        """`env`, `path`, `cache`: the environment, import path and run cache the worker starts
        from (by default this process's; the runner passes the step's, for `prerun`)."""
        self.root, self.python, self.cache, self.preexec = root, python, cache, preexec
        self.env = dict(os.environ if env is None else env)
        self.path = list(sys.path if path is None else path)
        self.proc: subprocess.Popen | None = None
        self.to_worker = self.from_worker = -1
        self.scratch = ""
        self.seq = 0  # the number of the last request

    def _start(self) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        env = {k: v for k, v in self.env.items() if k not in _JUDGE_ONLY}
        env[WORKER_ENV] = "1"
        env[PATH_ENV] = os.pathsep.join(str(Path(p).resolve()) for p in self.path if p)
        extra: dict = {}
        user = self.env.get(WORKER_USER_ENV)
        if user and hasattr(os, "geteuid") and os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(user)
            extra = dict(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
            scratch = self.env.get("KATA_WORKER_TMP") or self._scratch()
            os.chown(scratch, entry.pw_uid, entry.pw_gid)
            env.update(USER=user, LOGNAME=user)
            writable = [scratch]
        else:
            scratch = self._scratch()
            writable = [scratch, *_test_folders(self.cache)]
        env.update(HOME=scratch, TMPDIR=scratch)
        env[WRITABLE_ENV] = os.pathsep.join(writable)
        try:
            self.proc = subprocess.Popen([self.python, "-P", str(Path(__file__).with_name("worker.py")), str(req_r), str(rep_w)],
                                         pass_fds=(req_r, rep_w), cwd=self.root, env=env,
                                         stdin=subprocess.DEVNULL, preexec_fn=self.preexec, **extra)
        finally:
            os.close(req_r)
            os.close(rep_w)
        self.to_worker, self.from_worker = req_w, rep_r

    def _scratch(self) -> str:
        """The worker's HOME and TMPDIR: one folder for this judge, kept across worker restarts
        and removed by `close`; inside the grader's own temporary folder for the step
        (SCRATCH_ENV) where there is one, so a step process killed at its time limit leaves
        nothing behind either."""
        if not self.scratch:
            base = self.env.get(SCRATCH_ENV)
            self.scratch = tempfile.mkdtemp(prefix="kata-worker-", dir=base if base and os.path.isdir(base) else None)
        return self.scratch

    def _read(self, n: int, deadline: float | None = None) -> bytes:
        chunks = []
        while n:
            if deadline is not None:
                import select

                poll = select.poll()
                poll.register(self.from_worker, select.POLLIN)
                if not poll.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                    raise TimeoutError
            chunk = os.read(self.from_worker, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _send(self, target: str, args: tuple, kwargs: dict, context: dict) -> None:
        """Write the next numbered request to the worker."""
        self.seq += 1
        payload = pickle.dumps((self.seq, target, args, kwargs, context), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(HEADER.pack(len(payload)) + payload)
        while view:
            view = view[os.write(self.to_worker, view):]

    def request_raw(self, target: str, args: tuple, kwargs: dict, test: str, deadline: float) -> bytes | None:
        """The worker's reply to one request as the bytes it sent, without torch in this
        process (the runner's `prerun`); None if it died or `deadline` (monotonic) passed."""
        if self.proc is None:
            self._start()
        context = {"rng": None, "threads": _threads(self.env), "grad": True, "test": test}
        try:
            self._send(target, args, kwargs, context)
            (size,) = HEADER.unpack(self._read(HEADER.size, deadline))
            if size > MAX_MESSAGE:
                return None
            return self._read(size, deadline)
        except (EOFError, BrokenPipeError, TimeoutError):
            self._reap()
            return None

    def request(self, target: str, args: tuple, kwargs: dict) -> dict:
        """Run probe `target` ("module:function") in the worker; its reply as plain data."""
        import torch

        if self.proc is None:
            self._start()
        context = {"rng": torch.get_rng_state(), "threads": torch.get_num_threads(),
                   "grad": torch.is_grad_enabled(), "test": os.environ.get("PYTEST_CURRENT_TEST", "")}
        try:
            self._send(target, args, kwargs, context)
            while True:
                (size,) = HEADER.unpack(self._read(HEADER.size))
                if size > MAX_MESSAGE:
                    raise EOFError
                reply = torch.load(io.BytesIO(self._read(size)), weights_only=True)
                # Linux: the worker's clean parent says a child died (grader/worker.py `_nanny`) and
                # has forked a fresh one. Died on an earlier request (after its reply): the fresh
                # one reads this request, so its reply is still to come.
                if not (isinstance(reply, dict) and "died" in reply and isinstance(reply.get("seq"), int)
                        and reply["seq"] < self.seq):
                    break
        except (EOFError, BrokenPipeError):
            rc = self._reap()
            raise WorkerDied(_died_text(rc)) from None
        except BaseException:  # the test's time limit, or a reply that is not data: this worker is done
            self._reap()
            raise
        if isinstance(reply, dict) and "died" in reply and reply.get("seq") == self.seq:
            raise WorkerDied(_died_text(reply["died"] if isinstance(reply["died"], int) else None))
        if not isinstance(reply, dict) or not isinstance(reply.get("rng"), torch.Tensor) or reply.get("seq") != self.seq:
            self._reap()
            raise WorkerDied("the process running your code sent back something that is not the worker's reply")
        torch.set_rng_state(reply["rng"])
        return reply

    def _reap(self) -> int | None:
        """Kill the worker (and close its pipes); its exit code."""
        proc, self.proc = self.proc, None
        for fd in (self.to_worker, self.from_worker):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.to_worker = self.from_worker = -1
        if proc is None:
            return None
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return proc.returncode

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _test_folders(cache: Path | None) -> list[str]:
    """Where the tests' temporary folders live (pytest's `tmp_path`) and the kata's run cache
    (`cache`, by default this process's `kata.paths.cache_dir()`): folders a probe may hand
    the learner's code to write in."""
    import getpass

    if cache is None:
        from kata.paths import cache_dir

        cache = cache_dir()
    found = [cache, Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"]
    for folder in found:  # made now: the confined worker may write in them, not create them
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
    return [str(f) for f in found if f.is_dir()]


_worker: Worker | None = None


def worker() -> Worker:
    global _worker
    if _worker is None:
        _worker = Worker(Path(os.environ.get("KATA_GRADER_ROOT") or Path.cwd()))
        atexit.register(_worker.close)
    return _worker


def _exception(raised: dict) -> BaseException:
    """The worker's exception as one the test can catch: the builtin class it derives from
    (`pytest.raises(ValueError)` still works), under the learner's class name."""
    import pytest

    message = str(raised.get("message", ""))
    kind = raised.get("kind")
    if kind == "skip":
        return pytest.skip.Exception(message, allow_module_level=False)
    if kind == "fail":
        e = pytest.fail.Exception(message, pytrace=False)
    else:
        name = str(raised.get("type", "Exception"))
        base = Exception
        for b in raised.get("bases", []):
            cls = getattr(builtins, str(b), None)
            if isinstance(cls, type) and issubclass(cls, Exception):
                base = cls
                break
        cls = base if getattr(builtins, name, None) is base else type(name, (base,), {"__module__": "learner"})
        try:
            e = cls(message)
        except Exception:  # noqa: BLE001 - a builtin whose constructor wants more (UnicodeDecodeError)
            e = type(name, (Exception,), {"__module__": "learner"})(message)
    e._kata_where = str(raised.get("where", ""))  # grader/pytest_plugin.py reports these
    e._kata_stub = bool(raised.get("stub", False))
    return e


def _threads(env: dict) -> int | None:
    try:
        return int(env.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None


def prerun(root: Path, python: str, env: dict, path: list[str], calls: tuple, out: Path, deadline: float,
           preexec=None) -> int:
    """Run the probe calls `calls` (the manifest's `prerun`: the heavy training runs) in a worker
    of their own before the step's judge starts, and write the replies to `out` (the judge
    answers those calls from it, `call_in_worker`). Nothing imports torch here, so the worker
    has the memory to itself: Gradescope's default 768 MB holds a training run or a judge
    beside a light worker, not both. Returns how many replies it wrote; a call that passes
    `deadline` gets none, one that died gets the worker's "died" reply, and the judge makes
    either live (and reports what happens)."""
    w = Worker(root, python, env=env, path=path, cache=Path(env.get("KATA_CACHE_DIR") or root / ".kata_cache"),
               preexec=preexec)
    replies = []
    try:
        for call in calls:
            reply = w.request_raw(call["probe"], tuple(call.get("args", ())), dict(call.get("kwargs", {})),
                                  call.get("test", ""), deadline)
            if reply is not None:
                replies.append((call["probe"], list(call.get("args", ())), dict(call.get("kwargs", {})), reply))
    finally:
        w.close()
    out.write_bytes(pickle.dumps(replies, protocol=pickle.HIGHEST_PROTOCOL))
    return len(replies)


_prerun_replies: list | None = None


def _answered_before(target: str, args: tuple, kwargs: dict) -> dict | None:
    """The reply the runner's `prerun` got for this call, used once; None if there is none."""
    global _prerun_replies
    if _prerun_replies is None:
        path = os.environ.get(PRERUN_ENV)
        try:
            _prerun_replies = pickle.loads(Path(path).read_bytes()) if path else []
        except (OSError, pickle.UnpicklingError, EOFError):
            _prerun_replies = []
    for i, (t, a, k, raw) in enumerate(_prerun_replies):
        if t == target and a == list(args) and k == kwargs:
            del _prerun_replies[i]
            import torch

            try:
                reply = torch.load(io.BytesIO(raw), weights_only=True)
            except Exception:  # noqa: BLE001 - not the worker's reply: ask again, live
                return None
            if not isinstance(reply, dict) or not isinstance(reply.get("rng"), torch.Tensor):
                return None  # it died there (a "died" message): ask again, live, and report what happens
            torch.set_rng_state(reply["rng"])
            return reply
    return None


def call_in_worker(target: str, args: tuple, kwargs: dict) -> object:
    """The probe's result, or its exception raised here (see `_exception`)."""
    reply = _answered_before(target, args, kwargs) or worker().request(target, args, kwargs)
    if "raised" in reply:
        raise _exception(reply["raised"] if isinstance(reply["raised"], dict) else {})
    return reply.get("value")
