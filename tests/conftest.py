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


def _no_local_constants() -> None:
    """Stop Hypothesis drawing inputs from the literals in the code under test.

    Since 6.131 Hypothesis mixes constants harvested from every loaded module outside
    site-packages (exercises/, kata/, grader/...) into its draws. The learner's own
    literals would then choose the test inputs: two correct solutions that differ in an
    unrelated number would be tested on different inputs, and in the learner handout
    (no reference/) inputs nobody recorded would have no stored reference answer.
    Inputs must depend on the tests alone. (Private API: without it, nothing to undo.)
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - other Hypothesis layouts
        return
    if hasattr(providers, "_get_local_constants") and hasattr(providers, "Constants"):
        empty = providers.Constants()
        providers._get_local_constants = lambda: empty


_no_local_constants()


def _replaying() -> bool:
    from _support import snapshot_mode

    return snapshot_mode() == "replay"


if _replaying():
    # The learner handout has no reference/: tests replay the reference's answers that
    # the grader recorded for the inputs its profile draws (grader/pytest_plugin.py: no
    # shrinking, no example database). Shrinking, or replaying an example saved by an
    # earlier run, would ask for inputs nobody recorded, so a plain `pytest` here draws
    # exactly what the grader draws.
    settings.register_profile(
        "ci", parent=settings.get_profile("ci"), database=None,
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
    )
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The grader shares the machine's CPUs out among the steps it grades side by side
# (KATA_THREADS, kata/machine.py); a plain pytest takes up to two.
def _threads() -> int:
    from kata.machine import usable_cpus

    return int(os.environ.get("KATA_THREADS") or max(1, min(2, int(usable_cpus()))))


torch.set_num_threads(_threads())


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
