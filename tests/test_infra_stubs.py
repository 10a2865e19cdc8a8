"""`python -m grader.stubs`: exercises/ is generated from reference/ and stays so (issue 12).

Only reference modules that carry solution markers are compared, so modules still
being converted (a later merge) do not fail this file; `--strict` is what requires all.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from grader import stubs
from grader.handout import leaks, secrets
from grader.manifest import load_manifest
from grader.runner import untouched

ROOT = Path(__file__).resolve().parents[1]


def _marked() -> dict[Path, str]:
    generated, _ = stubs.generate(ROOT)
    return generated


def test_exercises_equal_the_generated_stubs() -> None:
    generated = _marked()
    assert generated, "no reference module carries `# BEGIN SOLUTION` markers"
    drifted = [str(p.relative_to(ROOT)) for p, text in generated.items()
               if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert not drifted, (
        f"{', '.join(drifted)} differ from what `python -m grader.stubs` writes from reference/: edit the "
        f"docstring or code in reference/ (the one source) and run `nox -s stubs`"
    )


def test_every_main_step_module_is_marked() -> None:
    names = {p.stem for p in _marked()}
    unmarked = [s.module for s in load_manifest(ROOT / "grader" / "steps.toml")
                if not s.bonus and s.module not in names]
    assert not unmarked, f"reference modules of steps 1-8 without solution markers: {unmarked}"


def _stub_raises(path: Path) -> list[tuple[str, str]]:
    """(qualname, message) of every bare `raise NotImplementedError(...)` stub in a generated file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                last = child.body[-1]
                if isinstance(last, ast.Raise) and isinstance(last.exc, ast.Call) \
                        and getattr(last.exc.func, "id", "") == "NotImplementedError":
                    code = compile(ast.Module(body=[last], type_ignores=[]), str(path), "exec")
                    with pytest.raises(NotImplementedError) as info:
                        exec(code, {})
                    out.append((prefix + child.name, str(info.value)))
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return out


def test_each_stub_raises_notimplementederror_naming_its_function_and_step() -> None:
    steps = {s.module: s for s in reversed(load_manifest(ROOT / "grader" / "steps.toml"))}
    for path in _marked():
        step = steps[path.stem]
        n = "".join(ch for ch in step.id if ch.isdigit())
        raised = _stub_raises(path)
        assert {q for q, _ in raised} == {f.strip() for f in step.functions.split(",")}, (
            f"{path.name}: the stubs are {[q for q, _ in raised]}, expected the manifest's open list {step.functions}"
        )
        for qualname, message in raised:
            assert message.startswith(f"{qualname} is not written yet (") and (
                f"(step {n})" in message or f"(bonus {n})" in message), (
                f"{path.name}: {qualname}'s stub says {message!r}; expected it to name {qualname} and its step"
            )
            assert re.search(rf"`nox -s check -- --step (bonus)?{n}` grades it", message), message


def test_calling_a_generated_stub_raises_with_the_message() -> None:
    from exercises import step5_train_loop

    with pytest.raises(NotImplementedError, match=r"^lr_at is not written yet \(step 5\).*--step 5"):
        step5_train_loop.lr_at(0, 1.0, 1, 2)


def test_the_grader_calls_generated_stubs_not_started_and_the_reference_started() -> None:
    marked = {p.stem for p in _marked()}
    for step in load_manifest(ROOT / "grader" / "steps.toml"):
        if step.module in marked:
            assert untouched(ROOT, "exercises", step), f"{step.id}: generated stubs should read as not started"
            assert not untouched(ROOT, "reference", step), f"{step.id}: the reference should read as started"


def test_the_handout_leak_check_finds_no_solution_in_the_stubs_or_the_hints() -> None:
    secret = secrets(ROOT)
    assert secret, "the leak check found no reference lines to protect"
    found = leaks(ROOT / "exercises", secret) + leaks(ROOT / "grader", secret)
    assert not found, f"reference solution lines in the handout: {found}"


# ------------------------------------------------------------------ marker errors

GOOD = '''
def f(x):
    """Doc."""
    # BEGIN SOLUTION
    y = x + 1
    return y
    # END SOLUTION


class A:
    def g(self):
        """Doc."""
        # why: a comment before the region is copied
        # BEGIN SOLUTION
        return 2
        # END SOLUTION
'''


def test_find_regions_names_functions_and_methods() -> None:
    regions = stubs.find_regions(GOOD, "m.py")
    assert [(r.qualname, r.indent) for r in regions] == [("f", "    "), ("A.g", "        ")]


@pytest.mark.parametrize("source,expected", [
    (GOOD.replace("    # END SOLUTION\n\n\nclass", "\n\nclass", 1), r"m\.py:13: `# BEGIN SOLUTION` inside the region opened at line 4"),
    (GOOD.replace("        # END SOLUTION\n", ""), r"m\.py:14: `# BEGIN SOLUTION` is never closed"),
    (GOOD.replace("    # BEGIN SOLUTION\n    y", "    y", 1), r"m\.py:6: `# END SOLUTION` without a `# BEGIN SOLUTION`"),
    (GOOD.replace("    # BEGIN SOLUTION\n    y = x + 1", "    y = x + 1\n    # BEGIN SOLUTION", 1),
     r"m\.py:5: the region in f must hold its whole body"),
    (GOOD.replace("    # END SOLUTION\n\n", "  # END SOLUTION\n\n", 1), r"m\.py:7: `# END SOLUTION` is not indented like"),
    ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", r"m\.py:1: a solution region outside any function body"),
    (GOOD.replace("    y = x + 1", "    y = x + 1  # BEGIN SOLUTION"), r"must be a line of its own"),
])
def test_unbalanced_or_misplaced_markers_are_a_clear_error(source: str, expected: str) -> None:
    with pytest.raises(stubs.MarkerError, match=expected):
        stubs.find_regions(source, "m.py")


def _kata(tmp_path: Path, source: str, open_: str = "f, A.g") -> Path:
    (tmp_path / "reference").mkdir()
    (tmp_path / "exercises").mkdir()
    (tmp_path / "grader").mkdir()
    (tmp_path / "reference" / "step1_m.py").write_text(source, encoding="utf-8")
    (tmp_path / "reference" / "bonus1_n.py").write_text("def h():\n    return 1\n", encoding="utf-8")
    (tmp_path / "grader" / "steps.toml").write_text(
        '[[step]]\nid = "step1"\nmodule = "step1_m"\ntitle = "t"\npoints = 1\n'
        f'open = "exercises/step1_m.py: {open_}"\nhints = ["a", "b"]\n', encoding="utf-8")
    return tmp_path


def test_check_lists_drifted_files_and_writing_fixes_them(tmp_path: Path, capsys) -> None:
    root = _kata(tmp_path, GOOD)
    assert stubs.main(["--check", "--root", str(root)]) == 1
    assert "exercises/step1_m.py differs" in capsys.readouterr().out
    assert stubs.main(["--root", str(root)]) == 0
    assert stubs.main(["--check", "--root", str(root)]) == 0
    text = (root / "exercises" / "step1_m.py").read_text()
    assert "return y" not in text and "# why: a comment before the region is copied" in text
    assert '"f is not written yet (step 1): its docstring states what it must do; "' in text
    assert not (root / "exercises" / "bonus1_n.py").exists(), "a module without markers is skipped, not written"
    assert stubs.main(["--check", "--strict", "--root", str(root)]) == 2
    assert "bonus1_n.py: no `# BEGIN SOLUTION` region" in capsys.readouterr().err


def test_marked_functions_must_be_the_manifests_open_list(tmp_path: Path, capsys) -> None:
    root = _kata(tmp_path, GOOD, open_="f, A.g, k")
    assert stubs.main(["--check", "--root", str(root)]) == 2
    assert "not marked: k" in capsys.readouterr().err
