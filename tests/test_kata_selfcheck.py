"""The kata proves its own tests: the reference passes, the stubs fail, mutants are caught.

To stay within a CI budget on 2 cores this runs `tests/mutants/run.py --subset
--skip-reference`: the stubs of every step, and the first mutant listed for each step
(the rest of the suite, run with `--solution reference`, is the reference half of the
baseline). `nox -s mutants` runs the whole check: reference and every mutant.
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
def test_stubs_fail_and_one_mutant_per_step_is_caught():
    if not (ROOT / "reference").is_dir():
        pytest.skip("the reference solution is not in this checkout (learner handout)")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mutants" / "run.py"), "--subset", "--skip-reference", "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the kata's self-check failed (python tests/mutants/run.py --subset --skip-reference):\n{out[-6000:]}"
