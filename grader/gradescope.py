"""Gradescope's `results.json`: one entry per test, so a course platform can ingest the grade.

Shape (https://gradescope-autograders.readthedocs.io/en/latest/specs/):
    {"score": float, "max_score": float, "output": str, "visibility": "visible",
     "stdout_visibility": "visible",
     "tests": [{"name": str, "score": float, "max_score": float, "output": str,
                "visibility": "visible", "number": str}, ...]}
A step's points are split evenly over its graded tests. Bonus steps add to `score`
(extra credit) but not to `max_score`; a GPU-only step on a CPU machine has max 0.
"""
from __future__ import annotations

import json
from pathlib import Path

from .report import totals
from .runner import NEEDS_GPU, NO_TESTS, NOT_STARTED, PASSED, WAITING, StepResult


def results_json(results: list[StepResult], solution: str) -> dict:
    tests: list[dict] = []
    for r in results:
        s = r.step
        label = f"step {s.number}: {s.title}"
        if r.status in (WAITING, NEEDS_GPU, NO_TESTS) or not r.total:
            top = 0.0 if r.status == NEEDS_GPU or s.bonus else s.points
            tests.append({"name": label, "number": s.id, "score": 0.0, "max_score": top,
                          "output": r.note or r.status, "visibility": "visible"})
            continue
        each = s.points / r.total
        for t in r.graded:
            ok = t.outcome == PASSED and r.status != NOT_STARTED  # a step not started scores 0
            tests.append({
                "name": f"{label} · {t.name}", "number": s.id,
                "score": round(each if ok else 0.0, 4),
                "max_score": 0.0 if s.bonus else round(each, 4),
                "output": "passed" if ok else (t.message + (f"\n(at {t.where})" if t.where else "")
                                               + f"\nhint: {s.hint}"),
                "visibility": "visible",
            })
    score, top, bscore, btop = totals(results)
    done = sum(r.status == PASSED for r in results if r.counts_toward_max)
    return {
        "score": round(score + bscore, 2),
        "max_score": round(top, 2),
        "output": f"tinygpt-kata, {solution}/: {done} of {sum(r.counts_toward_max for r in results)} steps pass"
                  + (f"; bonus {bscore:g}/{btop:g}" if btop else ""),
        "visibility": "visible",
        "stdout_visibility": "visible",
        "tests": tests,
    }


def write(results: list[StepResult], solution: str, path: Path | str) -> dict:
    data = results_json(results, solution)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data
