"""`nox -s class-report -- SUBMISSIONS`: how a whole class did, step by step.

    python -m grader.class_report results/                    # every results.json below results/
    python -m grader.class_report a.json b.json               # these results files
    python -m grader.class_report --grade submissions/        # grade each folder in submissions/ first

It reads Gradescope results.json files (those of `grader.autograder` carry each step's
status, first failing test and the hints the learner saw; plain `nox -s check -- --json`
files are read from their per-test rows) and writes `class-report.csv` and
`class-report.png` (default under dist/class-report/): per step, how many learners pass,
the most frequent first failing test, and the median number of hints used.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .manifest import MANIFEST, Step, load_manifest

ROOT = Path(__file__).resolve().parents[1]
PASSED, NOT_STARTED = "passed", "not started"


@dataclass
class Learner:
    name: str
    status: dict[str, str]  # step id -> passed | failed | not started | waiting | ...
    first_failure: dict[str, str]  # step id -> the name of the first failing test
    hints: dict[str, int]


def _from_tests(tests: list[dict]) -> tuple[dict[str, str], dict[str, str]]:
    """Status and first failure per step from plain per-test rows (no extra_data)."""
    status: dict[str, str] = {}
    first: dict[str, str] = {}
    for t in tests:
        sid = t.get("number", "")
        if not sid:
            continue
        ok = float(t.get("score", 0)) >= float(t.get("max_score", 0)) and t.get("output", "") == "passed"
        if str(t.get("output", "")).startswith("not started"):
            status[sid] = NOT_STARTED
        elif not ok:
            if status.get(sid) != NOT_STARTED:
                status[sid] = "failed"
            first.setdefault(sid, str(t.get("name", "")).split(" · ", 1)[-1])
        else:
            status.setdefault(sid, PASSED)
    return status, first


def read_results(path: Path) -> Learner | None:
    """One learner from a results.json; None when the file is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "tests" not in data:
        return None
    name = path.parent.name if path.name == "results.json" else path.stem
    extra = data.get("extra_data") or {}
    steps = extra.get("steps")
    if isinstance(steps, dict):
        status = {k: v.get("status", "") for k, v in steps.items()}
        first = {k: v.get("first_failure", "") for k, v in steps.items() if v.get("first_failure")}
    else:
        status, first = _from_tests(data["tests"])
    hints = {k: int(v) for k, v in (extra.get("hints_used") or {}).items() if isinstance(v, (int, float))}
    return Learner(name, status, first, hints)


def collect(paths: list[Path]) -> list[Learner]:
    files: list[Path] = []
    for p in paths:
        files += sorted(p.rglob("*.json")) if p.is_dir() else [p]
    learners = [x for x in (read_results(f) for f in files) if x is not None]
    return learners


def grade_folders(folder: Path, out: Path, **kw) -> list[Path]:
    """Grade each sub-folder (or .zip) of `folder` as one submission with the official tests."""
    from .autograder import grade_submission

    written = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() or p.suffix == ".zip"):
        target = out / "results" / sub.stem / "results.json"
        if sub.suffix == ".zip":  # a lone zip: give it a folder of its own
            import shutil
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                shutil.copy(sub, Path(tmp) / sub.name)
                grade_submission(Path(tmp), target, **kw)
        else:
            grade_submission(sub, target, **kw)
        written.append(target)
        print(f"graded {sub.name}", file=sys.stderr)
    return written


def summarize(learners: list[Learner], steps: list[Step]) -> list[dict]:
    """One row per step: learners, passed, not started, the most frequent first failure, median hints."""
    rows = []
    for s in steps:
        seen = [x for x in learners if s.id in x.status]
        if not seen:
            continue
        fails = Counter(x.first_failure[s.id] for x in seen if x.status[s.id] != PASSED and x.first_failure.get(s.id))
        top, count = fails.most_common(1)[0] if fails else ("", 0)
        hints = [x.hints.get(s.id, 0) for x in seen]
        rows.append({
            "step": s.id, "title": s.title, "learners": len(seen),
            "passed": sum(x.status[s.id] == PASSED for x in seen),
            "not_started": sum(x.status[s.id] == NOT_STARTED for x in seen),
            "pass_rate": round(sum(x.status[s.id] == PASSED for x in seen) / len(seen), 3),
            "most_frequent_first_failure": top, "learners_failing_there": count,
            "median_hints": statistics.median(hints) if hints else 0,
        })
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["step"])
        w.writeheader()
        w.writerows(rows)


def plot(rows: list[dict], path: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(rows), 3) + 1.2))
    labels = [r["step"] for r in rows][::-1]
    passed = [r["passed"] for r in rows][::-1]
    not_started = [r["not_started"] for r in rows][::-1]
    failed = [r["learners"] - r["passed"] - r["not_started"] for r in rows][::-1]
    ax.barh(labels, passed, color="#2a9d4b", label="pass")
    ax.barh(labels, failed, left=passed, color="#d1495b", label="fail (or waiting on a step)")
    ax.barh(labels, not_started, left=[p + f for p, f in zip(passed, failed)], color="#cccccc", label="not started")
    for y, r in enumerate(rows[::-1]):
        ax.text(r["learners"] + 0.02 * n, y, f"hints {r['median_hints']:g}", va="center", fontsize=8)
    ax.set_xlim(0, n * 1.18)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel(f"learners (of {n})")
    ax.set_title("tinygpt-kata: learners per step (median hints used on the right)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader.class_report", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("paths", nargs="+", type=Path, help="results.json files or folders holding them")
    p.add_argument("--grade", action="store_true", help="the folders hold submissions: grade each one first")
    p.add_argument("--steps", default="", help="with --grade: comma-separated step ids to grade")
    p.add_argument("--out", type=Path, default=ROOT / "dist" / "class-report", help="folder for the CSV and PNG")
    a = p.parse_args(argv)
    paths = a.paths
    if a.grade:
        only = a.steps.split(",") if a.steps else None
        paths = [f for folder in a.paths for f in grade_folders(folder, a.out, only=only)]
    learners = collect(paths)
    if not learners:
        print("no results.json found in " + ", ".join(map(str, a.paths)), file=sys.stderr)
        return 1
    rows = summarize(learners, load_manifest(MANIFEST))
    write_csv(rows, a.out / "class-report.csv")
    plot(rows, a.out / "class-report.png", len(learners))
    width = max(len(r["step"]) for r in rows)
    print(f"{len(learners)} learner(s)")
    for r in rows:
        print(f"  {r['step']:<{width}}  {r['passed']:>3}/{r['learners']:<3} pass  median hints {r['median_hints']:<4g}"
              f"  first failure: {r['most_frequent_first_failure'] or '-'}")
    print(f"wrote {a.out / 'class-report.csv'} and {a.out / 'class-report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
