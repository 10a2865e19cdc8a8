"""`python -m grader` (what `nox -s check` runs): grade, show the table, say what next.

    python -m grader                      # grade exercises/
    python -m grader --solution reference # instructors, full kata only: grade the reference (all pass)
    python -m grader --step 3             # one step
    python -m grader --json results.json  # also write Gradescope's results.json
    python -m grader --watch              # re-grade whenever a file in exercises/ is saved
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kata.machine import default_jobs

from . import gradescope, report
from .confinement import become_subreaper, end_learner_processes
from .manifest import MANIFEST, Step, load_manifest
from .runner import (DEFAULT_MEMORY_LIMIT, FAILED, NOT_STARTED, PASSED, WAITING, StepResult, grade,
                     stop_on_signals, stopped_by, stored_grade)

ROOT = Path(__file__).resolve().parents[1]


def _pick(steps: list[Step], wanted: list[str]) -> list[Step]:
    """`3`, `step3`, `bonus1`, `8_lab` -> manifest steps (a plain number also picks its tiers)."""
    chosen: list[Step] = []
    for w in wanted:
        w = w.strip().lower()
        hits = [s for s in steps if w in (s.id, s.id.replace("step", ""), s.test_group, s.test_group.replace("step", ""))
                or (w.isdigit() and s.id == f"step{w}")]
        if not hits:
            known = ", ".join(s.id for s in steps)
            raise SystemExit(f"--step {w}: no such step; the manifest has {known}")
        chosen += [s for s in hits if s not in chosen]
    return [s for s in steps if s in chosen]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # A learner handout has no reference/: its --help does not offer to grade one.
    full = (ROOT / "reference").is_dir()
    epilog = "\n".join(line for line in __doc__.splitlines() if full or "--solution reference" not in line)
    p = argparse.ArgumentParser(prog="python -m grader", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog)
    p.add_argument("--solution", choices=("exercises", "reference"),
                   default=os.environ.get("KATA_SOLUTION") or "exercises", metavar=None if full else "exercises",
                   help="whose code to grade: exercises (yours, the default)"
                   + (" or reference (instructors, full kata only)" if full else ""))
    p.add_argument("--step", action="append", default=[], metavar="N",
                   help="grade only this step (3, step3, bonus1); repeatable")
    p.add_argument("--json", metavar="PATH", help="write Gradescope-format results.json here")
    p.add_argument("--watch", action="store_true", help="re-grade when a file in exercises/ changes")
    p.add_argument("--no-bonus", action="store_true", help="skip the bonus steps")
    p.add_argument("--jobs", type=int, default=default_jobs(), help="steps graded at once")
    p.add_argument("--root", type=Path, default=ROOT, help="the kata's folder (default: this checkout)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds per step (default: the manifest's)")
    p.add_argument("--memory-gb", type=float, default=DEFAULT_MEMORY_LIMIT / 2**30,
                   help="address-space limit of each step's test process")
    p.add_argument("--no-cache", action="store_true",
                   help="re-run every step and store its new grade (by default a step whose files did not change "
                        "keeps its grade)")
    p.add_argument("--strict", action="store_true", help="exit 1 unless every graded step passes")
    p.add_argument("--separate", action="store_true",
                   help="run your code in a worker process, away from the tests that decide the grade (how courses "
                        "grade: slower to start, the same grade)")
    return p.parse_args(argv)


def _manifest(args: argparse.Namespace) -> list[Step]:
    manifest = args.root / "grader" / "steps.toml"
    return load_manifest(manifest if manifest.exists() else MANIFEST)


def _steps(args: argparse.Namespace) -> list[Step]:
    steps = _manifest(args)
    if args.no_bonus:
        steps = [s for s in steps if not s.bonus]
    return _pick(steps, args.step) if args.step else steps


def _name(step: Step) -> str:
    return step.number if step.bonus else f"step {step.number}"


HEARTBEAT_S = 60.0  # a plain "still grading" line this often when stdout is not a terminal


class _Hooks:
    """What the grader tells the progress display: a step started, a step was graded."""

    def __init__(self, result=lambda r: None, start=lambda s: None) -> None:
        self.result, self.start = result, start


def _live_table(todo: list[Step], solution: str, graded: dict[str, StepResult], started: dict[str, float]) -> Table:
    """The steps as they are being graded: queued, grading (for how long), or their result."""
    t = Table(title=f"grading {len(todo)} step(s) of {solution}/ ...", title_justify="left", expand=False)
    for col, justify in (("step", "right"), ("title", "left"), ("status", "left"), ("tests", "right"), ("time", "right")):
        t.add_column(col, justify=justify, no_wrap=col != "title")
    now = time.monotonic()
    for s in todo:
        r = graded.get(s.id)
        if r is not None:
            status = report.status_text(r)
            tests = f"{r.passed}/{r.total}" if r.total else "—"
            took = "reused" if r.cached else (f"{r.seconds:.0f} s" if r.seconds else "")
        elif s.id in started:
            status, tests, took = Text("⋯ grading", style="cyan"), "", f"{now - started[s.id]:.0f} s"
        else:
            status, tests, took = Text("· queued", style="dim"), "", ""
        t.add_row(s.number, s.title, status, tests, took)
    return t


@contextmanager
def _progress(console: Console, todo: list[Step], solution: str):
    """On a terminal, a table that fills in as steps are graded (each row queued, grading
    for how long, or its result); elsewhere (CI, a pipe, a log) plain lines: one when grading
    starts, one as each step is graded, and a "still grading" line every minute, so a long
    run is never silent."""
    if console.is_terminal:
        graded: dict[str, StepResult] = {}
        started: dict[str, float] = {}
        with Live(_live_table(todo, solution, graded, started), console=console, refresh_per_second=2,
                  transient=True, get_renderable=lambda: _live_table(todo, solution, graded, started)):
            yield _Hooks(lambda r: graded.__setitem__(r.step.id, r),
                         lambda s: started.__setitem__(s.id, time.monotonic()))
        return
    start = time.monotonic()
    done: set[str] = set()
    stop = threading.Event()

    def say(text: str) -> None:
        print(text, flush=True)

    def on_result(r: StepResult) -> None:
        done.add(r.step.id)
        tests = f", {r.passed}/{r.total} tests pass" if r.total else ""  # "failed 16/17 tests" read as 16 failures
        how = " (unchanged: reused)" if r.cached else f" in {r.seconds:.0f} s" if r.seconds else ""
        say(f"{_name(r.step)}: {r.note if r.status in ('waiting', 'needs a GPU') else r.status}{tests}{how}")

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            left = [_name(s) for s in todo if s.id not in done]
            say(f"... still grading ({', '.join(left[:3])}{' ...' if len(left) > 3 else ''}), "
                f"{time.monotonic() - start:.0f} s so far")

    say(f"grading {len(todo)} step(s) of {solution}/")
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield _Hooks(on_result)
    finally:
        stop.set()


def run_once(args: argparse.Namespace, console: Console, steps: list[Step] | None = None,
             previous: dict[str, StepResult] | None = None) -> list[StepResult]:
    all_steps = _steps(args)
    todo = steps if steps is not None else all_steps
    start = time.monotonic()
    # A separated grading never reuses a stored grade: the cache folder is not the judge's alone.
    store = None if args.separate else args.root / ".kata_cache" / "grader"
    limits = dict(time_limit=args.time_limit, memory=int(args.memory_gb * 2**30), separate=args.separate)
    if args.separate:
        become_subreaper()  # the learner's leftover processes become ours, to end before the report
    with _progress(console, todo, args.solution) as hooks:
        try:
            fresh = grade(todo, args.root, args.solution, jobs=args.jobs, cache=store, refresh=args.no_cache,
                          on_result=hooks.result, on_start=hooks.start, **limits)
        finally:
            if args.separate:
                end_learner_processes()
    merged = {**(previous or {}), **{r.step.id: r for r in fresh}}
    results = [merged[s.id] for s in all_steps if s.id in merged]
    manifest = _manifest(args)
    on_record: set[str] = set()
    stale: set[str] = set()
    if args.step and not any(r.status in (FAILED, NOT_STARTED, WAITING) for r in results):
        # "next:" points past the steps whose stored grade (for their files as they are now) is a pass.
        # A step that passed for older files (one it uses was edited since) is to be re-graded, not written.
        graded = {r.step.id for r in results}
        for s in manifest:
            stored = None if s.id in graded or s.gpu or store is None else stored_grade(
                s, args.root, args.solution, store, **limits)
            if stored is not None and stored[0].status == PASSED:
                (on_record if stored[1] else stale).add(s.id)
    report.render(results, args.solution, args.root, console, manifest=manifest, scoped=bool(args.step),
                  on_record=on_record, stale=stale)
    reused = sum(r.cached for r in fresh)
    console.print(f"[dim]graded in {time.monotonic() - start:.1f} s"
                  + (f" ({reused} unchanged step(s) reused; --no-cache re-runs them)" if reused else "") + "[/]")
    if args.json:
        gradescope.write(results, args.solution, args.json, root=args.root)
        console.print(f"[dim]wrote {args.json}[/]")
    return results


def watch(args: argparse.Namespace, console: Console) -> None:
    from watchfiles import PythonFilter, watch as watch_changes

    results = {r.step.id: r for r in run_once(args, console)}
    folder = args.root / args.solution
    console.print(f"[bold]watching {folder}/ — save a file to re-grade, Ctrl-C to stop[/]")
    # Ctrl-C (KeyboardInterrupt) ends the loop; `main` says so and picks the exit status.
    for changes in watch_changes(folder, watch_filter=PythonFilter(), debounce=400):
        names = {Path(p).stem for _, p in changes}
        steps = _steps(args)
        first = next((i for i, s in enumerate(steps) if s.module in names), None)
        # A change to step k can only change steps k.. (later steps build on earlier ones).
        todo = steps if first is None else steps[first:]
        console.clear()
        console.print(f"[dim]changed: {', '.join(sorted(names))}[/]")
        results = {r.step.id: r for r in run_once(args, console, todo, results)}
        console.print(f"[bold]watching {folder}/ — save a file to re-grade, Ctrl-C to stop[/]")


def _interrupted(watching: bool) -> int:
    """Exit status after a signal: 128 + its number, as a shell reports it; Ctrl-C is
    how watch mode is meant to end, so there it is a plain 0."""
    sig = stopped_by() or signal.SIGINT  # None: a KeyboardInterrupt no handler of ours raised
    if sig == signal.SIGINT:
        print("stopped watching" if watching else "interrupted: the running steps were stopped, nothing more is graded",
              file=sys.stderr, flush=True)
        if watching:
            return 0
    return 128 + sig


def missing_solution(args: argparse.Namespace) -> str:
    """One line when the folder to grade does not exist (a handout has no reference/), else ""."""
    if (args.root / args.solution).is_dir():
        return ""
    if args.solution == "reference":
        return (f"python -m grader: --solution reference: {args.root} has no reference/ folder (a learner handout "
                f"ships without it); grade your own code with `nox -s check` (--solution exercises, the default)")
    return (f"python -m grader: --solution {args.solution}: {args.root} has no {args.solution}/ folder; "
            f"run it in the kata's folder or pass --root that folder")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.root = args.root.resolve()
    refused = missing_solution(args)
    if refused:  # else every step would say "not started" and send the learner to a file that is not there
        print(refused, file=sys.stderr)
        return 2
    console = Console(highlight=False)
    # A signal (Ctrl-C, SIGTERM, SIGHUP) kills the steps' test processes, which run in
    # process groups of their own and would otherwise go on training, orphaned.
    with stop_on_signals():
        try:
            if args.watch:
                watch(args, console)
                return 0
            results = run_once(args, console)
        except KeyboardInterrupt:
            return _interrupted(args.watch)
    if args.strict:  # full marks, and no test the kata could not grade
        score, top, _, _ = report.totals(results)
        return 0 if score >= top and not any(r.kata_errors for r in results) else 1
    return 0
