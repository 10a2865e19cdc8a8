"""What the learner sees: the table, the first failure with its hint, progress, what next."""
from __future__ import annotations

import ast
from pathlib import Path

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .runner import FAILED, NEEDS_GPU, NO_TESTS, NOT_STARTED, PASSED, WAITING, StepResult

STYLE = {PASSED: "bold green", FAILED: "bold red", NOT_STARTED: "dim", WAITING: "yellow",
         NEEDS_GPU: "cyan", NO_TESTS: "dim"}
ICON = {PASSED: "✔", FAILED: "✘", NOT_STARTED: "·", WAITING: "…", NEEDS_GPU: "⚡", NO_TESTS: "-"}
MESSAGE_LINES = 14


def _fmt(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def totals(results: list[StepResult]) -> tuple[float, float, float, float]:
    """(score, max_score, bonus score, bonus max) over the graded rows."""
    core = [r for r in results if r.counts_toward_max]
    bonus = [r for r in results if r.step.bonus]
    return (sum(r.score for r in core), sum(r.step.points for r in core),
            sum(r.score for r in bonus), sum(r.step.points for r in bonus))


def status_text(r: StepResult) -> Text:
    label = r.note if r.status in (WAITING, NEEDS_GPU) else r.status
    return Text(f"{ICON[r.status]} {label}", style=STYLE[r.status])


def table(results: list[StepResult], solution: str) -> Table:
    t = Table(title=f"tinygpt-kata — grading {solution}/", title_justify="left", expand=False)
    t.add_column("step", justify="right", no_wrap=True)
    t.add_column("title")
    t.add_column("status")
    t.add_column("tests", justify="right", no_wrap=True)
    t.add_column("points", justify="right", no_wrap=True)
    for r in results:
        tests = f"{r.passed}/{r.total}" if r.status not in (WAITING, NEEDS_GPU, NO_TESTS) else "—"
        points = f"{_fmt(r.score)}/{_fmt(r.step.points)}"
        if r.status == NEEDS_GPU:
            points = f"—/{_fmt(r.step.points)}"
        elif r.step.bonus:
            points = f"+{points}"
        t.add_row(r.step.number, r.step.title, status_text(r), tests, points,
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


def next_line(results: list[StepResult], root: Path, solution: str = "exercises") -> str:
    text = _next_line(results, root)
    return text.replace("exercises/", f"{solution}/") if solution != "exercises" else text


def _next_line(results: list[StepResult], root: Path) -> str:
    r = first_unfinished(results)
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
    fn = _function_at(root, fail.where) if fail and fail.where else ""
    if r.status == NOT_STARTED or not fn:
        return f"next: open {r.step.learner_file} and implement {r.step.functions or 'the step'}"
    return f"next: open {fail.where.rsplit(':', 1)[0]} and fix {fn} (line {fail.where.rsplit(':', 1)[1]})"


def details(results: list[StepResult]) -> Panel | None:
    r = first_unfinished(results)
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
    body.append(Text.from_markup(f"[bold yellow]hint:[/] {escape(r.step.hint)}"))
    return Panel(Group(*body), title=f"step {r.step.number}: {r.step.title} — {r.status}", title_align="left",
                 border_style=STYLE[r.status].replace("bold ", "") if r.status != NOT_STARTED else "white")


def progress(results: list[StepResult]) -> Table:
    score, top, bscore, btop = totals(results)
    core = [r for r in results if r.counts_toward_max]
    done = sum(r.status == PASSED for r in core)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(width=30)
    grid.add_column(no_wrap=True)
    extra = f" · bonus +{_fmt(bscore)}/{_fmt(btop)}" if btop else ""
    grid.add_row("progress", ProgressBar(total=max(top, 1), completed=score, width=30),
                 f"{done}/{len(core)} steps · {_fmt(score)}/{_fmt(top)} points{extra}")
    return grid


def render(results: list[StepResult], solution: str, root: Path, console: Console | None = None) -> None:
    console = console or Console()
    console.print(table(results, solution))
    panel = details(results)
    if panel is not None:
        console.print(panel)
    console.print(progress(results))
    console.print(Text(next_line(results, root, solution), style="bold"))
