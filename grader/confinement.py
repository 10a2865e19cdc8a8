"""Keeping the learner's processes away from the verdict on the course paths (trusted side).

Separated grading (grader/judge.py) keeps the learner's code out of the process that
decides; this module keeps the learner's *processes* away from what is decided:

- `become_subreaper`: on Linux the grading process adopts every process its steps leave
  behind (a learner's code can double-fork and detach), so `end_learner_processes` finds
  and kills them all before the final results are written — none is left to rewrite
  results.json after the grader returns.
- `worker_user_env`: where the grader runs as root (Gradescope runs `run_autograder` as
  root) and the platform's setup created the unprivileged user `kata-worker`
  (platforms/gradescope/setup.sh), the worker runs as that user: the graded tree is made
  readable to it except the stored answers (`tests/_snapshots`, root only), it gets a
  scratch folder of its own, and it can neither write the results nor signal or inspect
  the judge. `end_learner_processes` then also kills every process of that user.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

WORKER_USER = "kata-worker"
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux); True when it worked."""
    if sys.platform != "linux":
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, real uid) of every process visible in /proc."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        try:
            found.append((int(entry.name), int(fields["PPid"].split()[0]), int(fields["Uid"].split()[0])))
        except (KeyError, ValueError, IndexError):
            continue
    return found


def end_learner_processes(user: str | None = None, rounds: int = 50) -> int:
    """Kill every descendant of this process and (as root) every process of `user`; reap
    them. Repeated until none is left (a process may fork while it is being killed).
    Returns how many were killed."""
    if not Path("/proc").is_dir():
        return 0
    uid = None
    if user and os.geteuid() == 0:
        try:
            import pwd

            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            uid = None
    me, killed = os.getpid(), 0
    for _ in range(rounds):
        procs = _processes()
        mine = {me}
        grew = True
        while grew:  # descendants: children of us, of our children, ...
            grew = False
            for pid, ppid, _ in procs:
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    grew = True
        targets = {pid for pid in mine if pid != me} | {pid for pid, _, u in procs if uid is not None and u == uid}
        if not targets:
            return killed
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # reap the adopted ones, so they do not linger as zombies
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.02)
    return killed


def worker_user_env(tree: Path, scratch: Path, user: str = WORKER_USER) -> dict[str, str]:
    """As root, with `user` present: make `tree` readable to it (the stored answers excepted),
    give it a scratch folder, and return the environment that makes the judge start its
    workers as that user. Elsewhere: {} (the worker runs as the grader's own user)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return {}
    try:
        import pwd

        entry = pwd.getpwnam(user)
    except KeyError:
        return {}
    import subprocess

    try:  # the interpreter must be reachable for that user (a Python under /root is not)
        subprocess.run([sys.executable, "-c", "import torch"], user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
                       cwd="/", check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"grader: the learner's code runs as root, not as {user}: {user} cannot run {sys.executable} "
              f"({type(e).__name__})", file=sys.stderr)
        return {}
    for folder in [tree, *tree.parents]:  # the worker must be able to walk down to the tree
        try:
            folder.chmod(folder.stat().st_mode | 0o111)
        except OSError:
            pass
    for dirpath, dirnames, filenames in os.walk(tree):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o644 if not os.access(p, os.X_OK) else 0o755)
    answers = tree / "tests" / "_snapshots"
    if answers.is_dir():
        answers.chmod(0o700)  # the official answers: the judge (root) reads them, the worker cannot
    home = scratch / "worker-home"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    home.chmod(0o700)
    return {"KATA_WORKER_USER": user, "KATA_WORKER_TMP": str(home)}


# --------------------------------------------------------------------------- Landlock

# Linux Landlock (no root needed): the worker restricts itself, and every process it
# starts, before any learner code runs. It may read everything but the stored answers
# (and reference/ when that is not the graded solution), write only its scratch folders,
# open no TCP connection, and (ABI >= 6) signal no process outside itself.
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FILE_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_TRUNCATE, _IOCTL_DEV = 1 << 14, 1 << 15
_READ = _EXECUTE | _READ_FILE | _READ_DIR


def _fs_rights(abi: int) -> int:
    return _FILE_RIGHTS_BY_ABI[max(k for k in _FILE_RIGHTS_BY_ABI if k <= abi)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where there is none (not Linux, disabled, seccomp)."""
    if sys.platform != "linux":
        return 0
    try:
        import ctypes

        v = ctypes.CDLL(None, use_errno=True).syscall(_SYS_CREATE, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
        return max(0, int(v))
    except (OSError, AttributeError):
        return 0


def confine(tree: Path, *, hidden: list[Path], writable: list[Path]) -> str:
    """Restrict this process with Landlock: read anything except `hidden`, write only under
    `writable` (and /dev), no TCP, no signals out (ABI >= 6). Returns "" when confined,
    else why not (no Landlock here): the caller goes on unconfined and says so."""
    abi = landlock_abi()
    if abi < 1:
        return "this kernel offers no Landlock"
    import ctypes
    import stat as st

    libc = ctypes.CDLL(None, use_errno=True)
    fs_all = _fs_rights(abi)
    file_only = _EXECUTE | _WRITE_FILE | _READ_FILE | (_TRUNCATE if abi >= 3 else 0) | (_IOCTL_DEV if abi >= 5 else 0)

    class Attr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class Beneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    attr = Attr(fs_all, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)  # TCP bind+connect; abstract sockets+signals
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = libc.syscall(_SYS_CREATE, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        return f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}"

    def allow(path: Path, rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            is_dir = st.S_ISDIR(os.fstat(fd).st_mode)
            rule = Beneath(rights & (fs_all if is_dir else file_only), fd)
            libc.syscall(_SYS_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0)  # LANDLOCK_RULE_PATH_BENEATH
        finally:
            os.close(fd)

    hidden_real = {os.path.realpath(h) for h in hidden}

    def readable_except(folder: str) -> None:
        """Read rights on everything under `folder` except the hidden paths inside it."""
        inside = [h for h in hidden_real if h.startswith(folder.rstrip("/") + "/")]
        if not inside:
            allow(Path(folder), _READ)
            return
        allow(Path(folder), _READ_DIR)  # list it (imports do), read none of its files but those below
        try:
            entries = list(os.scandir(folder))
        except OSError:  # listable only by its owner (a 0711 temporary folder): follow the hidden paths' way down
            base = folder.rstrip("/") + "/"
            for step in sorted({h[len(base):].split("/", 1)[0] for h in inside}):
                if base + step not in hidden_real:
                    readable_except(base + step)
            return
        for entry in entries:
            real = os.path.realpath(entry.path)
            if real in hidden_real or entry.path in hidden_real:
                continue
            if entry.is_dir(follow_symlinks=False):
                readable_except(entry.path)
            elif entry.is_symlink() and any(h.startswith(real.rstrip("/") + "/") for h in hidden_real):
                continue  # a link to a folder holding hidden paths: that folder is walked where it lives
            else:
                allow(Path(entry.path), _READ)

    readable_except("/")
    for w in writable:
        allow(w, fs_all)
    allow(Path("/dev"), _READ | _WRITE_FILE | (_IOCTL_DEV if abi >= 5 else 0) | (_TRUNCATE if abi >= 3 else 0))
    try:
        import ctypes as c

        if c.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            return f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(c.get_errno())}"
        if libc.syscall(_SYS_RESTRICT, ruleset, 0) != 0:
            return f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(ruleset)
    return ""
