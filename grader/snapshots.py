"""`nox -s snapshots`: record the reference's answers that the learner handout replays.

Tests compute the reference's answer in `@recorded` functions (`tests/_support.py`);
this grades the reference with `KATA_SNAPSHOTS=record`, so every such call stores its
answer under `tests/_snapshots/`, through the very grader (and hypothesis profile) that
grades a learner. `--check` grades the reference with `KATA_SNAPSHOTS=verify` instead:
every answer must already be stored and equal to the live reference.

    python -m grader.snapshots            # (re)record everything
    python -m grader.snapshots --check    # are they up to date?
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from rich.console import Console

from kata.machine import default_jobs

from . import report
from .manifest import load_manifest
from .runner import NEEDS_GPU, NO_TESTS, PASSED, grade

ROOT = Path(__file__).resolve().parents[1]


def snapshot_dir(root: Path) -> Path:
    return root / "tests" / "_snapshots"


def size(root: Path) -> tuple[int, int]:
    files = [p for p in snapshot_dir(root).rglob("*.pt")]
    return len(files), sum(p.stat().st_size for p in files)


def run(root: Path, check: bool, steps: list[str] | None = None, jobs: int = 2) -> int:
    console = Console(highlight=False)
    if not (root / "reference").is_dir():
        console.print("[red]snapshots are made from reference/, which this checkout does not have[/]")
        return 2
    manifest = load_manifest(root / "grader" / "steps.toml")
    if steps:
        manifest = [s for s in manifest if s.id in steps]
    if not check:
        for s in manifest:
            for f in (root / "tests").glob(f"test_{s.test_group}_*.py"):
                shutil.rmtree(snapshot_dir(root) / f.stem, ignore_errors=True)
    os.environ["KATA_SNAPSHOTS"] = "verify" if check else "record"
    results = grade(manifest, root, "reference", jobs=jobs, ignore_needs=True)
    report.render(results, "reference", root, console)
    bad = [r for r in results if r.status not in (PASSED, NEEDS_GPU, NO_TESTS)]
    n, nbytes = size(root)
    console.print(f"tests/_snapshots/: {n} files, {nbytes / 1e6:.2f} MB")
    if bad:
        what = "out of date or failing" if check else "not recorded: the reference fails"
        console.print(f"[red]snapshots {what} for {', '.join(r.step.id for r in bad)}[/]"
                      + ("  (run `nox -s snapshots`)" if check else ""))
        return 1
    console.print("[green]snapshots are up to date[/]" if check else "[green]recorded[/]")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader.snapshots", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="verify instead of recording")
    p.add_argument("--step", action="append", default=[], help="only these step ids (step1, bonus1)")
    p.add_argument("--root", type=Path, default=ROOT)
    p.add_argument("--jobs", type=int, default=default_jobs())
    a = p.parse_args(argv)
    return run(a.root.resolve(), a.check, a.step or None, a.jobs)


if __name__ == "__main__":
    sys.exit(main())
