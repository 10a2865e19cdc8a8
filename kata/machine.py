"""What this machine lets the kata use: CPUs (affinity and container quotas) and memory.

`os.cpu_count()` counts the host's CPUs; a container (Gradescope's autograder, a CI
runner, `docker --cpus 0.5`) may grant far less through a CFS quota, and a job pinned
with `taskset` sees fewer. Grading asks here how many steps to run at once and how many
threads each may use, so two steps never fight over one core.
"""
from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_cpu_quota() -> float | None:
    """CPUs granted by a cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), or None."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for base in _v1_dirs("cpu"):
        try:
            quota = int((base / "cpu.cfs_quota_us").read_text())
            period = int((base / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            return quota / period
    return None


def _v1_dirs(controller: str) -> list[Path]:
    """This process's cgroup v1 folders for `controller`, innermost first."""
    root = Path("/sys/fs/cgroup") / controller
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and controller in parts[1].split(","):
            rel = parts[2].lstrip("/")
            return [root / rel, root] if rel else [root]
    return []


def usable_cpus() -> float:
    """CPUs this process may use: its affinity mask, capped by a cgroup quota (may be < 1)."""
    try:
        n: float = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return min(n, quota) if quota else n


def default_jobs(cap: int = 2) -> int:
    """Steps to grade at once: one per whole usable CPU, at least 1, at most `cap`."""
    return max(1, min(cap, math.floor(usable_cpus())))


def threads_per_job(jobs: int) -> int:
    """Threads for each of `jobs` step processes running side by side: the usable CPUs shared out."""
    return max(1, math.floor(usable_cpus() / max(1, jobs)))


def memory_limit() -> int | None:
    """Bytes of memory a cgroup grants this process (v2 `memory.max`, v1), or None for no limit."""
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text != "max":
            return int(text)
    except (OSError, ValueError):
        pass
    for base in _v1_dirs("memory"):
        try:
            value = int((base / "memory.limit_in_bytes").read_text())
        except (OSError, ValueError):
            continue
        if value < 2**60:  # v1 says "no limit" with a huge number
            return value
    return None


# glibc hands every allocation above ~32 MB straight from the kernel (mmap) and gives it
# back on free, so a training step's (B, T, 50257) logits, gradients and softmax buffers
# are fresh, zero-filled pages every step: a third of step 8's CPU time went to page faults
# (measured: 16.6 of 40.4 CPU-seconds in the kernel). Keeping them on the heap removes
# that cost, bit for bit the same numbers, at the price of ~100-200 MB more resident memory;
# so only where memory is not tight.
FAST_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**32)}
FAST_MALLOC_MIN_MEMORY = 2 * 2**30


# Where memory is tight, the opposite: glibc gives the top of the heap back to the kernel at
# every free instead of keeping up to 128 KB+ of it (growing with use), which a process that
# builds and drops models test after test otherwise holds. Measured on step 7's Trainer run
# in its pytest process: peak RSS 725 MB instead of 914 MB, for ~10% more CPU.
LEAN_MALLOC = {"MALLOC_TRIM_THRESHOLD_": "0"}


def fast_malloc_env() -> dict[str, str]:
    """The environment that keeps large tensors on the heap, or, where memory is tight (a
    cgroup limit under 2 GiB, e.g. Gradescope's default 768 MB), one that returns freed
    memory at once."""
    limit = memory_limit()
    return dict(LEAN_MALLOC) if limit is not None and limit < FAST_MALLOC_MIN_MEMORY else dict(FAST_MALLOC)
