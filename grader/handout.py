"""`nox -s handout`: the learner handout, a folder and a zip without the reference.

It holds exercises/ (the stubs), the graded tests with their stored reference answers
(tests/_snapshots/), the grader and its manifest, kata/ (scaffolding), the noxfile,
pyproject.toml and a README.md of its own. It leaves out reference/, the mutants of the
reference, benchmarks/, docs/ and every test that is not a step's (the kata's own
infrastructure tests). Before writing the zip it checks that no file of the handout
contains a line of reference source that the stubs do not also have, and refuses to
build otherwise.

The hints leave the handout's grader/steps.toml for grader/hints.toml, base64-encoded
(`move_hints`): a learner who reads the manifest to find their way sees no spoiler;
`nox -s hint -- N` decodes them one at a time.

The handout's README.md is `grader/HANDOUT_README.md` with `{{steps}}` replaced by a
table of the manifest's steps and `{{readme: Heading}}` by that `## Heading` section of
the kata's README.md: it names only what the handout has and commands that run there
(tests/test_infra_handout_readme.py runs them).

    python -m grader.handout [--out dist/handout]
"""
from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_FILES = ("noxfile.py", "pyproject.toml", "README.md", ".gitignore", "LICENSE", "conftest.py")
TOP_DIRS = ("exercises", "grader", "kata")
SKIP_NAMES = {"__pycache__", ".pytest_cache", ".hypothesis", "mutants"}
README_TEMPLATE = Path("grader") / "HANDOUT_README.md"  # becomes the handout's README.md, not a file of its own
GRADED_TEST = re.compile(r"test_(step|bonus)\d+_.*\.py$")
MIN_LINE = 16  # shorter lines ("return x", "x = x + y") are not distinctive source
# A file holding half of a learner function's distinctive reference lines holds its
# solution; a few shared idioms (`was_training = model.training`) are not a leak.
LEAK_SHARE = 0.5


def _wanted_test(path: Path, tests: Path) -> bool:
    rel = path.relative_to(tests)
    if any(part in SKIP_NAMES for part in rel.parts):
        return False
    if rel.parts[0] == "_snapshots":
        return path.suffix == ".pt"
    if len(rel.parts) > 1:  # helper packages are fine; other folders' test files are not graded
        return not path.name.startswith("test_")
    if path.name.startswith("test_"):
        return bool(GRADED_TEST.match(path.name))
    return path.suffix in (".py", ".txt", ".json", ".toml")


def files(root: Path) -> list[Path]:
    """What goes into the handout, as paths relative to `root`."""
    out = [Path(f) for f in TOP_FILES if (root / f).is_file()]
    for d in TOP_DIRS:
        for p in sorted((root / d).rglob("*")):
            rel = p.relative_to(root)
            if p.is_file() and not any(part in SKIP_NAMES for part in rel.parts) and p.suffix != ".pyc" \
                    and rel != README_TEMPLATE:
                out.append(rel)
    tests = root / "tests"
    out += [p.relative_to(root) for p in sorted(tests.rglob("*")) if p.is_file() and _wanted_test(p, tests)]
    return out


def steps_table(root: Path) -> str:
    """The manifest's steps as a Markdown table: step, file, what you write, points."""
    from .manifest import load_manifest

    rows = ["| step | file | what you write | points |", "|---|---|---|---|"]
    for step in load_manifest(root / "grader" / "steps.toml"):
        what = step.title + (f": `{'`, `'.join(f.strip() for f in step.functions.split(','))}`" if step.functions else "")
        points = f"{step.points:g}" + (" (bonus)" if step.bonus else "")
        rows.append(f"| {step.number} | `{step.learner_file}` | {what} | {points} |")
    return "\n".join(rows)


def readme_section(readme: str, heading: str) -> str:
    """The `## heading` section of a Markdown text, up to the next `## ` heading."""
    lines = readme.splitlines()
    try:
        start = lines.index(f"## {heading}")
    except ValueError:
        raise ValueError(f"README.md has no section '## {heading}', which {README_TEMPLATE} includes") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).rstrip()


def handout_readme(root: Path = ROOT) -> str:
    """The handout's README.md: the template with the steps table and README sections filled in."""
    text = (root / README_TEMPLATE).read_text(encoding="utf-8")
    text = text.replace("{{steps}}", steps_table(root))
    readme = (root / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"\{\{readme: (.+?)\}\}", lambda m: readme_section(readme, m.group(1).strip()), text)
    if "{{" in text:
        raise ValueError(f"{README_TEMPLATE} has a placeholder other than {{{{steps}}}} or {{{{readme: Heading}}}}")
    return text


HINTS_NOTE = ("# This handout keeps the hints in grader/hints.toml, encoded so that reading this file\n"
              "# spoils nothing: `nox -s hint -- N` shows them one at a time.\n")
_HINT_KEY = re.compile(r"\s*hints?\s*=")


def strip_hints(text: str) -> str:
    """A steps.toml's text without its `hints = [...]` (or `hint = "..."`) entries."""
    from .manifest import tomllib

    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _HINT_KEY.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        for j in range(i, len(lines)):  # the entry ends at the first line where it parses
            try:
                tomllib.loads("".join(lines[i:j + 1]))
                break
            except tomllib.TOMLDecodeError:
                continue
        else:
            raise ValueError(f"grader/steps.toml line {i + 1}: a hints entry that never ends")
        i = j + 1
    return "".join(out)


def move_hints(folder: Path) -> None:
    """Move the hints of `folder`'s grader/steps.toml into grader/hints.toml, encoded;
    the manifest must load exactly as before (or nothing is built)."""
    from .manifest import HINTS_FILE, encode_hints, load_manifest

    manifest = folder / "grader" / "steps.toml"
    before = load_manifest(manifest)
    text = strip_hints(manifest.read_text(encoding="utf-8"))
    manifest.write_text(HINTS_NOTE + text, encoding="utf-8")
    manifest.with_name(HINTS_FILE).write_text(encode_hints(before), encoding="utf-8")
    after = load_manifest(manifest)
    if after != before:  # Step equality covers the hints
        raise RuntimeError("moving the hints to grader/hints.toml changed the manifest; check grader/steps.toml")


def _bodies(path: Path) -> dict[str, tuple[int, list[str]]]:
    """`Class.method` / `function` -> (first line, body lines without the docstring)."""
    src = path.read_text(encoding="utf-8")
    lines = src.splitlines()
    out: dict[str, tuple[int, list[str]]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = child.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]
                if body:
                    out[prefix + child.name] = (body[0].lineno, lines[body[0].lineno - 1: child.end_lineno])
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(ast.parse(src), "")
    return out


def secrets(root: Path) -> dict[str, set[str]]:
    """For each function a learner writes (the manifest's `open` names), the distinctive
    lines of its reference body: lines the stubs also contain are not secrets."""
    from .manifest import load_manifest

    shared: set[str] = set()
    for p in (root / "exercises").glob("*.py"):
        shared |= {line.strip() for line in p.read_text(encoding="utf-8").splitlines()}
    out: dict[str, set[str]] = {}
    for step in load_manifest(root / "grader" / "steps.toml"):
        ref = root / "reference" / f"{step.module}.py"
        if not ref.exists():
            continue
        bodies = _bodies(ref)
        names = [n.strip() for n in step.functions.split(",") if n.strip()] or list(bodies)
        for name in names:
            if name in bodies:
                first, body = bodies[name]
                lines = {ln.strip() for ln in body if len(ln.strip()) >= MIN_LINE and not ln.strip().startswith("#")}
                lines -= shared
                if lines:
                    out[f"reference/{step.module}.py:{name}"] = lines
    return out


def leaks(folder: Path, secret: dict[str, set[str]], share: float = LEAK_SHARE) -> list[str]:
    """`handout-file <- reference function (k of n lines)` wherever a handout file holds
    at least `share` of a learner function's distinctive reference lines."""
    found = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.suffix not in (".py", ".md", ".toml", ".txt", ".json", ".cfg", ".ini", ".sh", ""):
            continue
        try:
            have = {line.strip() for line in p.read_text(encoding="utf-8").splitlines()}
        except (UnicodeDecodeError, OSError):
            continue
        for where, lines in secret.items():
            k = len(lines & have)
            if k and k >= share * len(lines):
                found.append(f"{p.relative_to(folder)} <- {where} ({k} of {len(lines)} lines)")
    return found


def build(root: Path = ROOT, out: Path | None = None, make_zip: bool = True) -> tuple[Path, Path | None]:
    """Copy the handout to `out` (default `<root>/dist/handout`) and zip it next to it."""
    root = root.resolve()
    out = (out or root / "dist" / "handout").resolve()
    if out == root or root in out.parents and out.parent == root:
        raise ValueError(f"--out {out} would overwrite the kata itself; pick a new folder such as dist/handout")
    readme = handout_readme(root) if (root / README_TEMPLATE).is_file() else None  # fails before anything is written
    if out.exists():
        shutil.rmtree(out)
    for rel in files(root):
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest)
    if readme is not None:
        (out / "README.md").write_text(readme, encoding="utf-8")
    try:
        move_hints(out)
    except (RuntimeError, ValueError):
        shutil.rmtree(out)
        raise
    if (root / "reference").is_dir():
        found = leaks(out, secrets(root))
        if found:
            shutil.rmtree(out)
            raise RuntimeError("the handout would contain reference source:\n  " + "\n  ".join(found[:20]))
    archive = Path(shutil.make_archive(str(out), "zip", out.parent, out.name)) if make_zip else None
    return out, archive


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader.handout", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="folder to write (default dist/handout); a .zip goes next to it")
    p.add_argument("--root", type=Path, default=ROOT)
    a = p.parse_args(argv)
    try:
        folder, archive = build(a.root, a.out)
    except (RuntimeError, ValueError) as e:
        print(f"handout not built: {e}", file=sys.stderr)
        return 1
    n = sum(1 for f in folder.rglob("*") if f.is_file())
    print(f"handout: {folder} ({n} files)\nzip:     {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    print(f"its README: {folder / 'README.md'}\ngrade it there with: nox -s check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
