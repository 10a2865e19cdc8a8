"""The learner handout's README.md is true there: it names only what the handout holds,
and its commands run in the handout.

The handout is built into a tmp folder (`grader.handout.build`, as `nox -s handout`
does); the fenced `bash` blocks of its generated README are parsed and every command
is run there, cheaply where the real one would take minutes: a `nox -s NAME -- ARGS`
line must name a learner session of the handout's noxfile, and that session's own
command (`session.run(...)` in the noxfile) runs with ARGS under this Python (the
kata's virtualenv). Instructor sessions must stop in the handout with one line.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grader import handout
from kata.paths import cache_dir

pytestmark = [pytest.mark.infra, pytest.mark.needs_reference]

ROOT = Path(__file__).resolve().parents[1]
# A run of a few seconds on the cached Shakespeare tokens; later flags override the README's.
TINY_TRAIN = ["--threshold", "none", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
              "--batch-size", "8", "--max-steps", "6", "--warmup-steps", "2", "--log-interval", "2",
              "--eval-interval", "100", "--eval-batches", "2", "--checkpoint-interval", "100", "--sample-tokens", "4",
              "--samples", "1"]
# What the README may mention: the handout's top-level folders, and ones it must not hold.
KATA_DIRS = ("exercises", "tests", "grader", "kata", "benchmarks", "docs", "reference")


# --------------------------------------------------------------------------- helpers

def bash_commands(readme: str) -> list[list[str]]:
    """Every command line of the fenced ```bash blocks, split like a shell would (comments dropped)."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", readme, re.M | re.S):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                out.append(argv)
    return out


def nox_sessions(noxfile: Path) -> dict[str, dict]:
    """`{name: {"instructor": bool, "command": [...]}}` from the noxfile's source: a session
    is a function decorated by `nox.session` (learner) or `instructor(...)`; its command is
    the literal arguments of its `session.run(...)` before `*session.posargs`."""
    sessions = {}
    for fn in ast.parse(noxfile.read_text()).body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        kinds = set()
        for d in fn.decorator_list:
            target = d.func if isinstance(d, ast.Call) else d
            if isinstance(target, ast.Attribute) and target.attr == "session":
                kinds.add("learner")
            elif isinstance(target, ast.Name) and target.id == "instructor":
                kinds.add("instructor")
        if not kinds:
            continue
        command = None
        for node in ast.walk(fn):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "run"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "session"):
                command = []
                for arg in node.args:
                    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                        break
                    command.append(arg.value)
                break
        sessions[fn.name] = {"instructor": "instructor" in kinds, "command": command}
    return sessions


def env_for(folder: Path) -> dict[str, str]:
    """The handout's own modules first, the learner's solution, offline, the kata's token cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KATA_", "PYTEST_", "HYPOTHESIS_"))}
    env.update(PYTHONPATH=str(folder), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               KATA_CACHE_DIR=str(cache_dir()), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def run(argv: list[str], folder: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=folder, env=env_for(folder), capture_output=True, text=True, timeout=timeout)


def python_argv(argv: list[str], sessions: dict[str, dict]) -> tuple[str, list[str]]:
    """A README command -> (what it is, the argv that runs it under this Python)."""
    if argv[:2] == ["nox", "-s"]:
        name, rest = argv[2], argv[3:]
        assert name in sessions, f"README command {shlex.join(argv)}: the handout's noxfile has no session {name!r}"
        s = sessions[name]
        assert not s["instructor"], f"README command {shlex.join(argv)}: {name} is an instructor session"
        assert s["command"], f"session {name} has no session.run(...) with literal arguments to check"
        posargs = rest[1:] if rest[:1] == ["--"] else rest
        assert not rest or rest[0] == "--", f"README command {shlex.join(argv)}: session arguments go after `--`"
        cmd = s["command"] + posargs
    elif argv[0] in (".nox/_kata/bin/python", ".nox/_kata/bin/pytest"):
        cmd = [Path(argv[0]).name, *argv[1:]]
    else:
        raise AssertionError(f"README command {shlex.join(argv)}: the handout runs only `nox -s ...` "
                             f"and .nox/_kata/bin/... commands (the system python has no torch)")
    head = {"python": [sys.executable], "pytest": [sys.executable, "-m", "pytest"]}
    assert cmd[0] in head, f"README command {shlex.join(argv)} runs {cmd[0]!r}, not python or pytest"
    what = cmd[2] if cmd[0] == "python" and cmd[1:2] == ["-m"] else cmd[0]
    return what, head[cmd[0]] + cmd[1:]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    folder, _ = handout.build(ROOT, tmp_path_factory.mktemp("handout") / "handout", make_zip=False)
    return folder


@pytest.fixture(scope="module")
def readme(built) -> str:
    return (built / "README.md").read_text()


# --------------------------------------------------------------------------- tests

# Files the README names that its own commands write (`nox -s hint` records the hints seen).
WRITTEN_LATER = {"exercises/hints_used.json"}


def test_the_handout_readme_is_generated_and_names_only_what_the_handout_holds(built, readme):
    assert readme == handout.handout_readme(ROOT) and readme != (ROOT / "README.md").read_text()
    assert not (built / handout.README_TEMPLATE).exists(), "the template is the README, not a file of its own"
    for mention in sorted(set(re.findall(rf"\b(?:{'|'.join(KATA_DIRS)})/[\w./-]*", readme))):
        top = mention.split("/")[0]
        assert (built / top).is_dir(), f"the handout README mentions {mention}, but the handout has no {top}/"
        if mention in WRITTEN_LATER:  # made by a command the README shows, not shipped
            continue
        if re.search(r"\.\w+$", mention) and not re.search(r"[*N]_|<", mention):
            assert (built / mention).exists(), f"the handout README mentions {mention}, which the handout lacks"
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        assert target.startswith("http") or (built / target).exists(), f"README link to {target}, not in the handout"
    for wrong in ("reference.step", "nox -s smoke", "nox -s tests", "nox -s mutants", "nox -s bench", "CALIBRATION"):
        assert wrong not in readme, f"the handout README mentions {wrong!r}, which does not work there"
    sessions = nox_sessions(built / "noxfile.py")
    for name in re.findall(r"nox -s (\w+)", readme):
        assert name in sessions and not sessions[name]["instructor"], \
            f"the handout README mentions `nox -s {name}`, which is no learner session of the handout's noxfile"
    assert "nox -s train -- --preset smoke" in readme and ".nox/_kata/bin/python" in readme
    steps = [line for line in readme.splitlines() if line.startswith("| ") and "`exercises/" in line]
    assert len(steps) >= 8, f"the steps table has {len(steps)} rows:\n{readme[:2000]}"


def check_command(argv: list[str], sessions: dict, built: Path, solved: Path, tmp: Path) -> str:
    """Run one README command in the handout (cheaply where the real one takes minutes) and
    check what it does; returns `seconds  command` for the log."""
    line = shlex.join(argv)
    what, cmd = python_argv(argv, sessions)
    t0 = time.time()
    if what == "grader":
        if "--watch" in cmd:  # runs until Ctrl-C: check the module takes the flag
            p = run([*cmd, "--help"], built)
            assert p.returncode == 0 and "--watch" in p.stdout, f"{line}:\n{p.stdout}{p.stderr}"
        elif "--step" in cmd:  # one step of the untouched handout: not started
            p = run(cmd, built, timeout=300)
            assert p.returncode == 0 and "not started" in p.stdout.lower(), f"{line}:\n{p.stdout}{p.stderr}"
        else:
            # The main job on the reference's files as the learner's, in the handout (no reference/ anywhere,
            # the stored answers replayed): full marks, no input without a stored answer. Two cheap steps
            # here; every step, through this very grader in a copy of the handout, is the autograder's
            # full-marks test (tests/test_platform_autograder.py), so the suite grades it in full once.
            out = tmp / "check-results.json"
            p = run([*cmd, "--step", "2", "--step", "4", "--json", str(out), "--strict"], solved, timeout=600)
            data = json.loads(out.read_text()) if out.exists() else {}
            steps = data.get("extra_data", {}).get("steps", {})
            short = {k: (v["status"], v["score"]) for k, v in steps.items()
                     if v["status"] not in ("passed", "needs a GPU") or v["kata_errors"]}
            assert p.returncode == 0 and steps and not short, f"{line} on the reference's files: {short}\n{p.stdout[-4000:]}"
    elif what == "pytest":  # collecting proves the command selects tests; running them is the grader's job
        p = run([*cmd, "-q", "-p", "no:cacheprovider", "--co"], built, timeout=300)
        assert p.returncode == 0 and "tests collected" in p.stdout, f"{line}:\n{p.stdout[-3000:]}{p.stderr}"
    elif what == "exercises.step8_pretrain" and "--help" in cmd:
        p = run(cmd, built)
        assert p.returncode == 0 and "--max-steps" in p.stdout, f"{line}:\n{p.stdout}{p.stderr}"
    elif what == "exercises.step8_pretrain":
        out = tmp / ("run-" + re.sub(r"\W+", "-", line))
        p = run([*cmd, *TINY_TRAIN, "--out-dir", str(out)], built, timeout=300)  # the stubs: a one-line error
        assert p.returncode == 2 and "is not written yet" in p.stderr and "Traceback" not in p.stderr, \
            f"{line} on the stubs:\n{p.stdout}{p.stderr}"
        assert not out.exists(), f"{line} on the stubs left {out} behind"
        p = run([*cmd, *TINY_TRAIN, "--out-dir", str(out)], solved, timeout=300)  # every step solved: a real run
        assert p.returncode == 0 and (out / "summary.json").exists() and "train step 6/6" in p.stdout, \
            f"{line} with every step solved:\n{p.stdout}{p.stderr}"
    elif what == "grader.hints":  # in a copy: asking for a hint records it in exercises/hints_used.json
        folder = tmp / ("hints-" + re.sub(r"\W+", "-", line))
        if not folder.exists():
            shutil.copytree(built, folder)
        p = run(cmd, folder)
        assert p.returncode == 0 and re.search(r"hint \d+/\d+", p.stdout), f"{line}:\n{p.stdout}{p.stderr}"
    elif what == "kata.final":
        p = run(cmd, built)  # on the stubs it says at once what it waits for
        assert p.returncode in (0, 1) and "waiting on step" in p.stdout + p.stderr, f"{line}:\n{p.stdout}{p.stderr}"
    elif what == "kata.translate":
        assert "--help" in cmd, f"{line}: a translation run takes hours; the README's block should show --help"
        p = run(cmd, built)
        assert p.returncode == 0 and "--data-dir" in p.stdout, f"{line}:\n{p.stdout}{p.stderr}"
    else:
        raise AssertionError(f"README command {line} ({what}): this test does not know how to run it cheaply; "
                             f"add a case to check_command")
    return f"{time.time() - t0:5.1f}s  {line}"


@pytest.mark.slow
@pytest.mark.timeout(600)  # ~35 s of CPU in all (two commands at a time); the margin is for a loaded machine
def test_every_command_of_the_handout_readme_runs_there(built, readme, tmp_path):
    """Each README command, run in the handout: for real where cheap, else its cheap cousin;
    `nox -s check` itself on the reference's files (they must score full marks)."""
    sessions = nox_sessions(built / "noxfile.py")
    commands = bash_commands(readme)
    assert len(commands) >= 5, f"expected the README's commands in ```bash blocks, found {commands}"
    solved = tmp_path / "solved"  # the handout with the reference's steps as the learner's own
    shutil.copytree(built, solved)
    for f in (ROOT / "reference").glob("*.py"):
        if f.name != "__init__.py":
            shutil.copy(f, solved / "exercises" / f.name)
    # Every command works in a folder of its own outputs; two at a time keep 2 cores busy.
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(check_command, argv, sessions, built, solved, tmp_path) for argv in commands]
        timings = [job.result() for job in jobs]
    print("\n" + "\n".join(timings))  # with -s: what each command cost


def _nox() -> list[str] | None:
    if shutil.which("nox"):
        return ["nox"]
    for python in (sys.executable, shutil.which("python3")):
        if python and subprocess.run([python, "-c", "import nox"], capture_output=True).returncode == 0:
            return [python, "-m", "nox"]
    return None


def test_instructor_sessions_stop_in_the_handout_with_one_line(built):
    sessions = nox_sessions(built / "noxfile.py")
    instructor = sorted(n for n, s in sessions.items() if s["instructor"])
    assert {"tests", "smoke", "handout", "snapshots", "mutants", "bench"} <= set(instructor), instructor
    assert {"check", "train", "final"} <= {n for n, s in sessions.items() if not s["instructor"]}
    nox = _nox()
    if nox is None:
        pytest.skip("nox is not installed here: the session guard was checked from the noxfile's source only")
    p = run([*nox, "-s", "smoke"], built, timeout=60)
    assert p.returncode != 0, p.stdout + p.stderr
    said = [line for line in (p.stdout + p.stderr).splitlines() if "instructor command" in line]
    assert len(said) == 1 and "reference/ is not in the handout" in said[0], p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    listing = run([*nox, "-l"], built, timeout=60)
    assert "- train" in listing.stdout and "Instructors only" in listing.stdout, listing.stdout
    for line in listing.stdout.splitlines():  # "... not in the handout): build the learner handout ..."
        if "Instructors only" in line:
            assert re.search(r"not in the handout\): \S", line), f"a sentence that starts in lower case: {line}"
    assert "not in the handout): build the learner handout" in listing.stdout, listing.stdout
    assert "--solution reference" not in listing.stdout, "the handout's `nox -l` offers the reference it lacks"


def test_the_template_must_name_real_readme_sections(tmp_path):
    (tmp_path / "grader").mkdir()
    shutil.copy(ROOT / "grader" / "steps.toml", tmp_path / "grader" / "steps.toml")
    (tmp_path / "README.md").write_text("# kata\n\n## Why\n\nbecause\n\n## Other\n\nx\n")
    (tmp_path / handout.README_TEMPLATE).write_text("# handout\n\n{{steps}}\n\n{{readme: Why}}\n")
    text = handout.handout_readme(tmp_path)
    assert "## Why\n\nbecause" in text and "## Other" not in text and "| 1 | `exercises/step1_" in text
    (tmp_path / handout.README_TEMPLATE).write_text("{{readme: Gone}}\n")
    with pytest.raises(ValueError, match="no section '## Gone'"):
        handout.handout_readme(tmp_path)
