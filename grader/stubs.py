"""`nox -s stubs`: write the learner's stubs, exercises/*.py, from the one source, reference/*.py.

Inside every function a learner writes, the reference marks the solution with two
comment lines at the body's indentation:

    def lr_at(step, ...) -> float:
        \"\"\"The contract the learner reads.\"\"\"
        # BEGIN SOLUTION
        ...the reference's code...
        # END SOLUTION

The generator copies the module verbatim (docstrings, imports, signatures, comments,
given scaffolding) and replaces each marked region by

    raise NotImplementedError(
        "lr_at is not written yet (step 5): its docstring states what it must do; "
        "`nox -s check -- --step 5` grades it"
    )

Rules (each broken one is an error naming the file and line):
- markers come in BEGIN/END pairs, not nested, at the indentation of the body they sit in;
- a region covers the function's whole body after its docstring (comments may come
  before BEGIN): `grader.runner.untouched` calls a step "not started" while its functions
  are bare `raise NotImplementedError` stubs, so a half-given body would never count as
  untouched; given scaffolding lives in given functions instead;
- the marked functions of a module are exactly the functions the manifest's `open`
  lists for that module (the grader and the handout's leak check read `open`).

A reference module with no marker at all is not converted yet: it is skipped (its
exercise file is left alone) and listed; `--strict` makes that an error.

    python -m grader.stubs            # write exercises/*.py
    python -m grader.stubs --check    # exit 1 listing the exercise files that differ
"""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"


class MarkerError(ValueError):
    """The markers of a reference module are unbalanced or misplaced."""


@dataclass(frozen=True)
class Region:
    qualname: str
    begin: int  # 0-based line index of the BEGIN marker
    end: int  # 0-based line index of the END marker
    indent: str


def _functions(tree: ast.AST) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((prefix + child.name, child))
                visit(child, prefix + child.name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return out


def _body_span(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int, int] | None:
    """(first line, last line, column) of the body after the docstring, 1-based; None if empty."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if not body:
        return None
    first = min([body[0].lineno] + [d.lineno for d in getattr(body[0], "decorator_list", [])])
    return first, body[-1].end_lineno, body[0].col_offset


def find_regions(source: str, where: str = "<source>") -> list[Region]:
    """Every marked region of a module, checked against the rules in this module's docstring."""
    lines = source.splitlines()
    tree = ast.parse(source, filename=where)
    funcs = _functions(tree)
    regions: list[Region] = []
    open_at: int | None = None
    for i, line in enumerate(lines):
        text = line.strip()
        if text not in (BEGIN, END):
            if BEGIN in text or END in text:
                raise MarkerError(f"{where}:{i + 1}: a solution marker must be a line of its own: {text!r}")
            continue
        if text == BEGIN:
            if open_at is not None:
                raise MarkerError(f"{where}:{i + 1}: `{BEGIN}` inside the region opened at line {open_at + 1}; "
                                  f"close it with `{END}` first (regions do not nest)")
            open_at = i
            continue
        if open_at is None:
            raise MarkerError(f"{where}:{i + 1}: `{END}` without a `{BEGIN}` before it")
        indent = lines[open_at][: len(lines[open_at]) - len(lines[open_at].lstrip())]
        if line[: len(line) - len(line.lstrip())] != indent:
            raise MarkerError(f"{where}:{i + 1}: `{END}` is not indented like its `{BEGIN}` at line {open_at + 1}")
        # The innermost function whose body holds the region.
        holders = [(q, f) for q, f in funcs if f.lineno < open_at + 1 <= f.end_lineno]
        if not holders:
            raise MarkerError(f"{where}:{open_at + 1}: a solution region outside any function body")
        qualname, fn = max(holders, key=lambda qf: qf[1].lineno)
        span = _body_span(fn)
        if span is None or not (open_at + 1 < span[0] and span[1] < i + 1):
            raise MarkerError(
                f"{where}:{open_at + 1}: the region in {qualname} must hold its whole body after the "
                f"docstring (an empty region, or code outside it, would not be a bare stub the grader "
                f"can recognise); move given code into a given function"
            )
        if len(indent) != span[2]:
            raise MarkerError(f"{where}:{open_at + 1}: the markers in {qualname} must sit at its body's "
                              f"indentation ({span[2]} spaces), not {len(indent)}")
        if any(r.qualname == qualname for r in regions):
            raise MarkerError(f"{where}:{open_at + 1}: {qualname} has a second solution region")
        regions.append(Region(qualname, open_at, i, indent))
        open_at = None
    if open_at is not None:
        raise MarkerError(f"{where}:{open_at + 1}: `{BEGIN}` is never closed: add `{END}` after the solution")
    return regions


def stub_lines(qualname: str, step, indent: str) -> list[str]:
    """The `raise NotImplementedError(...)` that replaces a region."""
    digits = "".join(ch for ch in step.id if ch.isdigit())
    label, flag = (f"bonus {digits}", step.id) if step.bonus else (f"step {digits}", digits)
    return [
        f"{indent}raise NotImplementedError(",
        f'{indent}    "{qualname} is not written yet ({label}): its docstring states what it must do; "',
        f'{indent}    "`nox -s check -- --step {flag}` grades it"',
        f"{indent})",
    ]


def render(source: str, regions: list[Region], step) -> str:
    lines = source.splitlines()
    out: list[str] = []
    pos = 0
    for r in regions:
        out += lines[pos: r.begin]
        out += stub_lines(r.qualname, step, r.indent)
        pos = r.end + 1
    out += lines[pos:]
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def _steps_by_module(root: Path) -> dict[str, list]:
    from .manifest import load_manifest

    by: dict[str, list] = {}
    for s in load_manifest(root / "grader" / "steps.toml"):
        by.setdefault(s.module, []).append(s)
    return by


def generate(root: Path = ROOT, strict: bool = False) -> tuple[dict[Path, str], list[Path]]:
    """({exercise path: its generated text}, [reference modules skipped: no markers])."""
    steps = _steps_by_module(root)
    out: dict[Path, str] = {}
    skipped: list[Path] = []
    for ref in sorted((root / "reference").glob("*.py")):
        if ref.name == "__init__.py":
            continue
        where = str(ref.relative_to(root))
        source = ref.read_text(encoding="utf-8")
        regions = find_regions(source, where)
        if not regions:
            if strict:
                raise MarkerError(f"{where}: no `{BEGIN}` region: mark the body of every function a learner writes")
            skipped.append(ref)
            continue
        if ref.stem not in steps:
            raise MarkerError(f"{where}: has solution regions but no [[step]] in grader/steps.toml uses "
                              f"module = {ref.stem!r}")
        wanted = {n.strip() for s in steps[ref.stem] for n in s.functions.split(",") if n.strip()}
        marked = {r.qualname for r in regions}
        if wanted and marked != wanted:
            missing, extra = sorted(wanted - marked), sorted(marked - wanted)
            raise MarkerError(
                f"{where}: the marked functions must be the ones grader/steps.toml's `open` names"
                + (f"; not marked: {', '.join(missing)}" if missing else "")
                + (f"; marked but not in `open`: {', '.join(extra)}" if extra else "")
            )
        out[root / "exercises" / ref.name] = render(source, regions, steps[ref.stem][0])
    return out, skipped


def drifted(root: Path = ROOT, strict: bool = False) -> list[Path]:
    """Exercise files that differ from what the generator would write."""
    generated, _ = generate(root, strict)
    return [p for p, text in generated.items()
            if not p.exists() or p.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader.stubs", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 listing exercise files that differ")
    p.add_argument("--strict", action="store_true", help="a reference module without markers is an error")
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    root = args.root.resolve()
    try:
        generated, skipped = generate(root, args.strict)
    except (MarkerError, SyntaxError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for ref in skipped:
        print(f"skipped {ref.relative_to(root)}: no solution markers yet", file=sys.stderr)
    if args.check:
        bad = [p for p, text in generated.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
        for p in bad:
            print(f"{p.relative_to(root)} differs from its reference: run `nox -s stubs` (or python -m grader.stubs)")
        if not bad:
            print(f"{len(generated)} exercise files match their reference")
        return 1 if bad else 0
    for path, text in generated.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
