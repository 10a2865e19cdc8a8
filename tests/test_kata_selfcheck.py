"""The kata proves its own tests: the reference passes, the stubs fail, mutants are caught.

This runs `tests/mutants/run.py` (see its docstring) on the baseline of every step
and on the first mutant listed for each step, to stay within a CI budget on 2
cores; `nox -s mutants` runs every mutant.
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
def test_reference_passes_stubs_fail_and_mutants_are_caught():
    if not (ROOT / "reference").is_dir():
        pytest.skip("the reference solution is not in this checkout (learner handout)")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mutants" / "run.py"), "--subset", "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the kata's self-check failed (python tests/mutants/run.py --subset):\n{out[-6000:]}"
