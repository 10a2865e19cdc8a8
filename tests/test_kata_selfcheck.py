"""The kata proves its own tests: the reference passes, the stubs fail, mutants are caught.

To stay within a CI budget on 2 cores this runs `tests/mutants/run.py --subset
--no-baseline --mode live` with `KATA_SEPARATE=1`: the first mutant listed for each step,
graded separated as courses grade. The rest of the
baseline is proved where learners grade: the reference scores full marks and the stubs
score zero through the Gradescope autograder (tests/test_platform_autograder.py), and the
rest of the suite runs the reference live. `nox -s mutants` runs the whole check: every
mutant and every alternative, live and on the handout's stored answers.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.infra
@pytest.mark.slow
@pytest.mark.needs_reference  # mutants are made from reference/
@pytest.mark.timeout(1800)
def test_one_mutant_per_step_is_caught():
    if not (ROOT / "reference").is_dir():
        pytest.skip("the reference solution is not in this checkout (learner handout)")
    # Separated, as courses grade: the mutant's code runs in the worker (the rest of the suite
    # runs the reference in-process, so this is where CI sees the worker load a solution).
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mutants" / "run.py"), "--subset", "--no-baseline", "--jobs", "2",
         "--mode", "live"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, env={**os.environ, "KATA_SEPARATE": "1"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, ("the kata's self-check failed (KATA_SEPARATE=1 python tests/mutants/run.py --subset "
                                  f"--no-baseline --mode live):\n{out[-6000:]}")


@pytest.mark.infra
def test_a_separated_steps_tests_reach_the_learners_code_only_through_probes():
    """`separate = true` promises that the step's tests never touch the learner's code in the
    judge: no `student(...)` call in its test files or the judge-side helpers they import
    (only tests/_probes_*.py, which run in the worker, and _support.py, which defines it)."""
    import ast

    from grader.manifest import load_manifest
    from grader.runner import step_test_files

    def calls_student(path: Path) -> list[int]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
                and ((isinstance(n.func, ast.Name) and n.func.id == "student")
                     or (isinstance(n.func, ast.Attribute) and n.func.attr == "student"))]

    separated = [s for s in load_manifest() if s.separate]
    assert separated, "no step is graded separated"
    files = {f for s in separated for f in step_test_files(ROOT, s)}
    files |= {f for f in (ROOT / "tests").glob("_*.py") if not f.name.startswith(("_probes_", "_support"))}
    found = {str(f.relative_to(ROOT)): lines for f in sorted(files) if (lines := calls_student(f))}
    assert not found, f"student(...) called outside the probes (move the call into tests/_probes_<step>.py): {found}"
