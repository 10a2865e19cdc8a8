"""The grader grades what it should, however the learner's code misbehaves.

A fake kata in a temp folder (one tiny step per kind of misbehaviour) checks the
robustness rules fast; the real kata's handout checks zero marks for the stubs, full
marks for the reference's files, and no reference source in the handout.
"""
from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from grader import gradescope, handout, report
from grader.manifest import load_manifest
from grader.runner import FAILED, NEEDS_GPU, NOT_STARTED, PASSED, WAITING, grade, step_test_files

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------- a fake kata

# Each fake step: (learner module source, extra manifest keys). Its test checks f() == 42.
FAKE_STEPS: dict[str, tuple[str, str]] = {
    "step1": ("def f():\n    return 42\n", ""),
    "step2": ('def f():\n    """Return 42."""\n    raise NotImplementedError("f is not written yet (step 2): write it")\n', ""),
    "step3": ("def f(:\n    return 42\n", ""),
    "step4": ('raise RuntimeError("boom while importing")\n', ""),
    "step5": ("while True:\n    pass\n", "time_limit = 12"),
    "step6": ("import os\n\ndef f():\n    os._exit(3)\n", ""),
    "step7": ("import sys\n\ndef f():\n    sys.exit(0)\n", ""),
    "step8": ("def f():\n    block = bytearray(200 * 2**30)\n    return len(block)\n", ""),
    "step9": ('def f():\n    for _ in range(64):\n        print("x" * 2**20)\n    return 41\n', ""),
    "step10": ("import torch\n\ndef f():\n    torch.allclose = lambda *a, **k: True\n    return 42\n", ""),
    "step11": ("def f():\n    return 42\n", 'needs = ["step3"]'),
    "step12": ("def f():\n    return 42\n", "gpu = true"),
    "bonus1": ("def f():\n    return 42\n", "bonus = true"),
}

FAKE_TEST = '''
import importlib
import os
{imports}


def _f():
    return importlib.import_module(os.environ.get("KATA_SOLUTION", "exercises") + ".{module}").f


def test_{id}_returns_42():
    assert _f()() == 42, "f() should return 42"


def test_{id}_is_callable():
    assert callable(_f())
'''


def make_fake_kata(root: Path, steps: dict[str, tuple[str, str]] = FAKE_STEPS) -> Path:
    (root / "exercises").mkdir(parents=True)
    (root / "tests").mkdir()
    shutil.copytree(ROOT / "grader", root / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "exercises" / "__init__.py").write_text("")
    (root / "tests" / "conftest.py").write_text("")
    manifest = []
    for sid, (source, extra) in steps.items():
        module = f"{sid}_fake"
        (root / "exercises" / f"{module}.py").write_text(source)
        # Only the torch step pays for importing torch (the kata's own conftest always does).
        imports = "import torch  # noqa: F401" if "torch" in source else ""
        (root / "tests" / f"test_{sid}_fake.py").write_text(FAKE_TEST.format(module=module, id=sid, imports=imports))
        manifest.append(textwrap.dedent(f'''
            [[step]]
            id = "{sid}"
            module = "{module}"
            title = "fake {sid}"
            points = 10
            open = "exercises/{module}.py: f"
            hint = "make f return 42"
            ''') + extra + "\n")
    (root / "grader" / "steps.toml").write_text("".join(manifest))
    return root


@pytest.fixture(scope="module")
def fake_results(tmp_path_factory) -> tuple[Path, list]:
    root = make_fake_kata(tmp_path_factory.mktemp("fake") / "kata")
    steps = load_manifest(root / "grader" / "steps.toml")
    return root, grade(steps, root, "exercises", jobs=2, gpu=False)


def _by_id(results) -> dict:
    return {r.step.id: r for r in results}


def test_fake_kata_statuses_follow_the_rules(fake_results):
    root, results = fake_results
    got = {r.step.id: (r.status, r.passed, r.total) for r in results}
    assert got == {
        "step1": (PASSED, 2, 2),
        "step2": (NOT_STARTED, 1, 2),
        "step3": (FAILED, 0, 2), "step4": (FAILED, 0, 2), "step5": (FAILED, 0, 2),
        "step6": (FAILED, 1, 2), "step7": (FAILED, 1, 2), "step8": (FAILED, 1, 2),
        "step9": (FAILED, 1, 2), "step10": (FAILED, 1, 2),
        "step11": (WAITING, 0, 0), "step12": (NEEDS_GPU, 0, 0), "bonus1": (PASSED, 2, 2),
    }, got


@pytest.mark.parametrize("sid, needle", [
    ("step3", "syntax"),                 # names the syntax error
    ("step4", "boom while importing"),   # the learner's own exception at import
    ("step5", "time limit"),             # an endless loop: the step's time limit
    ("step6", "os._exit"),               # the process vanished mid-test
    ("step7", "sys.exit"),
    ("step8", "MemoryError"),            # RLIMIT_AS turns 200 GiB into a MemoryError
    ("step10", "torch.allclose"),        # monkeypatching torch fails the test
], ids=["syntax-error", "raises-at-import", "endless-loop", "os-exit", "sys-exit", "huge-allocation", "patches-torch"])
def test_misbehaving_code_fails_its_step_with_a_readable_message(fake_results, sid, needle):
    r = _by_id(fake_results[1])[sid]
    fail = r.first_failure
    assert fail is not None and needle.lower() in fail.message.lower(), (sid, fail)


def test_megabytes_of_output_stay_out_of_the_report(fake_results):
    r = _by_id(fake_results[1])["step9"]
    assert all(len(t.message) < 3000 for t in r.tests), [len(t.message) for t in r.tests]
    assert "41" in r.first_failure.message


def test_scores_totals_and_what_next(fake_results):
    root, results = fake_results
    by = _by_id(results)
    assert by["step1"].score == 10 and by["step2"].score == 0  # not started scores 0 though a test passes
    assert by["step6"].score == 5
    score, top, bscore, btop = report.totals(results)
    assert top == 110 and btop == 10 and bscore == 10  # the GPU-only step is out of the maximum
    assert score == pytest.approx(10 + 5 * 5)  # step 1, and half of steps 6-10
    assert report.next_line(results, root) == "next: open exercises/step2_fake.py and implement f"
    assert "waiting on step 3" in by["step11"].note
    assert "nox -s final" in by["step12"].note


def test_report_renders_the_table_the_first_failure_and_how_to_ask_for_a_hint(fake_results):
    from rich.console import Console

    root, results = fake_results
    console = Console(record=True, width=120)
    report.render(results, "exercises", root, console)
    text = console.export_text()
    for needle in ("fake step1", "✔ passed", "not started", "waiting on step 3", "needs a GPU", "hint: `nox -s hint -- 2`",
                   "first failing test: test_step2_returns_42", "next: open exercises/step2_fake.py"):
        assert needle in text, f"{needle!r} missing from:\n{text}"


def test_results_json_has_gradescope_shape(fake_results, tmp_path):
    root, results = fake_results
    data = gradescope.write(results, "exercises", tmp_path / "results.json")
    assert json.loads((tmp_path / "results.json").read_text()) == data
    assert isinstance(data["score"], float) and isinstance(data["max_score"], float)
    assert data["max_score"] == 110 and data["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
    for t in data["tests"]:
        assert set(t) >= {"name", "score", "max_score", "output", "visibility"}, t
        assert isinstance(t["name"], str) and isinstance(t["output"], str)
        assert 0 <= t["score"] <= max(t["max_score"], 10), t
    main = [t for t in data["tests"] if not t["number"].startswith("bonus")]
    assert sum(t["max_score"] for t in main) == pytest.approx(data["max_score"], abs=0.01)
    assert sum(t["score"] for t in data["tests"]) == pytest.approx(data["score"], abs=0.01)


def test_two_runs_grade_alike(tmp_path):
    steps = {k: FAKE_STEPS[k] for k in ("step2", "step6")}
    root = make_fake_kata(tmp_path / "kata", steps)
    manifest = load_manifest(root / "grader" / "steps.toml")
    runs = [gradescope.results_json(grade(manifest, root, "exercises", jobs=2, gpu=False), "exercises") for _ in range(2)]
    for run in runs:  # how long a step took is not part of its grade
        for step in run["extra_data"]["steps"].values():
            step.pop("seconds")
    assert runs[0] == runs[1]


def test_manifest_takes_appended_bonus_steps_and_rejects_broken_ones(tmp_path):
    text = (ROOT / "grader" / "steps.toml").read_text() + textwrap.dedent('''
        [[step]]
        id = "bonus9"
        module = "bonus9_extra"
        title = "an appended bonus"
        points = 5
        open = "exercises/bonus9_extra.py: g"
        hint = "h"
        bonus = true
        ''')
    (tmp_path / "steps.toml").write_text(text)
    steps = load_manifest(tmp_path / "steps.toml")
    assert steps[-1].id == "bonus9" and steps[-1].bonus and steps[-1].number == "bonus 9"
    assert [s.id for s in steps if not s.bonus][0] == "step1"
    (tmp_path / "bad.toml").write_text('[[step]]\nid = "x"\n')
    with pytest.raises(ValueError, match="lacks module"):
        load_manifest(tmp_path / "bad.toml")


# ----------------------------------------------------------------------- the real handout

# The real handout graded in full, the stubs and the reference's files, is the autograder's
# business (tests/test_platform_autograder.py: every step, through run_autograder); here the
# behaviours that need a real handout and no reference.


@pytest.fixture(scope="module")
def built_handout(tmp_path_factory) -> Path:
    folder, archive = handout.build(ROOT, tmp_path_factory.mktemp("handout") / "handout")
    assert archive is not None and archive.exists()
    return folder


def test_handout_has_no_reference_source(built_handout, tmp_path):
    assert not (built_handout / "reference").exists()
    assert not any("reference" in p.parts[:1] for p in built_handout.rglob("*")), "a reference/ folder in the handout"
    secret = handout.secrets(ROOT)
    assert secret, "no reference function bodies found to check against"
    assert handout.leaks(built_handout, secret) == []
    assert (built_handout / "tests" / "_snapshots").is_dir(), "the stored reference answers are missing"
    for must in ("exercises", "grader/steps.toml", "kata", "noxfile.py", "pyproject.toml", "README.md", "tests/conftest.py"):
        assert (built_handout / must).exists(), must
    # The check itself can fail: a copied reference step is caught.
    shutil.copytree(built_handout, tmp_path / "leaky")
    shutil.copy(ROOT / "reference" / "step2_causal_mask.py", tmp_path / "leaky" / "tests" / "helper.py")
    assert any("step2_causal_mask" in x for x in handout.leaks(tmp_path / "leaky", secret))


def test_handout_refuses_the_reference_it_lacks_and_its_help_does_not_offer_it(built_handout, capsys):
    import subprocess
    import sys

    from grader import cli

    assert cli.main(["--root", str(built_handout), "--solution", "reference", "--step", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, (out, err)
    assert "no reference/ folder" in err and "--solution exercises" in err and "nox -s check" in err, err
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KATA_", "PYTEST_"))}
    env["PYTHONPATH"] = str(built_handout)  # the handout's own grader, which has no reference/ beside it
    p = subprocess.run([sys.executable, "-m", "grader", "--help"], cwd=built_handout, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "--solution" in p.stdout, p.stdout + p.stderr
    assert "reference" not in p.stdout, p.stdout


def test_plain_pytest_in_the_handout_draws_only_recorded_inputs(built_handout, tmp_path):
    """A learner may run pytest directly instead of the grader, and writes literals of
    their own: neither may change which inputs the tests draw (every one must have a
    stored reference answer: replay fails on the first that has not)."""
    import subprocess
    import sys

    solved = tmp_path / "solved"
    shutil.copytree(built_handout, solved)
    for f in (ROOT / "reference").glob("step*.py"):
        text = f.read_text() + "\n\n_MY_CONSTANTS = (7, 3, 0.25, 'abc', 12, 5)  # a learner's unrelated literals\n"
        (solved / "exercises" / f.name).write_text(text)
    steps = [f"tests/test_step{n}_" for n in (1, 2, 3, 4)]
    files = [str(p.relative_to(solved)) for p in sorted((solved / "tests").glob("test_step*.py"))
             if any(str(p.relative_to(solved)).startswith(s) for s in steps)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KATA_", "PYTEST_", "HYPOTHESIS_"))}
    env.update(PYTHONPATH=str(solved))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
                       cwd=solved, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and " passed" in p.stdout, p.stdout[-3000:] + p.stderr[-2000:]


def test_handout_step_waits_on_the_unfinished_or_broken_step_it_uses(built_handout, tmp_path):
    """Step 3 written, step 4 a stub -> step 3 passes: its contract is that its loss is step 4's of
    its logits and labels, which its tests check without step 4 (issue 19). Step 2 a stub -> step 3
    waits on step 2 and "next:" says so; then step 2 broken -> re-graded (the cache key covers
    step 2), and step 3 waits on step 2, naming the file and line that really failed."""
    three = next((s for s in load_manifest() if s.id == "step3"), None)
    if three is None or not step_test_files(ROOT, three):
        pytest.skip("no step 3 tests")
    tree = tmp_path / "tree"
    shutil.copytree(built_handout, tree)
    for m in ("step1_embeddings", "step2_causal_mask", "step3_blocks"):
        shutil.copy(ROOT / "reference" / f"{m}.py", tree / "exercises" / f"{m}.py")
    cache = tmp_path / "cache"
    r = grade([three], tree, "exercises", gpu=False, cache=cache)[0]
    assert r.status == PASSED and r.score == three.points, \
        (r.status, r.note, r.first_failure, [t for t in r.tests if t.outcome != "passed"])

    step2 = tree / "exercises" / "step2_causal_mask.py"
    shutil.copy(built_handout / "exercises" / "step2_causal_mask.py", step2)  # the stub again
    r = grade([three], tree, "exercises", gpu=False, cache=cache)[0]
    assert r.status == WAITING and r.blocked_by == "step2" and r.note == "waiting on step 2", \
        (r.status, r.note, r.first_failure, [t for t in r.tests if t.outcome != "passed"])
    assert r.passed >= 1 and r.score == 0
    nxt = report.next_line([r], tree, manifest=load_manifest(), scoped=True)
    assert "exercises/step2_causal_mask.py" in nxt and "causal_mask" in nxt, nxt

    shutil.copy(ROOT / "reference" / "step2_causal_mask.py", step2)
    line = len(step2.read_text().splitlines()) + 2
    step2.write_text(step2.read_text() + "\ndef broken(:\n    pass\n")
    r = grade([three], tree, "exercises", gpu=False, cache=cache)[0]
    assert not r.cached, "step 2 changed: step 3 (which imports it) must be re-graded"
    assert r.status == WAITING and r.blocked_by == "step2", (r.status, r.note, r.first_failure)
    msg = next(t.message for t in r.tests if t.outcome == "waiting")
    assert f"exercises/step2_causal_mask.py has a syntax error at line {line}" in msg, msg
    assert "step3_blocks.py has a syntax error" not in msg


def test_unchanged_steps_keep_their_grade_and_a_change_regrades(tmp_path):
    root = make_fake_kata(tmp_path / "kata", {k: FAKE_STEPS[k] for k in ("step1", "step2")})
    steps = load_manifest(root / "grader" / "steps.toml")
    cache = tmp_path / "cache"
    first = grade(steps, root, "exercises", gpu=False, cache=cache)
    again = grade(steps, root, "exercises", gpu=False, cache=cache)
    assert [r.cached for r in first] == [False, False] and [r.cached for r in again] == [True, True]
    assert [(r.status, r.passed) for r in again] == [(r.status, r.passed) for r in first]
    (root / "exercises" / "step2_fake.py").write_text("def f():\n    return 42\n")
    after = grade(steps, root, "exercises", gpu=False, cache=cache)
    assert [r.cached for r in after] == [True, False] and after[1].status == PASSED


def test_recorded_records_replays_and_catches_stale_or_missing_answers(tmp_path, monkeypatch):
    import torch

    import _support

    monkeypatch.setattr(_support, "SNAPSHOT_DIR", tmp_path)
    monkeypatch.setattr(_support, "_store", {})
    calls = []

    @_support.recorded
    def answer(x, scale):
        calls.append(1)
        return {"y": x * scale, "n": int(x.numel())}

    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    monkeypatch.setenv("KATA_SNAPSHOTS", "record")
    assert torch.equal(answer(x, 2.0)["y"], x * 2)
    _support._flush()
    assert list(tmp_path.rglob("*.pt")), "record mode wrote nothing"

    monkeypatch.setattr(_support, "_store", {})
    monkeypatch.setenv("KATA_SNAPSHOTS", "replay")
    got = answer(x.clone(), 2.0)  # same values, another tensor: same key
    assert torch.equal(got["y"], x * 2) and got["n"] == 6 and len(calls) == 1, "replay must not call the reference"
    with pytest.raises(_support.SnapshotMiss, match="no stored reference answer"):
        answer(x.double(), 2.0)  # another dtype is another input

    path, key = _support.snapshot_key(answer, (x, 2.0), {})
    _support._store[path][key] = {"y": x * 3, "n": 6}  # an answer the reference no longer gives
    monkeypatch.setenv("KATA_SNAPSHOTS", "live")
    with pytest.raises(pytest.fail.Exception, match="stale"):
        answer(x, 2.0)
    monkeypatch.setenv("KATA_SNAPSHOTS", "verify")
    with pytest.raises(pytest.fail.Exception, match="no stored answer"):
        answer(x, 5.0)


def test_a_missing_answer_is_the_katas_error_at_the_first_unrecorded_input(tmp_path, monkeypatch):
    """In the handout a test's inputs come from the test alone, so every one a correct or
    wrong solution can meet is recorded; an input without an answer means the stored answers
    are stale. Replay raises SnapshotMiss at once (no input is skipped, which would change
    what Hypothesis draws next), saying it is the kata's error, and names the versions
    that recorded them when they differ from the ones installed."""
    from hypothesis import Phase, given, settings
    from hypothesis import strategies as st

    import _support

    monkeypatch.setattr(_support, "SNAPSHOT_DIR", tmp_path)
    monkeypatch.setattr(_support, "_store", {})

    @_support.recorded
    def answer(n):
        return n * n

    monkeypatch.setenv("KATA_SNAPSHOTS", "record")
    for n in range(5):
        answer(n)
    _support._flush()
    monkeypatch.setenv("KATA_SNAPSHOTS", "replay")
    drawn: list[int] = []
    quiet = settings(max_examples=30, derandomize=True, database=None, phases=[Phase.generate], deadline=None)

    @quiet
    @given(st.integers(0, 7))
    def some_unknown(n):
        drawn.append(n)
        answer(n)

    with pytest.raises(_support.SnapshotMiss, match="the kata's error, not your code's") as miss:
        some_unknown()
    assert getattr(miss.value, "_kata_snapshot_miss", False), "the grader tells a miss from a failure by this flag"
    assert drawn and drawn[-1] >= 5 and all(n < 5 for n in drawn[:-2]), drawn  # stopped at the first unknown one

    # the recording wrote what drew its inputs; another Hypothesis draws other inputs, and the miss says so
    versions = json.loads((tmp_path / "VERSIONS.json").read_text())
    assert versions == _support.recording_versions()
    (tmp_path / "VERSIONS.json").write_text(json.dumps({**versions, "hypothesis": "6.0.0"}))
    with pytest.raises(_support.SnapshotMiss, match="recorded with hypothesis 6.0.0"):
        answer(100)


def test_a_live_run_fails_on_an_input_the_handout_would_not_find(tmp_path, monkeypatch):
    """CI grades the reference live: an input with no stored answer fails there, naming
    the fix, so stale answers never reach a handout."""
    import _support

    monkeypatch.setattr(_support, "SNAPSHOT_DIR", tmp_path)
    monkeypatch.setattr(_support, "_store", {})
    monkeypatch.setattr(_support, "_dirty", set())

    @_support.recorded
    def answer(n):
        return n + 1

    monkeypatch.setenv("KATA_SNAPSHOTS", "record")
    answer(1)
    monkeypatch.setenv("KATA_SNAPSHOTS", "live")
    assert answer(1) == 2
    with pytest.raises(pytest.fail.Exception, match="nox -s snapshots"):
        answer(2)


def test_the_learners_literals_do_not_choose_the_test_inputs(tmp_path, monkeypatch):
    """Hypothesis (>= 6.131) mixes literals from local modules into its draws; the
    kata's conftest turns that off, or a learner's unrelated `eps = 7` would change
    which inputs grade them (and the handout would meet inputs nobody recorded)."""
    from hypothesis.internal.conjecture import providers

    (tmp_path / "learner_literals.py").write_text("MAGIC = 7\nWORD = 'tied weights'\nEPS = 0.25\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import learner_literals  # noqa: F401 - loaded like a learner's exercises module

    assert len(providers._get_local_constants()) == 0, "tests/conftest.py::_no_local_constants is not in effect"
