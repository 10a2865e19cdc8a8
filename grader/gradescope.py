"""Gradescope's `results.json`: one entry per test, so a course platform can ingest the grade.

Shape (https://gradescope-autograders.readthedocs.io/en/latest/specs/):
    {"score": float, "max_score": float, "output": str, "visibility": "visible",
     "stdout_visibility": "visible",
     "extra_data": {"hints_used": {"step3": 2, ...}},
     "tests": [{"name": str, "score": float, "max_score": float, "output": str,
                "visibility": "visible", "number": str,
                "extra_data": {"step": "step3", "status": str, "hints_used": int, "hints_total": int}}, ...]}
A step's points are split evenly over its graded tests. Bonus steps add to `score`
(extra credit) but not to `max_score`; a GPU-only step on a CPU machine has max 0.
`extra_data` (the spec's free-form field) records how many of each step's hints the
learner asked for (`exercises/hints_used.json`, written by `nox -s hint`).
"""
from __future__ import annotations

import json
from pathlib import Path

from .hints import how_to_ask, load_used, seen
from .report import figure, totals
from .runner import KATA_ERROR, NEEDS_GPU, NO_TESTS, NOT_STARTED, PASSED, WAITING, StepResult


def results_json(results: list[StepResult], solution: str, root: Path | None = None) -> dict:
    used = load_used(root) if root is not None else {}
    tests: list[dict] = []
    for r in results:
        s = r.step
        label = f"step {s.number}: {s.title}"
        extra = {"step": s.id, "status": r.status, "hints_used": seen(s, used), "hints_total": len(s.hints)}
        shown = figure(r, root, solution)
        if shown:
            extra["figure"] = shown
        if r.status in (WAITING, NEEDS_GPU, NO_TESTS) or not r.total:
            top = 0.0 if r.status in (NEEDS_GPU, KATA_ERROR) or s.bonus else s.points
            tests.append({"name": label, "number": s.id, "score": 0.0, "max_score": top,
                          "output": r.note or r.status, "visibility": "visible", "extra_data": extra})
            continue
        each = s.points / r.total
        for t in r.kata_errors:  # the kata's error: shown, worth nothing either way
            tests.append({"name": f"{label} · {t.name}", "number": s.id, "score": 0.0, "max_score": 0.0,
                          "output": "not graded (the kata's error, not your code): " + t.message,
                          "visibility": "visible", "extra_data": extra})
        for t in r.graded:
            ok = t.outcome == PASSED and r.status != NOT_STARTED  # a step not started scores 0
            tests.append({
                "name": f"{label} · {t.name}", "number": s.id,
                "score": round(each if ok else 0.0, 4),
                "max_score": 0.0 if s.bonus else round(each, 4),
                "output": "passed" if ok else (t.message + (f"\n(at {t.where})" if t.where else "")
                                               + (f"\nhint: {how_to_ask(s, used)}" if s.hints else "")),
                "visibility": "visible",
                "extra_data": extra,
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
        "extra_data": {"hints_used": {r.step.id: seen(r.step, used) for r in results},
                       "steps": {r.step.id: {"status": r.status, "score": r.score, "seconds": round(r.seconds, 1),
                                             "cached": r.cached, "kata_errors": len(r.kata_errors)}
                                 for r in results}},
        "tests": tests,
    }


def write(results: list[StepResult], solution: str, path: Path | str, root: Path | None = None) -> dict:
    data = results_json(results, solution, root)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data
