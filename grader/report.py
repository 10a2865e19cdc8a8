"""What the learner sees: the table, the first failure with its hint, progress, what next."""
from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Callable, Collection
from pathlib import Path

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .hints import how_to_ask, load_used, seen
from .manifest import Step
from .runner import (FAILED, KATA_ERROR, NEEDS_GPU, NO_TESTS, NOT_STARTED, PASSED, WAITING, StepResult, _waiting_on,
                     step_test_files)

STYLE = {PASSED: "bold green", FAILED: "bold red", NOT_STARTED: "dim", WAITING: "yellow",
         NEEDS_GPU: "cyan", NO_TESTS: "dim", KATA_ERROR: "bold magenta"}
ICON = {PASSED: "✔", FAILED: "✘", NOT_STARTED: "·", WAITING: "…", NEEDS_GPU: "⚡", NO_TESTS: "-", KATA_ERROR: "⚠"}
MESSAGE_LINES = 14
_SYNTAX = re.compile(r"(\S+\.py) has a syntax error at line (\d+)")


def _fmt(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def totals(results: list[StepResult]) -> tuple[float, float, float, float]:
    """(score, max_score, bonus score, bonus max) over the graded rows."""
    core = [r for r in results if r.counts_toward_max]
    bonus = [r for r in results if r.step.bonus]
    return (sum(r.score for r in core), sum(r.step.points for r in core),
            sum(r.score for r in bonus), sum(r.step.points for r in bonus))


def _loss_text(loss: float, threshold: float) -> str:
    return f"{loss:.2f} {'<' if loss < threshold else '≥'} {threshold:g}"


def last_lab_run(root: Path, solution: str) -> str:
    """"last lab run 5.12 < 5.5" from kata/final.py's newest cached lab result, or ""."""
    cache = Path(os.environ.get("KATA_CACHE_DIR") or root / ".kata_cache") / "final"  # kata.paths.cache_dir
    runs = sorted(cache.glob(f"{solution}-lab-*.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(runs):
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return f"last lab run {_loss_text(float(d['loss']), float(d['threshold']))}"
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return ""


def figure(r: StepResult, root: Path | None = None, solution: str = "exercises") -> str:
    """The graded number of a run step: "loss 6.35 < 6.8" (what its tests recorded), or for
    a GPU tier that cannot run here, its last cached result."""
    for t in r.tests:
        if "loss" in t.extras and "threshold" in t.extras:
            return f"loss {_loss_text(float(t.extras['loss']), float(t.extras['threshold']))}"
    if r.status == NEEDS_GPU and root is not None and r.step.select == "lab":
        return last_lab_run(root, solution)
    return ""


def status_text(r: StepResult, extra: str = "") -> Text:
    label = r.note if r.status in (WAITING, NEEDS_GPU) else r.status
    return Text(f"{ICON[r.status]} {label}" + (f" · {extra}" if extra else ""), style=STYLE[r.status])


def table(results: list[StepResult], solution: str, root: Path | None = None,
          used: dict[str, int] | None = None) -> Table:
    used = used if used is not None else (load_used(root) if root is not None else {})
    t = Table(title=f"tinygpt-kata — grading {solution}/", title_justify="left", expand=False)
    t.add_column("step", justify="right", no_wrap=True)
    t.add_column("title")
    t.add_column("status")
    t.add_column("tests", justify="right", no_wrap=True)
    t.add_column("points", justify="right", no_wrap=True)
    t.add_column("hints", justify="right", no_wrap=True)
    for r in results:
        tests = f"{r.passed}/{r.total}" if r.status not in (NEEDS_GPU, NO_TESTS) and r.total else "—"
        hints = f"{seen(r.step, used)}/{len(r.step.hints)}" if r.step.hints else "—"
        points = f"{_fmt(r.score)}/{_fmt(r.step.points)}"
        if r.status == NEEDS_GPU:
            points = f"—/{_fmt(r.step.points)}"
        elif r.step.bonus:
            points = f"+{points}"
        t.add_row(r.step.number, r.step.title, status_text(r, figure(r, root, solution)), tests, points, hints,
                  end_section=(r is not results[-1] and not r.step.bonus and results[results.index(r) + 1].step.bonus))
    return t


def first_unfinished(results: list[StepResult], bonus: bool = False) -> StepResult | None:
    return next((r for r in results if r.step.bonus == bonus and r.status in (FAILED, NOT_STARTED, WAITING)), None)


def _function_at(root: Path, where: str) -> str:
    """`Class.method` enclosing `file:line`, or "" when it cannot be told."""
    try:
        path, line = where.rsplit(":", 1)
        tree = ast.parse((root / path).read_text(encoding="utf-8"))
    except (ValueError, OSError, SyntaxError):
        return ""
    best = ""

    def visit(node: ast.AST, prefix: str) -> None:
        nonlocal best
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if child.lineno <= int(line) <= (child.end_lineno or child.lineno):
                    if not isinstance(child, ast.ClassDef):
                        best = name
                    visit(child, name + ".")

    visit(tree, "")
    return best


def next_line(results: list[StepResult], root: Path, solution: str = "exercises",
              manifest: list[Step] | None = None, scoped: bool = False,
              on_record: Collection[str] = (), stale: Collection[str] = ()) -> str:
    """What to do next. `scoped`: only some steps were graded (`--step N`), so the line
    speaks of those; when they pass it points to the next step to work on (`next_step`),
    `on_record` being the ids of the other steps whose stored grade is a pass, `stale` those
    whose stored grade was a pass for files that have changed since (re-grade, not implement)."""
    text = _next_line(results, root, manifest or [r.step for r in results], scoped, frozenset(on_record),
                      frozenset(stale))
    return text.replace("exercises/", f"{solution}/") if solution != "exercises" else text


def _step_arg(step: Step) -> str:
    """What `--step` takes for `step`: `3`, `8` (the tiers of step 8), `bonus1` (one word)."""
    return step.id if step.bonus else step.number.split(" (")[0]


def _open_line(step: Step) -> str:
    return f"next: open {step.learner_file} and implement {step.functions or 'the step'}"


def next_step(graded: list[Step], manifest: list[Step], on_record: Collection[str] = (),
              has_tests: Callable[[Step], bool] = lambda s: True) -> Step | None:
    """After `--step N` passes, the step to work on next: the first step after the graded
    ones in manifest order (main steps before bonus steps, wrapping round to the first
    step) that has tests, runs here (not a GPU tier) and has no passing grade on record;
    None when there is none."""
    ids = {s.id for s in graded}
    at = max((i for i, s in enumerate(manifest) if s.id in ids), default=-1) + 1
    ring = sorted(manifest[at:] + manifest[:at], key=lambda s: s.bonus)  # stable: main steps first
    return next((s for s in ring if s.id not in ids and s.id not in on_record and not s.gpu and has_tests(s)), None)


def _next_line(results: list[StepResult], root: Path, manifest: list[Step], scoped: bool,
               on_record: frozenset[str] = frozenset(), stale: frozenset[str] = frozenset()) -> str:
    r = first_unfinished(results) or (first_unfinished(results, bonus=True) if scoped else None)
    if r is not None and r.status == WAITING and r.blocked_by:
        # Point at the step it waits on, not back at itself.
        by_id = {x.step.id: x for x in results}
        blocker = by_id.get(r.blocked_by)
        step = blocker.step if blocker is not None else next((s for s in manifest if s.id == r.blocked_by), None)
        if step is not None:
            if blocker is not None and blocker.status in (FAILED, NOT_STARTED, WAITING) and blocker is not r:
                return _next_line([blocker], root, manifest, scoped)
            arg = _step_arg(step)
            return (f"next: step {r.step.number} waits on {'' if step.bonus else 'step '}{step.number}: "
                    f"open {step.learner_file} and implement {step.functions or 'it'} (`nox -s check -- --step {arg}` grades it)")
    if r is None and scoped:
        passed = [x for x in results if x.status in (PASSED, KATA_ERROR)] or results  # not the GPU tier that did not run
        main = [x.step.number for x in passed if not x.step.bonus]
        names = [f"{'step' if len(main) == 1 else 'steps'} {', '.join(main)}"] if main else []
        names += [x.step.number for x in passed if x.step.bonus]  # "bonus 1"
        done = f"{' and '.join(names)} {'passes' if len(passed) == 1 else 'pass'}"
        todo = next_step([x.step for x in results], manifest, on_record,
                         lambda s: bool(step_test_files(root, s)))
        if todo is None:
            return f"next: all steps pass ({done}; the others' grades on record) — `nox -s check` shows your total"
        arg = _step_arg(todo)
        if todo.id in stale:
            return (f"next: {done} — {todo.number if todo.bonus else 'step ' + todo.number} passed when last graded, "
                    f"but a file it uses has changed since: re-grade it (`nox -s check -- --step {arg}`)")
        return (f"next: {done} — {'try ' + todo.number + ': ' if todo.bonus else ''}open {todo.learner_file} "
                f"and implement {todo.functions or 'it'} (`nox -s check -- --step {arg}` grades it)")
    if r is None:
        b = first_unfinished(results, bonus=True)
        gpu = next((x for x in results if x.status == NEEDS_GPU), None)
        if b is not None:
            return f"next: every main step passes — try {b.step.number}: open {b.step.learner_file} and implement {b.step.functions or 'it'}"
        missing = [x for x in results if x.status == NO_TESTS and not x.step.bonus]
        if missing:
            return f"next: every step with tests passes ({', '.join(x.step.id for x in missing)} have none yet)"
        if gpu is not None:
            return f"next: every step passes here — {gpu.note.replace('needs a GPU — ', '')} for the lab tier"
        return "next: nothing — every step passes. Well done!"
    fail = r.first_failure
    broken = _SYNTAX.search(fail.message) if fail else None
    if broken:  # the file does not even parse: that comes first, wherever it is
        return f"next: open {broken.group(1)} and fix the syntax error at line {broken.group(2)}"
    fn = _function_at(root, fail.where) if fail and fail.where else ""
    if r.status == NOT_STARTED or not fn:
        return _open_line(r.step)
    return f"next: open {fail.where.rsplit(':', 1)[0]} and fix {fn} (line {fail.where.rsplit(':', 1)[1]})"


def details(results: list[StepResult], used: dict[str, int] | None = None, scoped: bool = False) -> Panel | None:
    r = first_unfinished(results) or (first_unfinished(results, bonus=True) if scoped else None)
    waiting = next((t for t in sorted(r.tests, key=lambda t: _waiting_on(t.message) != r.blocked_by)
                    if t.outcome == "waiting"), None) if r is not None else None
    if r is not None and r.status == WAITING and waiting is not None:
        # Its tests ran: say which one waits and on what, so "next:" is not a riddle.
        return Panel(Group(Text.from_markup(f"[bold]waiting test:[/] {escape(waiting.name)}"), Text(waiting.message)),
                     title=f"step {r.step.number}: {r.step.title} — {r.note}", title_align="left",
                     border_style=STYLE[WAITING])
    if r is None or r.status in (WAITING, NO_TESTS):
        return None
    fail = r.first_failure
    if fail is None:
        return None
    lines = fail.message.splitlines() or ["(no message)"]
    if len(lines) > MESSAGE_LINES:
        lines = lines[:MESSAGE_LINES] + [f"... ({len(lines) - MESSAGE_LINES} more lines)"]
    body = [Text.from_markup(f"[bold]first failing test:[/] {escape(fail.name)}"
                             + (f"  [dim]({escape(fail.where)})[/]" if fail.where else ""))]
    body.append(Text("\n".join(lines)))
    if r.note and r.status == FAILED and r.note not in fail.message:
        body.append(Text(r.note, style="red"))
    if r.step.hints:  # the hint itself comes on request, one level at a time
        body.append(Text.from_markup(f"[bold yellow]hint:[/] {escape(how_to_ask(r.step, used or {}))}"))
    return Panel(Group(*body), title=f"step {r.step.number}: {r.step.title} — {r.status}", title_align="left",
                 border_style=STYLE[r.status].replace("bold ", "") if r.status != NOT_STARTED else "white")


def kata_errors(results: list[StepResult]) -> Panel | None:
    """The tests the kata could not grade (no stored answer for their input), if any: said to
    be the kata's error, so nobody goes looking for a bug in correct code."""
    rows = [(r, t) for r in results for t in r.kata_errors]
    if not rows:
        return None
    body = [Text("Not your code: the kata has no stored reference answer for these tests' inputs (its recorded "
                 "answers are out of date or incomplete). They are left out of your score; tell your instructor.")]
    for r, t in rows[:5]:
        body.append(Text.from_markup(f"[bold]step {escape(r.step.number)}:[/] {escape(t.name)}"))
    if len(rows) > 5:
        body.append(Text(f"... and {len(rows) - 5} more"))
    return Panel(Group(*body), title="the kata's error", title_align="left", border_style="magenta")


def progress(results: list[StepResult], scoped: bool = False) -> Table:
    """The progress bar and its counts; `scoped` (`--step N`) says they cover those steps only."""
    score, top, bscore, btop = totals(results)
    core = [r for r in results if r.counts_toward_max]
    bonus = [r for r in results if r.step.bonus]
    done = sum(r.status == PASSED for r in core)
    bdone = sum(r.status == PASSED for r in bonus)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(width=24)
    grid.add_column(no_wrap=True)
    label = "graded" if scoped else "progress"
    if core or not bonus:
        extra = f" · bonus +{_fmt(bscore)}/{_fmt(btop)}" if bonus else ""
        grid.add_row(label, ProgressBar(total=max(top, 1), completed=score, width=24),
                     f"{done}/{len(core)} steps · {_fmt(score)}/{_fmt(top)} points{extra}")
    else:  # only bonus steps graded: count those, not an empty main course
        grid.add_row(label, ProgressBar(total=max(btop, 1), completed=bscore, width=24),
                     f"bonus {bdone}/{len(bonus)} steps · +{_fmt(bscore)}/{_fmt(btop)} points")
    return grid


def render(results: list[StepResult], solution: str, root: Path, console: Console | None = None,
           manifest: list[Step] | None = None, scoped: bool = False, on_record: Collection[str] = (),
           stale: Collection[str] = ()) -> None:
    """The table, the first failure, progress and what next. `scoped`: `--step` chose
    `results`; the summary and the next line speak of them only (`on_record`: `next_line`)."""
    console = console or Console()
    used = load_used(root)
    console.print(table(results, solution, root, used))
    panel = details(results, used, scoped)
    if panel is not None:
        console.print(panel)
    errors = kata_errors(results)
    if errors is not None:
        console.print(errors)
    console.print(progress(results, scoped))
    if scoped:
        names = ", ".join(r.step.number for r in results)
        console.print(Text(f"(only step{'s' if len(results) > 1 else ''} {names} graded: `nox -s check` grades every step)",
                           style="dim"))
    console.print(Text(next_line(results, root, solution, manifest, scoped, on_record, stale), style="bold"))
