"""The hints of grader/steps.toml agree with the reference (issue 12).

A hint may talk in prose, but code it names goes in backticks, and every backticked
span must fit the reference module of its step:
- a name (`lr_at`, `self.qkv`, `F.cross_entropy`, `model.named_modules()`) occurs as a
  whole word in the reference's *code* (comments and docstrings removed), or resolves
  from the module's globals, torch or transformers;
- any other fragment (`labels[:, 1:]`, `x = x + self.attn(self.ln_1(x))`) occurs
  verbatim (whitespace aside) in that code: a fragment the reference deliberately does
  not use (`logits[:, :-1]`, only in a comment saying why not) is flagged;
- `nox -s NAME` names a session of the noxfile; `a/b.md` names a file of the kata.
Code outside backticks (snake_case names, dotted names, subscripts) is flagged too,
so a hint cannot dodge the check by leaving its code unquoted. This would have caught
both contradictions of issue 12 (step 4's `logits[:, :-1]`, step 8's "log every
log_interval steps"); the last tests below show it does.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import io
import re
import sys
import tokenize
from functools import lru_cache
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
MAIN_STEPS = ("step1", "step2", "step3", "step4", "step5", "step6", "step7", "step8", "step8_lab")

SPAN = re.compile(r"`([^`]+)`")
NAME = re.compile(r"^@?[A-Za-z_][\w.]*(\(\))?$")
PATH = re.compile(r"^[\w./-]+/[\w.-]+\.\w+$")
# Code a hint left outside backticks: snake_case names, dotted names, subscripts.
UNQUOTED = (
    re.compile(r"\b[A-Za-z]\w*_\w+\b"),
    re.compile(r"\b(?!e\.g\b|i\.e\b)[A-Za-z_]\w*\.[A-Za-z_]\w*"),
    re.compile(r"\b[A-Za-z_]\w*\[[^\]]*\]"),
)


def _steps() -> dict[str, dict]:
    data = tomllib.loads((ROOT / "grader" / "steps.toml").read_text(encoding="utf-8"))
    return {t["id"]: t for t in data["step"]}


@lru_cache(maxsize=None)
def code_of(module: str) -> str:
    """The reference module's source with docstrings and comments blanked out."""
    src = (ROOT / "reference" / f"{module}.py").read_text(encoding="utf-8")
    lines = src.splitlines(keepends=True)
    for node in ast.walk(ast.parse(src)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            for i in range(body[0].lineno - 1, body[0].end_lineno):
                lines[i] = "\n"
    out = []
    for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
        if tok.type == tokenize.COMMENT:
            continue
        out.append(tok.string)
    return " ".join(out)


def _resolves(name: str, module: str) -> bool:
    """`a.b.c` is an attribute path from the module's globals, builtins, torch or transformers."""
    parts = name.split(".")
    mod = importlib.import_module(f"reference.{module}")
    roots = [vars(mod), vars(builtins)]
    for lib in ("torch", "transformers"):
        roots.append({lib: importlib.import_module(lib)})
    for scope in roots:
        if parts[0] in scope:
            obj = scope[parts[0]]
            try:
                for p in parts[1:]:
                    obj = getattr(obj, p)
            except AttributeError:
                continue
            return True
    return False


def check_span(span: str, module: str) -> str | None:
    """None when the span fits the reference module, else why not."""
    code = code_of(module)
    if span.startswith("nox -s "):
        session = span.split()[2]
        noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
        return None if re.search(rf"^def {re.escape(session)}\(", noxfile, re.M) else f"no nox session {session!r}"
    if PATH.match(span):
        return None if (ROOT / span).exists() else f"no file {span} in the kata"
    if NAME.match(span) and not span.startswith("."):
        name = span.lstrip("@").removesuffix("()")
        dotted = r"\s*\.\s*".join(re.escape(p) for p in name.split("."))
        if re.search(rf"(?<![\w.]){dotted}(?!\w)", code) or _resolves(name, module):
            return None
        return (f"`{span}` is neither in reference/{module}.py's code nor a torch/transformers name: "
                f"the reference does not use it")
    flat = lambda s: re.sub(r"\s+", "", s)  # noqa: E731
    if flat(span) in flat(code):
        return None
    return (f"`{span}` does not occur in reference/{module}.py's code (comments and docstrings "
            f"do not count): the reference does not do this, so the hint contradicts it")


def problems(hint: str, module: str) -> list[str]:
    """Everything wrong with one hint, as sentences."""
    found = [why for span in SPAN.findall(hint) if (why := check_span(span, module))]
    prose = SPAN.sub(" ", hint)
    for pattern in UNQUOTED:
        for m in pattern.finditer(prose):
            found.append(f"code outside backticks: {m.group(0)!r} (quote it so it can be checked)")
    return found


# --------------------------------------------------------------------------- the hints


@pytest.mark.parametrize("step_id", MAIN_STEPS)
def test_every_main_step_has_at_least_two_distinct_hints(step_id: str) -> None:
    table = _steps()[step_id]
    hints = table.get("hints")
    assert isinstance(hints, list) and len(hints) >= 2, (
        f"grader/steps.toml [[step]] {step_id}: expected `hints = [...]` with at least 2 strings "
        f"(concept -> API -> nearly the code), got {hints!r}"
    )
    assert all(isinstance(h, str) and h.strip() for h in hints), f"{step_id}: every hint must be a non-empty string"
    assert len(set(hints)) == len(hints), f"{step_id}: two hints are the same"
    assert "hint" not in table, f"{step_id}: `hints` replaces the single `hint` key; remove it"


def _all_hints() -> list[tuple[str, int, str, str]]:
    out = []
    for sid, table in _steps().items():
        for i, h in enumerate(table.get("hints", []), 1):
            out.append((sid, i, table["module"], h))
    return out


@pytest.mark.parametrize("step_id,number,module,hint", _all_hints(),
                         ids=[f"{s}-hint{i}" for s, i, _, _ in _all_hints()])
def test_hint_code_matches_the_reference(step_id: str, number: int, module: str, hint: str) -> None:
    found = problems(hint, module)
    assert not found, (
        f"grader/steps.toml {step_id} hint {number} disagrees with reference/{module}.py:\n  "
        + "\n  ".join(found) + f"\nthe hint: {hint}"
    )


def test_each_function_a_step_opens_is_named_by_one_of_its_hints() -> None:
    missing = []
    for sid in MAIN_STEPS:
        table = _steps()[sid]
        spans = " ".join(SPAN.findall(" ".join(table["hints"])))
        for fn in (n.strip() for n in table["open"].split(":", 1)[1].split(",")):
            # `Class.forward` by its class name; anything else by its own name.
            word = fn.split(".")[0] if fn.endswith(".forward") else fn.split(".")[-1]
            if not re.search(rf"\b{re.escape(word)}\b", spans):
                missing.append(f"{sid}: {fn}")
    assert not missing, ("no hint names these functions in backticks (cover every function a step "
                         "opens): " + ", ".join(missing))


# ------------------------------------------------------------ the handout hides them


def test_a_built_handout_holds_the_hints_encoded_and_nox_s_hint_still_shows_them(tmp_path) -> None:
    """A learner reading the handout's files (steps.toml for orientation) meets no hint by
    accident: they sit in grader/hints.toml, base64-encoded; `hint` decodes them there."""
    import os
    import subprocess

    from grader import handout
    from grader.manifest import HINTS_HEADER, load_manifest

    folder, _ = handout.build(ROOT, tmp_path / "handout", make_zip=False)
    steps = load_manifest(ROOT / "grader" / "steps.toml")
    # Pieces of each hint between quotes and backslashes, as TOML or Markdown would hold them.
    pieces = {(s.id, p) for s in steps for h in s.hints for p in re.split(r'["\\]', h) if len(p) >= 30}
    assert {sid for sid, _ in pieces} == {s.id for s in steps}, "every step's hints should be checkable"
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in (".py", ".toml", ".md", ".txt", ".json", ".cfg", ""):
            text = f.read_text(encoding="utf-8", errors="replace")
            found = [(sid, p) for sid, p in pieces if p in text]
            assert not found, f"{f.relative_to(folder)} holds hint text in plain form: {found[:2]}"
    assert (folder / "grader" / "hints.toml").read_text().startswith(HINTS_HEADER + "\n")
    assert load_manifest(folder / "grader" / "steps.toml") == steps, "the handout's manifest reads the same hints"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("KATA_", "PYTEST_"))}
    env["PYTHONPATH"] = str(folder)  # the handout's own grader
    three = next(s for s in steps if s.id == "step3")
    p = subprocess.run([sys.executable, "-m", "grader.hints", "3", "--all"], cwd=folder, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    for i, h in enumerate(three.hints, 1):
        assert f"hint {i}/{len(three.hints)}: {h}" in p.stdout, p.stdout


def test_strip_hints_takes_out_every_form_of_the_key_and_nothing_else() -> None:
    from grader.handout import strip_hints

    text = ('[[step]]\nid = "a"\nhint = "one ] line"\nopen = "x"\n\n[[step]]\nid = "b"\nhints = [\n'
            '  "with \\"quotes\\" and ]",\n  "two",\n]\nbonus = true\n')
    assert strip_hints(text) == '[[step]]\nid = "a"\nopen = "x"\n\n[[step]]\nid = "b"\nbonus = true\n'


# ------------------------------------------------------ the checker catches issue 12's


OLD_STEP4 = ("The logits at position t predict token t+1: compare logits[:, :-1] with labels[:, 1:], pass "
             "ignore_index to cross_entropy, and average over the positions that count.")
OLD_STEP8 = ("For each step: set the learning rate from lr_at, take the next batch, train_step, log every "
             "log_interval steps, evaluate every eval_interval, checkpoint every checkpoint_interval.")


def test_the_checker_flags_the_old_step4_hint() -> None:
    assert any("logits[" in p for p in problems(OLD_STEP4, "step4_loss"))
    quoted = "compare `logits[:, :-1]` with `labels[:, 1:]`, pass `ignore_index` to `F.cross_entropy`"
    found = problems(quoted, "step4_loss")
    assert len(found) == 1 and "logits[:, :-1]" in found[0], found  # the slice the reference avoids, nothing else


def test_the_checker_flags_the_old_step8_hint() -> None:
    assert any("log_interval" in p for p in problems(OLD_STEP8, "step8_pretrain"))
    quoted = ("set the learning rate from `lr_at`, `train_step`, log every `log_interval` steps, "
              "evaluate every `cfg.eval_interval`, checkpoint every `cfg.checkpoint_interval`")
    found = problems(quoted, "step8_pretrain")
    assert len(found) == 1 and "log_interval" in found[0], found  # the loop never reads log_interval


def test_the_checker_ignores_comments_and_docstrings() -> None:
    code = code_of("step4_loss")
    assert "logits[:, :-1]" not in code and "Mean cross-entropy" not in code
    assert check_span("F.pad", "step4_loss") is None
    assert check_span("torch.topk", "step6_sampler") is None
    assert check_span("nox -s nosuchsession", "step8_pretrain") is not None
