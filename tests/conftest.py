"""Test set-up shared by every step: whose code runs, hypothesis profiles, step markers."""
from __future__ import annotations

import os
import re

# Never let a test wait on the network: the kata works offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

# `ci`: derandomized so the same code always gets the same grade; bounded examples
# keep each step to seconds on 2 cores; no deadline, since a loaded CI machine's
# timing jitter must never fail a correct solution.
# No `explain` phase: it re-runs a failing test hundreds of times to annotate the
# example, which turns a stub's instant failure into ~10 s per test.
settings.register_profile(
    "ci", derandomize=True, max_examples=20, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
    phases=[p for p in Phase if p is not Phase.explain],
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# `--solution` is registered in the repository's root conftest.py: pytest reads
# command-line options only from conftest files it loads before parsing arguments.


_STEP_FILE = re.compile(r"test_(step\d+|bonus\d+)_")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in `test_stepN_*.py` with `stepN`, so `-m stepN` works too.

    In the learner handout (no reference/), tests marked `needs_reference` are skipped.
    """
    from _support import reference_available

    no_reference = not reference_available()
    for item in items:
        m = _STEP_FILE.match(item.path.name)
        if m:
            item.add_marker(getattr(pytest.mark, m.group(1)))
        if no_reference and item.get_closest_marker("needs_reference"):
            item.add_marker(pytest.mark.skip(reason="needs the reference solution, which the learner handout does not ship"))


def pytest_report_header(config: pytest.Config) -> str:
    from kata.solution import solution_name

    return f"tinygpt-kata: testing the {solution_name()!r} solution"
