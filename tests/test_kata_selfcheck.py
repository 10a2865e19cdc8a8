"""The kata proves its own tests: the reference passes, the stubs fail, mutants are caught.

To stay within a CI budget on 2 cores this runs `tests/mutants/run.py --subset
--no-baseline --mode live`: the first mutant listed for each step. The rest of the
baseline is proved where learners grade: the reference scores full marks and the stubs
score zero through the Gradescope autograder (tests/test_platform_autograder.py), and the
rest of the suite runs the reference live. `nox -s mutants` runs the whole check: every
mutant and every alternative, live and on the handout's stored answers.
"""
from __future__ import annotations

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
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mutants" / "run.py"), "--subset", "--no-baseline", "--jobs", "2",
         "--mode", "live"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the kata's self-check failed (python tests/mutants/run.py --subset --no-baseline --mode live):\n{out[-6000:]}"
