"""How long grading takes where learners and courses grade: `python -m benchmarks.grading`.

1. A CPU yardstick (a fixed single-thread matmul workload), so figures from different or
   busier machines compare as ratios.
2. A learner handout is built and the reference copied into its `exercises/`; its own
   grader grades it cold (`python -m grader --no-cache`, empty caches: what a learner who
   finished waits), then again with nothing changed (warm).
3. `--gradescope`: the Gradescope autograder (`run_autograder`, built as `nox -s autograder`
   builds it) grades the same files as a submission.
4. `--gradescope-default`: the same inside a cgroup with Gradescope's default autograder
   settings, half a vCPU and 768 MB (needs a writable cgroup v1 or v2; root).

Every figure is appended as one JSON object a line to `--out`
(`benchmarks/results/grading-<machine>.jsonl`), with the machine's load average, and printed
as a table. The README's grading-time table comes from these rows.

    python -m benchmarks.grading                       # cold + warm check
    python -m benchmarks.grading --gradescope --gradescope-default
    python -m benchmarks.grading --separated           # also a cold `--separate` check (issue 21's cost)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kata.machine import usable_cpus
from kata.paths import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results"
ENV_DROP = ("KATA_", "PYTEST_", "HYPOTHESIS_")
YARDSTICK = """
import time, torch
torch.set_num_threads(1)
a = torch.randn(384, 384, generator=torch.Generator().manual_seed(0))
for _ in range(20):
    a @ a
t = time.perf_counter()
for _ in range(400):
    a @ a
print(time.perf_counter() - t)
"""
GRADESCOPE_CPU, GRADESCOPE_MEMORY = 0.5, 768 * 2**20  # Gradescope's default autograder settings


def yardstick() -> float:
    """Seconds for a fixed single-thread matmul workload (~3.6 GFLOP): the machine's speed."""
    out = subprocess.run([sys.executable, "-c", YARDSTICK], capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip()), 3)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_DROP)}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def solved_handout(dest: Path) -> Path:
    """A learner handout with the reference's step and bonus files in its exercises/."""
    from grader.handout import build

    build(REPO_ROOT, dest, make_zip=False)
    for f in sorted((REPO_ROOT / "reference").glob("*.py")):
        if f.name != "__init__.py":
            shutil.copyfile(f, dest / "exercises" / f.name)
    return dest


def steps_of(results: dict) -> dict[str, dict]:
    """Per step {status, seconds, score}: the grader's and the autograder's results.json both carry them."""
    return {k: {"status": v.get("status"), "seconds": v.get("seconds"), "score": v.get("score")}
            for k, v in results.get("extra_data", {}).get("steps", {}).items()}


def check(handout: Path, json_path: Path, *, cold: bool, separate: bool = False) -> dict:
    """`python -m grader` in the handout, as `nox -s check` runs it; wall seconds and per-step results.
    Cold is the first check of a fresh handout (nothing cached); warm is the same again.
    `separate`: `--separate`, as the Classroom workflow grades (the learner's code in a worker)."""
    cmd = [sys.executable, "-m", "grader", "--json", str(json_path)] + (["--separate"] if separate else [])
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=handout, env=clean_env(), capture_output=True, text=True)
    wall = time.monotonic() - t0
    data = json.loads(json_path.read_text()) if json_path.exists() else {}
    what = "check --separate, cold (as Classroom grades)" if separate else f"check, {'cold' if cold else 'warm (nothing changed)'}"
    return {"what": what, "wall_s": round(wall, 1),
            "rc": p.returncode, "score": data.get("score"), "max_score": data.get("max_score"),
            "steps": steps_of(data), "tail": (p.stdout + p.stderr)[-1500:] if p.returncode else ""}


class Cgroup:
    """A cgroup (v1 cpu + memory, or v2) with a CPU quota and a memory limit, or a reason it cannot be made."""

    def __init__(self, name: str, cpus: float, memory: int) -> None:
        self.dirs: list[Path] = []
        self.why = ""
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        try:
            if v2.exists():
                d = Path("/sys/fs/cgroup") / name
                d.mkdir(exist_ok=True)
                (d / "cpu.max").write_text(f"{int(cpus * 100000)} 100000")
                (d / "memory.max").write_text(str(memory))
                self.dirs = [d]
            else:
                cpu, mem = Path("/sys/fs/cgroup/cpu") / name, Path("/sys/fs/cgroup/memory") / name
                cpu.mkdir(exist_ok=True)
                mem.mkdir(exist_ok=True)
                (cpu / "cpu.cfs_period_us").write_text("100000")
                (cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * 100000)))
                (mem / "memory.limit_in_bytes").write_text(str(memory))
                (mem / "memory.max_usage_in_bytes").write_text("0")
                self.dirs = [cpu, mem]
        except OSError as e:
            self.why = f"no writable cgroup here ({e})"

    def enter(self) -> None:  # runs in the child between fork and exec
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def peak_memory(self) -> int | None:
        for d in self.dirs:
            for name in ("memory.max_usage_in_bytes", "memory.peak"):
                if (d / name).exists():
                    return int((d / name).read_text())
        return None

    def oom_kills(self) -> int | None:
        for d in self.dirs:
            for name, key in (("memory.oom_control", "oom_kill"), ("memory.events", "oom_kill")):
                try:
                    for line in (d / name).read_text().splitlines():
                        if line.startswith(key + " "):
                            return int(line.split()[1])
                except OSError:
                    continue
        return None


def autograder(handout_exercises: Path, tmp: Path, cgroup: Cgroup | None = None) -> dict:
    """run_autograder on the reference as a submission, in a simulated /autograder root."""
    from grader.autograder import build_zip, unpack_zip

    root = tmp / ("autograder-limited" if cgroup else "autograder")
    unpack_zip(build_zip(REPO_ROOT, tmp / "autograder.zip"), root / "source")
    (root / "results").mkdir(parents=True)
    shutil.copytree(handout_exercises, root / "submission" / "exercises")
    env = clean_env(AUTOGRADER_ROOT=str(root), KATA_PYTHON=sys.executable)
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True,
                       text=True, preexec_fn=cgroup.enter if cgroup else None)
    wall = time.monotonic() - t0
    results = root / "results" / "results.json"
    data = json.loads(results.read_text()) if results.exists() else {}
    row = {"what": "gradescope run_autograder" + (" in 0.5 vCPU / 768 MB" if cgroup else ""), "wall_s": round(wall, 1),
           "rc": p.returncode, "score": data.get("score"), "max_score": data.get("max_score"),
           "steps": steps_of(data), "tail": (p.stdout + p.stderr)[-1500:] if p.returncode else ""}
    if cgroup:
        row.update(peak_memory_mb=round((cgroup.peak_memory() or 0) / 2**20), oom_kills=cgroup.oom_kills())
    return row


def table(rows: list[dict]) -> str:
    out = ["| run | wall (s) | score | per step (s) |", "|---|---:|---|---|"]
    for r in rows:
        steps = ", ".join(f"{k} {v['seconds']}" for k, v in r.get("steps", {}).items() if v.get("seconds"))
        score = f"{r.get('score')}/{r.get('max_score')}" if r.get("max_score") is not None else "—"
        out.append(f"| {r['what']} | {r['wall_s']} | {score} | {steps} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gradescope", action="store_true", help="also run_autograder on the reference submission")
    p.add_argument("--gradescope-default", action="store_true",
                   help="also run_autograder in a cgroup with Gradescope's defaults (0.5 vCPU, 768 MB)")
    p.add_argument("--no-check", action="store_true", help="skip the handout's cold and warm check")
    p.add_argument("--separated", action="store_true",
                   help="also a cold `--separate` check of a fresh copy (the cost of separated grading)")
    p.add_argument("--out", type=Path, default=RESULTS / f"grading-{platform.node() or 'machine'}.jsonl")
    args = p.parse_args(argv)
    base = {"machine": platform.node(), "processor": platform.processor() or platform.machine(),
            "usable_cpus": usable_cpus(), "yardstick_s": yardstick(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                     text=True).stdout.strip()}
    rows: list[dict] = []

    def record(row: dict) -> None:
        row = {**base, **row, "load_1min": round(os.getloadavg()[0], 2)}
        rows.append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{row['what']}: {row['wall_s']} s, score {row.get('score')}/{row.get('max_score')}, rc {row['rc']}"
              + (f"\n{row['tail']}" if row.get("tail") else ""), flush=True)

    with tempfile.TemporaryDirectory(prefix="kata-grading-bench-") as tmp_s:
        tmp = Path(tmp_s)
        handout = solved_handout(tmp / "handout")
        if args.separated:  # copied before anything is cached in the first one
            pristine = shutil.copytree(handout, tmp / "handout-separated")
        if not args.no_check:
            record(check(handout, tmp / "cold.json", cold=True))
            record(check(handout, tmp / "warm.json", cold=False))
        if args.separated:
            record(check(pristine, tmp / "separated.json", cold=True, separate=True))
        if args.gradescope:
            record(autograder(handout / "exercises", tmp))
        if args.gradescope_default:
            group = Cgroup(f"kata-bench-{os.getpid()}", GRADESCOPE_CPU, GRADESCOPE_MEMORY)
            if group.why:
                print(f"--gradescope-default: {group.why}", flush=True)
            else:
                record(autograder(handout / "exercises", tmp, group))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
