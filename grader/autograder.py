"""Gradescope's autograder: grade a submission's `exercises/*.py` with the official tests.

    python -m grader.autograder build [--out dist/autograder.zip]   # what `nox -s autograder` runs
    python -m grader.autograder grade [--steps step1,step2]          # what run_autograder runs
    python -m grader.autograder prepare --submission DIR --out TREE  # the official tree + a learner's files

Gradescope unzips `autograder.zip` into `/autograder/source`, runs `setup.sh` once when it
builds the image, then `run_autograder` once per submission, with the submission in
`/autograder/submission`; the grade goes to `/autograder/results/results.json`
(https://gradescope-autograders.readthedocs.io/en/latest/specs/). `$AUTOGRADER_ROOT`
replaces `/autograder` (the tests run a whole simulated root in a temporary folder).

The grade comes from the instructor's files alone. The zip carries the learner handout
(`official/`: tests with their stored reference answers, grader, kata, stub exercises; no
reference/, so no submission can import the solution). For each submission a fresh copy
of that tree gets the learner's `exercises/*.py` and nothing else: a submitted tests/,
conftest.py, grader/ or kata/ is never read. The submission may be the whole handout
folder, a zip of it, or the bare files, nested a level or two deeper.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from kata.machine import default_jobs

from . import gradescope, handout
from .confinement import become_subreaper, end_learner_processes, worker_user_env
from .worker import HIDDEN_ENV
from .manifest import MANIFEST, Policy, Step, load_manifest, load_policy
from .runner import NOT_STARTED, PASSED, WAITING, StepResult, grade

OFFICIAL = Path(__file__).resolve().parents[1]  # the tree this grader belongs to
PLATFORM_DIR = OFFICIAL / "platforms" / "gradescope"  # setup.sh and run_autograder
DEFAULT_ROOT = "/autograder"

# Where a submission is searched for the learner's files: never inside these folders.
SKIP_DIRS = {"__MACOSX", "__pycache__", "node_modules", "site-packages", "tests", "grader", "kata", "reference"}
MAX_DEPTH = 4  # folders below the submission (or an unpacked zip) that are searched
MAX_FILE = 2 * 2**20  # a learner's .py larger than this is not source code
MAX_UNZIPPED = 200 * 2**20  # a submitted zip that unpacks to more is not unpacked
NOT_TAKEN = {"__init__.py", "conftest.py", "sitecustomize.py", "usercustomize.py"}
HINTS_FILE = "hints_used.json"


# ----------------------------------------------------------------------- finding the files

@dataclass
class Found:
    """What was taken from a submission, and from where."""
    folder: Path | None  # the folder the learner's files came from
    files: list[Path] = field(default_factory=list)  # the taken files (in `folder`)
    missing: list[str] = field(default_factory=list)  # step files the submission lacks
    notes: list[str] = field(default_factory=list)  # what the learner should know


def _unpack(archive: Path, into: Path, notes: list[str]) -> Path | None:
    """Unpack a submitted zip safely (no absolute or `..` paths, no links, bounded size)."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_UNZIPPED:
                notes.append(f"{archive.name} unpacks to more than {MAX_UNZIPPED >> 20} MB: not unpacked")
                return None
            for m in members:
                parts = Path(m.filename.replace("\\", "/")).parts
                if not parts or Path(m.filename).is_absolute() or ".." in parts or stat.S_ISLNK(m.external_attr >> 16):
                    continue
                dest = into.joinpath(*parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(m) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, OSError, RuntimeError) as e:  # RuntimeError: encrypted members
        notes.append(f"{archive.name} could not be unpacked ({e})")
        return None
    return into


def _candidates(top: Path, modules: set[str]) -> list[tuple[int, Path, int]]:
    """(depth, folder, how many step files it holds) for every folder under `top` with any."""
    out = []
    for here, dirs, names in os.walk(top):
        here_p = Path(here)
        depth = len(here_p.relative_to(top).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                         and not (here_p / d / "pyvenv.cfg").exists() and depth < MAX_DEPTH)
        hits = sum(f"{m}.py" in names for m in modules)
        if hits:
            out.append((depth, here_p, hits))
    return out


def find_exercises(submission: Path, modules: list[str], scratch: Path) -> Found:
    """The learner's exercise files in a submission: the shallowest folder holding any step
    file (a folder named `exercises` first at equal depth, then the one with most files).
    Zips in the submission (up to two folders down) are unpacked into `scratch` first."""
    modules = list(dict.fromkeys(modules))
    notes: list[str] = []
    tops = [submission]
    for archive in sorted(p for p in submission.rglob("*.zip") if len(p.relative_to(submission).parts) <= 3):
        unpacked = _unpack(archive, scratch / f"unzipped-{len(tops)}", notes)
        if unpacked is not None:
            tops.append(unpacked)
    wanted = set(modules)
    cands = [(depth, path.name != "exercises", -hits, str(path), path)
             for top in tops for depth, path, hits in _candidates(top, wanted)]
    if not cands:
        return Found(None, [], sorted(f"exercises/{m}.py" for m in modules),
                     notes + ["no exercise file (exercises/step1_embeddings.py, ...) was found in the submission: "
                              "upload the handout's exercises/ folder, a zip of it, or its files"])
    folder = min(cands)[-1]
    taken, skipped = [], []
    for p in sorted(folder.iterdir()):
        if p.is_symlink() or not p.is_file():
            continue
        if p.name == HINTS_FILE or (p.suffix == ".py" and p.name not in NOT_TAKEN and not p.name.startswith("test_")):
            if p.stat().st_size > MAX_FILE:
                skipped.append(f"{p.name} (over {MAX_FILE >> 20} MB)")
            else:
                taken.append(p)
    if skipped:
        notes.append("not taken: " + ", ".join(skipped))
    have = {p.stem for p in taken}
    missing = [f"exercises/{m}.py" for m in modules if m not in have]
    return Found(folder, taken, missing, notes)


# ----------------------------------------------------------------------- the graded tree

def prepare(official: Path, submission: Path, out: Path, steps: list[Step] | None = None,
            scratch: Path | None = None) -> Found:
    """Write the graded tree to `out`: the official handout files of `official` (never its
    reference/) with the learner's exercise files from `submission` on top."""
    steps = steps if steps is not None else load_manifest(official / "grader" / "steps.toml")
    if out.exists():
        shutil.rmtree(out)
    for rel in handout.files(official):
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(official / rel, dest)
    modules = list(dict.fromkeys(s.module for s in steps))
    with tempfile.TemporaryDirectory(prefix="kata-submission-") as tmp:
        found = find_exercises(submission, modules, Path(scratch or tmp))
        for p in found.files:
            shutil.copyfile(p, out / "exercises" / p.name)
    return found


def hints_used(tree: Path) -> dict[str, int]:
    """`exercises/hints_used.json` (`{"step3": 2}`), or {} when absent or malformed."""
    try:
        data = json.loads((tree / "exercises" / HINTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ----------------------------------------------------------------------- results.json

def _not_started(r: StepResult) -> str:
    return (f"not started: {r.step.learner_file} still raises NotImplementedError in "
            f"{r.step.functions or 'every function'}. Implement them; `nox -s check -- --step {r.step.id}` grades it.")


def results_json(results: list[StepResult], policy: Policy, found: Found, skipped: list[Step],
                 hints: dict[str, int], seconds: float) -> dict:
    """Gradescope's results.json for graded `results`, with the policy's visibility per
    step, one entry per step not graded here, and what was taken from the submission."""
    data = gradescope.results_json(results, "exercises")
    by_id = {r.step.id: r for r in results}
    tests, collapsed = [], set()
    missing = {m.split("/")[-1][:-3] for m in found.missing}
    for t in data["tests"]:
        r = by_id[t["number"]]
        if r.status == NOT_STARTED:  # one line, not one failing test per stub
            if r.step.id in collapsed:
                continue
            collapsed.add(r.step.id)
            t = {**t, "name": f"step {r.step.number}: {r.step.title}", "score": 0.0,
                 "max_score": 0.0 if r.step.bonus else r.step.points, "output": _not_started(r)}
        if r.step.module in missing and r.status != PASSED:
            t = {**t, "output": f"missing: the submission has no {r.step.learner_file}; graded as the stub.\n{t['output']}"}
        tests.append({**t, "visibility": policy.step(r.step.id).visibility})
    for s in skipped:
        tests.append({"name": f"step {s.number}: {s.title}", "number": s.id, "score": 0.0, "max_score": 0.0,
                      "output": policy.step(s.id).why, "visibility": "visible"})
    where = f"graded {len(found.files)} file(s) from {found.folder.name + '/' if found.folder else 'nowhere'}"
    extra = {
        "steps": {r.step.id: {"status": r.status, "score": r.score, "max_score": 0.0 if r.step.bonus else r.step.points,
                              "bonus": r.step.bonus, "seconds": round(r.seconds, 1),
                              "kata_errors": len(r.kata_errors),
                              "first_failure": (r.first_failure.name if r.first_failure and r.status != NOT_STARTED else "")}
                  for r in results},
        "hints_used": hints,
        "files": [p.name for p in found.files],
        "missing": found.missing,
    }
    output = "\n".join([data["output"], where + " (its tests/, grader/ and conftest.py are never used)"] + found.notes)
    # stdout (the whole table) is for instructors: it would show steps the policy hides.
    return {**data, "tests": tests, "output": output, "visibility": policy.visibility, "stdout_visibility": "hidden",
            "execution_time": int(round(seconds)), "extra_data": extra}


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)  # Gradescope never reads half a file


def grade_submission(submission: Path, results_path: Path, *, official: Path = OFFICIAL, only: list[str] | None = None,
                     time_limit: float | None = None, work: Path | None = None, jobs: int | None = None) -> dict:
    """Grade `submission` with the official tests under the policy's limits; write and
    return results.json (rewritten after each step, so a platform time-out keeps the grades so far)."""
    start = time.monotonic()
    manifest = official / "grader" / "steps.toml"
    manifest = manifest if manifest.exists() else MANIFEST
    every_step = load_manifest(manifest)  # read once; the policy and the graded tree use it too
    policy = load_policy(manifest, steps=every_step)
    steps = every_step
    if only:
        wanted = {w.strip() for w in only if w.strip()}
        unknown = wanted - {s.id for s in steps}
        if unknown:
            raise SystemExit(f"--steps {', '.join(sorted(unknown))}: no such step; the manifest has {', '.join(s.id for s in steps)}")
        steps = [s for s in steps if s.id in wanted]
    skipped = [s for s in steps if not policy.step(s.id).graded]
    todo = [dataclasses.replace(s, time_limit=policy.step(s.id).time_limit or s.time_limit)
            for s in steps if policy.step(s.id).graded]
    become_subreaper()  # the learner's leftover processes become ours, to end before the last write
    with tempfile.TemporaryDirectory(prefix="kata-autograder-") as tmp:
        tree = Path(work) if work else Path(tmp) / "graded"
        found = prepare(official, submission, tree, every_step, Path(tmp))
        hints = hints_used(tree)
        confined = worker_user_env(tree, Path(tmp))  # as root: the worker runs as kata-worker
        # The official tree's own copies of the answers (and any reference/) are hidden from it too.
        confined[HIDDEN_ENV] = os.pathsep.join(str(official / d) for d in ("tests/_snapshots", "reference"))
        saved = {k: os.environ.get(k) for k in confined}
        os.environ.update(confined)  # the step processes (the judges) start their workers with it
        done: dict[str, StepResult] = {}

        def snapshot(r: StepResult | None = None) -> dict:
            if r is not None:
                done[r.step.id] = r
            rows = [done.get(s.id) or StepResult(s, WAITING, note="not graded: the autograder stopped before this step "
                                                 "(it ran out of time)") for s in todo]
            data = results_json(rows, policy, found, skipped, hints, time.monotonic() - start)
            _write(results_path, data)
            return data

        snapshot()
        try:
            # No more steps at once than whole CPUs granted (Gradescope's default is half a vCPU).
            graded = grade(todo, tree, "exercises", jobs=jobs or min(policy.jobs, default_jobs()), gpu=False,
                           on_result=snapshot,
                           time_limit=time_limit, memory=int(policy.memory_gb * 2**30), separate=True)
        finally:
            # Nothing the learner's code started may outlive the grading: it could rewrite the results.
            end_learner_processes(confined.get("KATA_WORKER_USER"))
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        done.update({r.step.id: r for r in graded})
        return snapshot()


# ----------------------------------------------------------------------- official inputs

def record_official_answers(root: Path, official: Path, *, seed: int | None = None, steps: list[str] | None = None,
                            jobs: int | None = None) -> int:
    """Give the official tree `official` inputs the learner handout never contained: a new
    Hypothesis seed (grader/official_inputs.toml; every test then draws from it) and the
    reference's answers for those inputs, recorded here from `root`'s reference/ into
    `official/tests/_snapshots`. A learner who copies the handout's stored answers into
    their code finds none of them asked for. `steps`: record only these (the others keep
    no answers: for tests of the autograder itself). Returns the seed."""
    import secrets

    from .pytest_plugin import OFFICIAL_INPUTS
    from .runner import NEEDS_GPU, NO_TESTS

    seed = secrets.randbits(63) if seed is None else seed
    manifest = load_manifest(root / "grader" / "steps.toml")
    chosen = [s for s in manifest if steps is None or s.id in steps]
    with tempfile.TemporaryDirectory(prefix="kata-official-") as tmp:
        full = Path(tmp) / "kata"
        for rel in [*handout.files(root), *(p.relative_to(root) for p in (root / "reference").glob("*.py"))]:
            (full / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, full / rel)
        (full / "grader" / OFFICIAL_INPUTS).write_text(f"hypothesis_seed = {seed}\n", encoding="utf-8")
        shutil.rmtree(full / "tests" / "_snapshots", ignore_errors=True)
        (full / "tests" / "_snapshots").mkdir(parents=True)
        saved = os.environ.get("KATA_SNAPSHOTS")
        os.environ["KATA_SNAPSHOTS"] = "record"
        try:
            results = grade(chosen, full, "reference", jobs=jobs or default_jobs(), ignore_needs=True, gpu=False)
        finally:
            os.environ.pop("KATA_SNAPSHOTS") if saved is None else os.environ.__setitem__("KATA_SNAPSHOTS", saved)
        bad = [f"{r.step.id} ({r.status}: {r.first_failure.name if r.first_failure else r.note})"
               for r in results if r.status not in (PASSED, NEEDS_GPU, NO_TESTS)]
        if bad:
            raise RuntimeError(f"the reference does not pass on the official inputs: {', '.join(bad)}")
        shutil.rmtree(official / "tests" / "_snapshots", ignore_errors=True)
        shutil.copytree(full / "tests" / "_snapshots", official / "tests" / "_snapshots")
        shutil.copy2(full / "grader" / OFFICIAL_INPUTS, official / "grader" / OFFICIAL_INPUTS)
    return seed


# ----------------------------------------------------------------------- autograder.zip

def build_zip(root: Path = OFFICIAL, out: Path | None = None, wheelhouse: Path | None = None, *,
              official_inputs: bool | list[str] = False, seed: int | None = None) -> Path:
    """`dist/autograder.zip`: setup.sh and run_autograder at its root, the learner handout
    (leak-checked, no reference/) under `official/`, and optionally a wheelhouse under `wheels/`.

    `official_inputs`: grade on inputs the handout never contained (`record_official_answers`,
    which grades the reference once: minutes), for every step (True) or the listed ones; the
    instructor's build (`nox -s autograder`) does. False: the handout's own inputs and answers."""
    root = root.resolve()
    out = (out or root / "dist" / "autograder.zip").resolve()
    with tempfile.TemporaryDirectory(prefix="kata-autograder-zip-") as tmp:
        folder, _ = handout.build(root, Path(tmp) / "official", make_zip=False)
        if official_inputs:
            record_official_answers(root, folder, seed=seed,
                                    steps=None if official_inputs is True else list(official_inputs))
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_suffix(".zip.part")
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
            for name in ("setup.sh", "run_autograder"):
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (stat.S_IFREG | 0o755) << 16  # executable once unzipped
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, (root / "platforms" / "gradescope" / name).read_bytes())
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    z.write(p, Path("official") / p.relative_to(folder))
            packages = [p for p in sorted(wheelhouse.iterdir()) if p.name.endswith((".whl", ".tar.gz", ".zip"))] if wheelhouse else []
            for p in packages:  # wheels, and the sdists of packages without one
                z.write(p, Path("wheels") / p.name, compress_type=zipfile.ZIP_STORED)  # compressed already
        part.replace(out)
    return out


def unpack_zip(zip_path: Path, dest: Path) -> Path:
    """`autograder.zip` unpacked into `dest` as Gradescope unpacks it into /autograder/source,
    setup.sh and run_autograder executable (zipfile's extractall drops the mode bits)."""
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(dest)
    for name in ("setup.sh", "run_autograder"):
        (dest / name).chmod(0o755)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader.autograder", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write dist/autograder.zip for Gradescope")
    b.add_argument("--out", type=Path, default=None, help="the zip to write (default dist/autograder.zip)")
    b.add_argument("--wheelhouse", type=Path, default=None,
                   help="a folder of wheels to carry (setup.sh then installs offline from them)")
    b.add_argument("--handout-inputs", action="store_true",
                   help="grade on the handout's own inputs and stored answers (quicker to build; a learner who copies "
                        "the handout's answers into their code then passes: for trying the autograder out only)")
    g = sub.add_parser("grade", help="grade /autograder/submission into /autograder/results/results.json")
    root = Path(os.environ.get("AUTOGRADER_ROOT") or DEFAULT_ROOT)
    g.add_argument("--submission", type=Path, default=root / "submission")
    g.add_argument("--results", type=Path, default=root / "results" / "results.json")
    g.add_argument("--steps", default=os.environ.get("KATA_AUTOGRADER_STEPS", ""),
                   help="comma-separated step ids to grade (default: every step)")
    g.add_argument("--time-limit", type=float, default=None, help="seconds per step (default: the policy's)")
    g.add_argument("--jobs", type=int, default=None, help="steps graded at once (default: the policy's)")
    r = sub.add_parser("prepare", help="write the official tree with a submission's exercise files")
    r.add_argument("--submission", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.cmd == "build":
        try:
            zipped = build_zip(OFFICIAL, a.out, a.wheelhouse, official_inputs=not a.handout_inputs)
        except (RuntimeError, ValueError) as e:
            print(f"autograder.zip not built: {e}", file=sys.stderr)
            return 1
        print(f"autograder: {zipped} ({zipped.stat().st_size / 1e6:.1f} MB)\n"
              "upload it on Gradescope: assignment -> Configure Autograder -> Zip file upload")
        return 0
    if a.cmd == "prepare":
        found = prepare(OFFICIAL, a.submission.resolve(), a.out.resolve())
        print(f"{a.out}: official tree with {len(found.files)} learner file(s) from {found.folder}")
        for note in found.notes + [f"missing: {m}" for m in found.missing]:
            print(f"  {note}")
        return 0
    try:
        data = grade_submission(a.submission.resolve(), a.results.resolve(), only=a.steps.split(",") if a.steps else None,
                                time_limit=a.time_limit, jobs=a.jobs)
    except Exception as e:  # Gradescope shows nothing without a results.json: say what broke
        import traceback

        traceback.print_exc()
        _write(a.results.resolve(), {"score": 0.0, "output": f"the autograder itself failed ({type(e).__name__}: {e}); "
                                     "tell your instructor", "tests": [], "visibility": "visible"})
        return 1
    print(data["output"])
    for t in data["tests"]:
        print(f"  {t['score']:>6g}/{t['max_score']:<6g} {t['name']}")
    print(f"score {data['score']:g}/{data['max_score']:g}, wrote {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
