"""The class report: per step, learners passing, the most frequent first failure, median hints."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from grader import class_report

pytestmark = pytest.mark.infra


def _results(folder: Path, name: str, steps: dict[str, tuple[str, str]], hints: dict[str, int]) -> None:
    data = {"score": 0, "max_score": 0, "tests": [], "extra_data": {
        "steps": {sid: {"status": st, "first_failure": ff} for sid, (st, ff) in steps.items()}, "hints_used": hints}}
    (folder / name).mkdir(parents=True)
    (folder / name / "results.json").write_text(json.dumps(data))


def test_class_report_counts_passes_first_failures_and_median_hints(tmp_path):
    sub = tmp_path / "results"
    _results(sub, "ada", {"step1": ("passed", ""), "step2": ("failed", "test_step2_scores_match_reference")}, {"step2": 3})
    _results(sub, "bo", {"step1": ("passed", ""), "step2": ("failed", "test_step2_scores_match_reference")}, {"step2": 1})
    _results(sub, "cy", {"step1": ("failed", "test_step1_tie_weights"), "step2": ("not started", "")}, {"step1": 2})
    # A plain `nox -s check -- --json` file has no extra_data: read from its per-test rows.
    plain = {"score": 10, "max_score": 20, "tests": [
        {"name": "step 1: x · test_a", "number": "step1", "score": 5, "max_score": 5, "output": "passed"},
        {"name": "step 1: x · test_b", "number": "step1", "score": 5, "max_score": 5, "output": "passed"},
        {"name": "step 2: y · test_step2_softmax", "number": "step2", "score": 0, "max_score": 5, "output": "AssertionError"},
        {"name": "step 2: y · test_c", "number": "step2", "score": 0, "max_score": 5, "output": "AssertionError"}]}
    (sub / "dee.json").write_text(json.dumps(plain))
    (sub / "notes.json").write_text("[1, 2]")  # not a results file: ignored

    out = tmp_path / "report"
    assert class_report.main([str(sub), "--out", str(out)]) == 0
    rows = {r["step"]: r for r in csv.DictReader(open(out / "class-report.csv"))}
    assert set(rows) == {"step1", "step2"}
    assert (rows["step1"]["learners"], rows["step1"]["passed"]) == ("4", "3")
    assert rows["step1"]["most_frequent_first_failure"] == "test_step1_tie_weights"
    assert (rows["step2"]["passed"], rows["step2"]["not_started"]) == ("0", "1")
    assert rows["step2"]["most_frequent_first_failure"] == "test_step2_scores_match_reference"
    assert rows["step2"]["learners_failing_there"] == "2"
    assert float(rows["step2"]["median_hints"]) == 0.5  # 3, 1, 0, 0
    assert float(rows["step1"]["median_hints"]) == 0
    assert (out / "class-report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_report_without_results_says_so(tmp_path, capsys):
    assert class_report.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "no results.json" in capsys.readouterr().err


def test_class_report_grades_each_submission_folder_or_zip_first(tmp_path, monkeypatch):
    """`--grade`: each folder (or lone zip) is one submission, graded by the autograder
    (replaced here by a stand-in that records what it was given)."""
    from grader import autograder

    seen = []

    def fake_grade(submission, target, **kw):
        files = sorted(p.name for p in submission.rglob("*") if p.is_file())
        seen.append((files, kw))
        target.parent.mkdir(parents=True, exist_ok=True)
        passed = "step1_embeddings.py" in files
        target.write_text(json.dumps({"tests": [], "extra_data": {
            "steps": {"step1": {"status": "passed" if passed else "not started", "first_failure": ""}}, "hints_used": {}}}))
        return {}

    monkeypatch.setattr(autograder, "grade_submission", fake_grade)
    subs = tmp_path / "submissions"
    (subs / "ada" / "exercises").mkdir(parents=True)
    (subs / "ada" / "exercises" / "step1_embeddings.py").write_text("x = 1\n")
    (subs / "bo").mkdir()
    (subs / "cy.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip
    out = tmp_path / "out"
    assert class_report.main(["--grade", str(subs), "--steps", "step1", "--out", str(out)]) == 0
    assert [files for files, _ in seen] == [["step1_embeddings.py"], [], ["cy.zip"]]
    assert all(kw == {"only": ["step1"]} for _, kw in seen)
    rows = {r["step"]: r for r in csv.DictReader(open(out / "class-report.csv"))}
    assert (rows["step1"]["learners"], rows["step1"]["passed"], rows["step1"]["not_started"]) == ("3", "1", "2")
