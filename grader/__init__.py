"""The kata's grader: runs each step's tests in its own process and reports a grade.

`python -m grader` (or `nox -s check`) grades `exercises/`; the steps, their order,
points and hints come from `grader/steps.toml` (`grader.manifest`). `grader.handout`
builds the learner handout; `grader.snapshots` records and replays the reference's
answers (`tests/_support.recorded`).
"""
from .manifest import Step, load_manifest

__all__ = ["Step", "load_manifest"]
