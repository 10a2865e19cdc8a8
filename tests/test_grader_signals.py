"""A signal to the grader stops the steps' test processes too.

Each step's pytest runs in a process group of its own (so a learner's runaway code can be
killed whole), which also means Ctrl-C, SIGTERM or a closed terminal never reach it: the
grader has to kill it, or it goes on (step 8 trains for minutes) orphaned.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_grader import make_fake_kata

pytestmark = [pytest.mark.infra,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; process groups are POSIX")]

# The step's test writes its pid, then sleeps far longer than the test waits.
SLEEPER = '''import os
import time


def f():
    with open({marker!r} + ".part", "w") as out:
        out.write(str(os.getpid()))
    os.replace({marker!r} + ".part", {marker!r})  # whole or absent: never half a pid
    time.sleep(300)
'''
START_TIMEOUT = 60.0  # a loaded 2-core machine can take many seconds to start two pytests
EXIT_TIMEOUT = 20.0


def _wait_for(what: str, done, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            proc.kill()
            out = proc.communicate()[0]
            pytest.fail(f"expected {what} within {timeout:.0f} s; it did not happen. grader output:\n{out}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has stopped running: only its exit status is left


def _default_dispositions() -> None:  # in the grader's process, before exec
    # A background job's shell may have set SIGINT to ignored; the grader keeps ignored signals ignored.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["term", "int", "hup"])
def test_a_signal_to_the_grader_kills_every_running_step_process(tmp_path, sig):
    markers = {sid: tmp_path / f"{sid}.pid" for sid in ("step1", "step2")}
    root = make_fake_kata(tmp_path / "kata", {sid: (SLEEPER.format(marker=str(m)), "") for sid, m in markers.items()})
    grader = subprocess.Popen([sys.executable, "-m", "grader", "--solution", "exercises", "--no-cache", "--jobs", "2",
                               "--root", str(root)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, preexec_fn=_default_dispositions, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        _wait_for("both steps' tests to start", lambda: all(m.exists() for m in markers.values()), START_TIMEOUT, grader)
        pids = {sid: int(m.read_text()) for sid, m in markers.items()}
        assert all(_alive(p) for p in pids.values()), f"the steps' test processes should be running: {pids}"
        grader.send_signal(sig)
        try:
            out = grader.communicate(timeout=EXIT_TIMEOUT)[0]
        except subprocess.TimeoutExpired:
            grader.kill()
            pytest.fail(f"expected the grader to exit within {EXIT_TIMEOUT:.0f} s of {sig.name}; it still ran "
                        f"(look at grader.runner._on_signal). output:\n{grader.communicate()[0]}")
        _wait_for("the steps' test processes to be gone", lambda: not any(_alive(p) for p in pids.values()),
                  EXIT_TIMEOUT, grader)
    finally:
        if grader.poll() is None:
            grader.kill()
            grader.wait()
        for m in markers.values():  # never leave a sleeper behind, whatever failed
            if m.exists() and _alive(int(m.read_text())):
                os.killpg(int(m.read_text()), signal.SIGKILL)
    assert grader.returncode == 128 + sig, \
        f"expected exit status {128 + sig} (128 + {sig.name}), got {grader.returncode}; output:\n{out}"
    assert "Traceback" not in out, f"expected no traceback after {sig.name}; output:\n{out}"
    left = [p.name for p in tmp_path.glob("kata-grade-*")]
    assert not left, f"expected the grader to remove its step folders on the way out; left: {left}"
    if sig == signal.SIGINT:
        assert "interrupted" in out, f"expected an 'interrupted' line after Ctrl-C; output:\n{out}"
