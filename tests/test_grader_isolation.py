"""The grader tells the truth: isolation between steps, import errors, caching, summaries, hints.

Throwaway katas in temp folders (see test_grader.py) keep these to seconds: no real step
is trained or graded here. Parametrize ids avoid 'stepN', so `pytest -k step1` selects
step 1's own tests only.
"""
from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from grader import cli, gradescope, hints, report
from grader.manifest import load_manifest
from grader.runner import FAILED, NEEDS_GPU, NOT_STARTED, PASSED, WAITING, StepResult, cache_key, grade
from grader.runner import TestResult as Result
from test_grader import FAKE_STEPS, make_fake_kata

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------- a kata that uses _support

# Step 1 is written and calls step 2's g() (as step 3 calls step 4's next_token_loss);
# its test goes through tests/_support.py like the real ones do.
USES_SUPPORT = '''
from _support import not_implemented_guard as call, student, with_reference_deps


def test_{id}_f_is_g_plus_one():
    s = student("{module}")
    with with_reference_deps(s, g="step2_b"):
        assert call(s.f) == 42, "f() should return g() + 1 = 42"
'''
STEP1 = "from .step2_b import g\n\n\ndef f():\n    return g() + 1\n"
STEP2_DONE = "def g():\n    return 41\n"
STEP2_STUB = 'def g():\n    """Return 41."""\n    raise NotImplementedError("g is not written yet (step 2): write it")\n'
STEP2_SYNTAX = "def g():\n    return 41\n\n\ndef h(:\n    pass\n"
STEP2_RAISES = 'def g():\n    return 41\n\n\nraise RuntimeError("boom at import")\n'


def make_support_kata(root: Path, step2: str, with_reference: bool) -> Path:
    """Steps 1 and 2 as above; tests through the real tests/_support.py."""
    (root / "exercises").mkdir(parents=True)
    (root / "tests").mkdir()
    shutil.copytree(ROOT / "grader", root / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "kata").mkdir()
    for name in ("__init__.py", "paths.py", "solution.py", "unfinished.py", "machine.py"):  # what _support and grader import
        shutil.copy(ROOT / "kata" / name, root / "kata" / name)
    shutil.copy(ROOT / "tests" / "_support.py", root / "tests" / "_support.py")
    (root / "tests" / "conftest.py").write_text("")
    sources = {"step1_a": STEP1, "step2_b": step2}
    folders = ["exercises"] + (["reference"] if with_reference else [])
    for folder in folders:
        (root / folder).mkdir(exist_ok=True)
        (root / folder / "__init__.py").write_text("")
    for module, source in sources.items():
        (root / "exercises" / f"{module}.py").write_text(source)
        if with_reference:
            (root / "reference" / f"{module}.py").write_text(STEP1 if module == "step1_a" else STEP2_DONE)
    (root / "tests" / "test_step1_a.py").write_text(USES_SUPPORT.format(id="step1", module="step1_a"))
    (root / "tests" / "test_step2_b.py").write_text(
        "from _support import not_implemented_guard as call, student\n\n\n"
        "def test_step2_g_is_41():\n    assert call(student('step2_b').g) == 41\n")
    (root / "grader" / "steps.toml").write_text(textwrap.dedent('''
        [[step]]
        id = "step1"
        module = "step1_a"
        title = "f"
        points = 10
        open = "exercises/step1_a.py: f"
        hints = ["f is g plus one", "return g() + 1"]

        [[step]]
        id = "step2"
        module = "step2_b"
        title = "g"
        points = 10
        open = "exercises/step2_b.py: g"
        hint = "return 41"
        '''))
    return root


def _grade(root: Path, **kw) -> dict[str, StepResult]:
    steps = load_manifest(root / "grader" / "steps.toml")
    return {r.step.id: r for r in grade(steps, root, "exercises", jobs=2, gpu=False, **kw)}


@pytest.mark.parametrize("step2, reference, status1, needle1, status2, needle2", [
    # the handout: a written step waits on the unfinished one it uses, and says which
    (STEP2_STUB, False, WAITING, "g in exercises/step2_b.py still raises NotImplementedError", NOT_STARTED,
         "g is not written yet"),
    (STEP2_SYNTAX, False, WAITING, "exercises/step2_b.py has a syntax error at line 5", FAILED,
     "exercises/step2_b.py has a syntax error at line 5"),
    (STEP2_RAISES, False, WAITING, "exercises/step2_b.py raised RuntimeError at line 5", FAILED, "boom at import"),
    # with the reference: the written step passes on the reference's step 2
    (STEP2_SYNTAX, True, PASSED, "", FAILED, "exercises/step2_b.py has a syntax error at line 5"),
], ids=["handout-stub", "handout-syntax-error", "handout-raises-at-import", "reference-syntax-error"])
def test_a_step_never_fails_because_another_is_unfinished_or_broken(tmp_path, step2, reference, status1, needle1,
                                                                     status2, needle2):
    root = make_support_kata(tmp_path / "kata", step2, reference)
    by = _grade(root)
    one, two = by["step1"], by["step2"]
    assert one.status == status1, (one.status, one.note, [vars(t) for t in one.tests])
    if status1 == WAITING:
        assert one.note == "waiting on step 2" and one.blocked_by == "step2", (one.note, one.blocked_by)
        assert needle1 in one.tests[0].message, one.tests[0].message
        assert one.score == 0
        # "next:" points at the step it waits on, not back at step 1
        nxt = report.next_line([one, two], root)
        assert "exercises/step2_b.py" in nxt and "step1_a" not in nxt, nxt
    assert two.status == status2 and needle2 in two.first_failure.message, (two.status, two.first_failure)


def test_a_waiting_step_later_in_the_course_is_what_next_points_to(tmp_path):
    root = make_support_kata(tmp_path / "kata", STEP2_STUB, False)
    one = _grade(root)["step1"]
    # graded alone (--step 1): the row waits on step 2 and "next:" sends the learner there
    nxt = report.next_line([one], root, manifest=load_manifest(root / "grader" / "steps.toml"), scoped=True)
    assert nxt.startswith("next: step 1 waits on step 2: open exercises/step2_b.py and implement g"), nxt
    text = _render([one], root, manifest=load_manifest(root / "grader" / "steps.toml"), scoped=True)
    assert "waiting test: test_step1_f_is_g_plus_one" in text and "still raises NotImplementedError" in text, text


def test_a_real_failure_of_the_step_itself_comes_before_waiting(tmp_path):
    root = make_support_kata(tmp_path / "kata", STEP2_STUB, False)
    (root / "exercises" / "step1_a.py").write_text(STEP1.replace("g() + 1", "g() + 2") + "\nx = 1 +\n")
    one = _grade(root)["step1"]
    assert one.status == FAILED and "exercises/step1_a.py has a syntax error at line 7" in one.first_failure.message, \
        one.first_failure


# ------------------------------------------------------------------------------- caching

def _chain_kata(root: Path) -> Path:
    """Fake step 1 imports step 2 (like step 3 imports step 4); step 3 stands alone."""
    steps = {"step1": ("from .step2_fake import g\n\n\ndef f():\n    return g()\n", ""),
             "step2": ("def g():\n    return 42\n\n\ndef f():\n    return 42\n", ""),
             "step3": FAKE_STEPS["step1"]}
    return make_fake_kata(root, steps)


def test_a_grade_is_stale_when_any_step_it_imports_changes(tmp_path):
    root = _chain_kata(tmp_path / "kata")
    steps = load_manifest(root / "grader" / "steps.toml")
    cache = tmp_path / "cache"
    one = [s for s in steps if s.id == "step1"]
    first = grade(one, root, "exercises", cache=cache, gpu=False)[0]
    assert first.status == PASSED and not first.cached
    again = grade(one, root, "exercises", cache=cache, gpu=False)[0]
    assert again.cached, "nothing changed: the grade is reused"
    (root / "exercises" / "step2_fake.py").write_text("def g():\n    return 41\n\n\ndef f():\n    return 42\n")
    after = grade(one, root, "exercises", cache=cache, gpu=False)[0]
    assert not after.cached and after.status == FAILED, "step 1 imports step 2: editing step 2 re-grades step 1"


def test_grading_one_step_and_grading_all_share_one_cache(tmp_path):
    root = _chain_kata(tmp_path / "kata")
    steps = load_manifest(root / "grader" / "steps.toml")
    cache = tmp_path / "cache"
    grade(steps, root, "exercises", cache=cache, gpu=False, jobs=2)
    for s in steps:
        assert grade([s], root, "exercises", cache=cache, gpu=False)[0].cached, f"--step {s.id} after a full check"
    # keys ignore the filter; an unrelated step's edit keeps step 3's key
    key = cache_key(steps[2], root, "exercises")
    (root / "exercises" / "step2_fake.py").write_text("def g():\n    return 7\n")
    assert cache_key(steps[2], root, "exercises") == key


def test_the_step_8_key_covers_every_step_the_final_run_trains():
    from grader.runner import graded_files

    steps = {s.id: s for s in load_manifest(ROOT / "grader" / "steps.toml")}
    names = {f.name for f in graded_files(steps["step8"], ROOT, "exercises")}
    want = {"step1_embeddings.py", "step2_causal_mask.py", "step3_blocks.py", "step4_loss.py",
            "step5_train_loop.py", "step6_sampler.py", "step8_pretrain.py"}
    assert want <= names, want - names
    assert "step7_trainer.py" not in names, "step 8 does not run step 7: its edits must not re-grade step 8"
    seven = {f.name for f in graded_files(steps["step7"], ROOT, "exercises")}
    assert {"step1_embeddings.py", "step7_trainer.py"} <= seven, seven
    three = {f.name for f in graded_files(steps["step3"], ROOT, "exercises")}
    assert {"step1_embeddings.py", "step2_causal_mask.py", "step3_blocks.py", "step4_loss.py"} <= three, three
    assert "step6_sampler.py" not in three, "step 3 does not touch step 6: its edits must not re-grade step 3"
    one = {f.name for f in graded_files(steps["step1"], ROOT, "exercises")}
    assert "step1_embeddings.py" in one and "step4_loss.py" not in one, one


def test_the_trainer_comparison_is_cached_like_the_smoke_run(monkeypatch, tmp_path):
    import kata.final as final
    import kata.trainer_run as trainer_run

    monkeypatch.setenv("KATA_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(trainer_run, "_trainer_run", lambda solution, run: calls.append(1) or {"loss": 6.3, "seconds": 1.0})
    first = trainer_run.trainer_loss("reference", "smoke")
    second = trainer_run.trainer_loss("reference", "smoke")
    assert calls == [1] and not first["cached"] and second["cached"] and second["loss"] == 6.3
    assert list((tmp_path / "final").glob("reference-smoke-trainer-*.json"))
    key = final.cache_key("reference", final.tier_config("smoke"), trainer_run.TRAINER_MODULES,
                          trainer_run.TRAINER_SCAFFOLDING)
    assert key != final.cache_key("reference", final.tier_config("smoke")), "the Trainer's key covers step 7"
    # The same files under another solution's name (the handout's copy of the reference) reuse the run:
    # the key is the files' contents, the name only says who stored it.
    path = tmp_path / "final" / f"exercises-smoke-trainer-{key}.json"
    assert final._cached(path) == {"loss": 6.3, "seconds": 1.0}
    assert final._cached(tmp_path / "final" / "exercises-smoke-trainer-0123.json") is None


# ---------------------------------------------------------------------------- summaries

def _result(step, status, tests=(), **kw) -> StepResult:
    return StepResult(step, status, list(tests), **kw)


def _render(results, root, **kw) -> str:
    console = Console(record=True, width=250)  # wide enough that no cell wraps
    report.render(results, "exercises", root, console, **kw)
    return console.export_text()


def test_a_step_filter_summarises_that_step_only(tmp_path):
    root = make_fake_kata(tmp_path / "kata", {k: FAKE_STEPS[k] for k in ("step1", "bonus1")})
    steps = load_manifest(root / "grader" / "steps.toml")
    one = _result(steps[0], PASSED, [Result("t", "passed")])
    text = _render([one], root, manifest=steps, scoped=True)
    assert "Well done" not in text and "`nox -s check` grades every step" in text, text
    bonus = _result(steps[1], PASSED, [Result("t", "passed")])
    text = _render([bonus], root, manifest=steps, scoped=True)
    assert "0/0 steps" not in text and "bonus 1/1 steps · +10/10 points" in text, text


def test_a_passing_step_filter_points_to_the_next_step_to_work_on(tmp_path, capsys):
    """`--step N` passes: "next:" names the first later step (main steps first, wrapping
    round) without a passing grade on record, with its file and functions; none: all pass."""
    kata = {"step1": FAKE_STEPS["step1"], "step2": FAKE_STEPS["step2"], "step3": FAKE_STEPS["step1"],
            "bonus1": FAKE_STEPS["bonus1"]}
    root = make_fake_kata(tmp_path / "kata", kata)

    def next_after(step: str) -> str:
        assert cli.main(["--root", str(root), "--solution", "exercises", "--step", step]) == 0
        out = " ".join(capsys.readouterr().out.split())  # undo the console's line wrapping
        return out[out.index("next:"):out.index(" graded in")]

    assert next_after("1") == ("next: step 1 passes — open exercises/step2_fake.py and implement f "
                               "(`nox -s check -- --step 2` grades it)")
    # After step 3 the ring wraps to step 1, which passes on record (the run above): step 2.
    assert next_after("3").startswith("next: step 3 passes — open exercises/step2_fake.py and implement f")
    (root / "exercises" / "step2_fake.py").write_text("def f():\n    return 42\n")
    assert next_after("2") == ("next: step 2 passes — try bonus 1: open exercises/bonus1_fake.py and implement f "
                               "(`nox -s check -- --step bonus1` grades it)")
    assert next_after("bonus1").startswith("next: all steps pass (bonus 1 passes;"), "bonus 1 was the last"
    # A step's file changed since its passing grade was stored: that grade is no longer on
    # record, and the step is to be re-graded, not written (the learner trial's misleading line).
    (root / "exercises" / "step1_fake.py").write_text("def f():\n    return 42  # edited\n")
    assert next_after("bonus1") == ("next: bonus 1 passes — step 1 passed when last graded, but a file it uses has "
                                    "changed since: re-grade it (`nox -s check -- --step 1`)")
    # A step whose stored grade is a failure is still to be written.
    (root / "exercises" / "step1_fake.py").write_text("def f():\n    return 41\n")
    cli.main(["--root", str(root), "--solution", "exercises", "--step", "1"])  # stored: a failure
    capsys.readouterr()
    (root / "exercises" / "step1_fake.py").write_text("def f():\n    return 41  # edited\n")
    assert next_after("bonus1").startswith("next: bonus 1 passes — open exercises/step1_fake.py and implement f")


def test_the_panel_shows_the_main_test_files_failure_before_an_auxiliary_files(tmp_path):
    """tests/test_step1_aaa.py runs first (name order), but the step's main file is
    tests/test_step1_fake.py: its failure is the one shown; the counts cover both files."""
    root = make_fake_kata(tmp_path / "kata", {"step1": ("def f():\n    return 41\n", "")})
    (root / "tests" / "test_step1_aaa.py").write_text(
        "def test_an_auxiliary_contract():\n    assert False, 'the auxiliary file says this'\n")
    steps = load_manifest(root / "grader" / "steps.toml")
    cache = tmp_path / "cache"
    r = grade(steps, root, "exercises", gpu=False, cache=cache)[0]
    assert [t.name for t in r.tests if t.outcome == "failed"][0] == "test_an_auxiliary_contract", "run order unchanged"
    assert (r.status, r.passed, r.total) == (FAILED, 1, 3)
    assert r.first_failure.name == "test_step1_returns_42" and "f() should return 42" in r.first_failure.message
    again = grade(steps, root, "exercises", gpu=False, cache=cache)[0]
    assert again.cached and again.first_failure.name == "test_step1_returns_42", "the stored grade keeps the files"
    text = _render([r], root)
    assert "first failing test: test_step1_returns_42" in text and "auxiliary file says" not in text, text


def test_run_rows_show_the_graded_loss_and_the_last_lab_result(tmp_path, monkeypatch):
    monkeypatch.delenv("KATA_CACHE_DIR", raising=False)
    steps = {s.id: s for s in load_manifest(ROOT / "grader" / "steps.toml")}
    smoke = _result(steps["step8"], PASSED, [Result("test_smoke", "passed", extras={"loss": 6.3512, "threshold": 6.8})])
    lab = _result(steps["step8_lab"], NEEDS_GPU, note="needs a GPU — run `nox -s final` on a GPU machine")
    (tmp_path / ".kata_cache" / "final").mkdir(parents=True)
    (tmp_path / ".kata_cache" / "final" / "exercises-lab-abc.json").write_text(json.dumps({"loss": 5.12, "threshold": 5.5}))
    text = _render([smoke, lab], tmp_path)
    assert "loss 6.35 < 6.8" in text and "last lab run 5.12 < 5.5" in text, text


def test_plain_progress_lines_when_stdout_is_not_a_terminal(tmp_path, capsys):
    root = make_fake_kata(tmp_path / "kata", {k: FAKE_STEPS[k] for k in ("step1", "step2")})
    cli.main(["--root", str(root), "--solution", "exercises", "--step", "1", "--no-cache"])
    out = capsys.readouterr().out
    assert "grading 1 step(s) of exercises/" in out and "step 1: passed, 2/2 tests pass" in out, out
    assert "Well done" not in out and "only step 1 graded" in out, out


# -------------------------------------------------------------------------------- hints

def test_hints_come_one_at_a_time_and_are_recorded(tmp_path, capsys):
    root = make_support_kata(tmp_path / "kata", STEP2_DONE, False)
    step1, step2 = load_manifest(root / "grader" / "steps.toml")
    assert step1.hints == ("f is g plus one", "return g() + 1") and step2.hints == ("return 41",), "hint = '...' is one hint"
    assert hints.reveal(root, step1)[0] == "hint 1/2: f is g plus one"
    assert hints.load_used(root) == {"step1": 1}
    assert hints.reveal(root, step1)[0] == "hint 2/2: return g() + 1"
    assert "last" in " ".join(hints.reveal(root, step1)), "past the last hint it says so"
    assert hints.load_used(root) == {"step1": 2}
    hints.main(["--root", str(root), "2", "--all"])
    assert "hint 1/1: return 41" in capsys.readouterr().out
    assert json.loads((root / "exercises" / "hints_used.json").read_text()) == {"step1": 2, "step2": 1}


@pytest.mark.parametrize("words, want", [(["3"], "step3"), (["step3"], "step3"), (["bonus", "2"], "bonus2"),
                                         (["bonus2"], "bonus2"), (["8_lab"], "step8_lab")],
                         ids=["number", "id", "bonus-two-words", "bonus-one-word", "lab-tier"])
def test_hint_takes_a_step_the_way_a_learner_names_it(words, want):
    assert hints.find_step(load_manifest(ROOT / "grader" / "steps.toml"), words).id == want


def test_failure_panel_says_how_to_ask_for_a_hint_and_the_json_records_hints(tmp_path):
    root = make_fake_kata(tmp_path / "kata", {k: FAKE_STEPS[k] for k in ("step1", "step2")})
    steps = load_manifest(root / "grader" / "steps.toml")
    hints.save_used(root, {"step2": 1})
    results = grade(steps, root, "exercises", gpu=False, jobs=2)
    text = _render(results, root)
    assert "make f return 42" not in text, "the panel no longer prints the hint itself"
    assert "all 1 hints seen" in text or "`nox -s hint -- 2`" in text, text
    assert "1/1" in text  # the hints column of step 2
    data = gradescope.results_json(results, "exercises", root)
    assert data["extra_data"]["hints_used"] == {"step1": 0, "step2": 1}
    assert all(t["extra_data"]["hints_total"] == 1 for t in data["tests"])
    assert {t["extra_data"]["hints_used"] for t in data["tests"] if t["number"] == "step2"} == {1}


def test_the_workers_scratch_is_one_folder_inside_the_steps_own_and_goes_with_the_judge(tmp_path, monkeypatch):
    """A restarted worker (after os._exit or a crash) reuses its folder, and a step process
    killed at its time limit leaves nothing in /tmp: the folder lies in the runner's own
    temporary folder for the step (before, every restart and every kill left one behind)."""
    from grader import judge

    monkeypatch.setenv(judge.SCRATCH_ENV, str(tmp_path))
    w = judge.Worker(ROOT)
    first = w._scratch()
    assert w._scratch() == first and Path(first).parent == tmp_path, (first, tmp_path)
    (Path(first) / "left by the learner").write_text("x")
    w.close()
    assert not Path(first).exists(), f"the judge left its worker's scratch folder {first}"


PROBES_THAT_DIE = '''
import os, threading, time


def die_after_replying():
    threading.Thread(target=lambda: (time.sleep(0.3), os._exit(5)), daemon=True).start()
    return os.getpid()


def die_now():
    os._exit(7)


def pid():
    return os.getpid()
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the worker's fork-server parent is Linux-only")
def test_a_dead_worker_fails_only_its_own_request_and_the_next_one_is_answered_at_once(tmp_path, monkeypatch):
    """The worker's clean parent forks the process that runs the learner's code: a death during
    a request fails that request with the exit code; a death after a reply (a thread of the
    learner's) fails nothing; either way the next request gets a fresh process in well under
    the ~2 s a new Python importing torch takes."""
    import time

    from grader import judge

    (tmp_path / "_probes_dying.py").write_text(PROBES_THAT_DIE)
    monkeypatch.syspath_prepend(str(tmp_path))
    w = judge.Worker(ROOT)
    try:
        first = w.request("_probes_dying:die_after_replying", (), {})["value"]
        time.sleep(1.0)  # its thread ends it now, between requests
        start = time.monotonic()
        second = w.request("_probes_dying:pid", (), {})["value"]
        assert second != first and time.monotonic() - start < 1.0, (first, second, time.monotonic() - start)
        with pytest.raises(judge.WorkerDied, match="exited with code 7"):
            w.request("_probes_dying:die_now", (), {})
        start = time.monotonic()
        assert w.request("_probes_dying:pid", (), {})["value"] not in (first, second)
        assert time.monotonic() - start < 1.0, f"a restart took {time.monotonic() - start:.2f} s"
    finally:
        w.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the worker's fork-server parent is Linux-only")
def test_a_prerun_answers_its_call_once_and_a_call_that_died_there_is_made_live(tmp_path, monkeypatch):
    """The manifest's `prerun` (training runs made before the judge starts, so that they never
    share Gradescope's 768 MB with it): the judge takes the reply the runner got for that
    exact call, once; a call that died in the prerun is made again, live, where its failure
    is reported."""
    import os
    import time

    from grader import judge

    (tmp_path / "_probes_dying.py").write_text(PROBES_THAT_DIE)
    out = tmp_path / "prerun.pickle"
    calls = ({"probe": "_probes_dying:pid"}, {"probe": "_probes_dying:die_now", "test": "t.py::test_x (call)"})
    env = {**os.environ, judge.SCRATCH_ENV: str(tmp_path)}
    assert judge.prerun(ROOT, sys.executable, env, [str(tmp_path), str(ROOT / "tests"), str(ROOT)], calls, out,
                        time.monotonic() + 60) == 2
    monkeypatch.setenv(judge.PRERUN_ENV, str(out))
    monkeypatch.setattr(judge, "_prerun_replies", None)
    first = judge._answered_before("_probes_dying:pid", (), {})
    assert isinstance(first["value"], int) and first["value"] != os.getpid(), first
    assert judge._answered_before("_probes_dying:pid", (), {}) is None, "a prerun reply serves one call"
    assert judge._answered_before("_probes_dying:die_now", (), {}) is None, "a call that died is made live"
    assert judge._answered_before("_probes_dying:pid", (1,), {}) is None, "only the very call it made"
