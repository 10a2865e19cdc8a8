"""The kata's proof that its tests can fail for the right reason.

    python tests/mutants/run.py [--step step5] [--jobs 2] [--subset] [--mutant NAME] [--no-baseline]

1. Baseline, per step: the reference passes its step's tests, and the untouched
   stubs in exercises/ fail it (pytest exit 1; exit 2/3/4/5 means a broken suite).
2. Mutants (`tests/mutants/*.toml`, `[[mutant]]`): each is the reference with one
   text replacement, a realistic wrong solution; the step it names must fail (pytest exit 1).
3. Alternatives (`tests/mutants/alternatives/*.toml`, `[[alternative]]`): the reference
   with one replacement that is still correct, written the way another careful learner
   would (einsum, torch.where, another init order, ...); the step's tests must pass
   (exit 0). A failing alternative means a test grades style, call order or RNG use.
4. Outside solutions (`tests/mutants/solutions/<name>/<module>.py`): whole modules of
   correct solutions written by someone who never saw the reference (a learner trial's,
   from the built handout); each module in place of the reference's must pass its step.

Each of these runs in two modes (`--mode both`, the default; or `live` / `replay`):
- live: in this repository, where reference/ exists and the tests ask it for answers;
- replay: in a freshly built learner handout (no reference/, importable or not), where
  the tests replay the answers stored in tests/_snapshots/ — how learners and the
  autograder grade. A missing stored answer there fails the run, whatever its expectation.

Every run copies reference/ to a temporary folder as a package named `exercises`
(the mutant applied, or not for the baseline) and runs
`python -P -m pytest -q -x -m "<step> and not slow" tests/test_<step>_*.py [-k <select>] -p no:cacheprovider`
with `PYTHONPATH=<tmp>:<repo>` and `KATA_SOLUTION=exercises`. (`-P` keeps the repo's
own exercises/ off the front of sys.path; the step's files are named, and `-m <step>`,
which conftest puts on exactly those files' tests, and the manifest's `-k` `select` keep
its tests as the grader does; `not slow`
leaves out step 8's graded 2-minute training runs, which `nox -s final` covers;
steps marked `gpu` in grader/steps.toml are skipped.) Exit status 0 only if the
baseline holds, every mutant is caught and every alternative and outside module passes.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTANTS_DIR = Path(__file__).resolve().parent
ALTERNATIVES_DIR = MUTANTS_DIR / "alternatives"
SOLUTIONS_DIR = MUTANTS_DIR / "solutions"
FIELDS = ("name", "step", "module", "find", "replace", "why")
RUN_TIMEOUT_S = 900  # one pytest run; pytest-timeout already bounds each test


@dataclass
class Mutant:
    name: str
    step: str
    module: str
    find: str
    replace: str
    why: str
    source: str = ""

    def apply(self, reference: str) -> str:
        return reference.replace(self.find, self.replace, 1)


@dataclass
class Result:
    label: str  # mutant or alternative name, or "reference" / "stubs"
    step: str
    expect: str  # "pass" (reference, alternatives), "fail" (stubs, mutants)
    rc: int
    seconds: float
    first_failure: str = ""
    why: str = ""
    tail: list[str] = field(default_factory=list)
    mode: str = "live"  # live (reference/ answers) or replay (a handout's stored answers)

    @property
    def ok(self) -> bool:
        return self.rc == 0 if self.expect == "pass" else self.rc == 1


def load_steps() -> dict[str, dict]:
    """The manifest's steps by id (`tests`: whose test files, `select`: a marker filter, `gpu`)."""
    manifest = tomllib.loads((ROOT / "grader" / "steps.toml").read_text())
    return {s["id"]: s for s in manifest["step"]}


def selection(step: dict, tree: Path) -> list[str]:
    """pytest arguments selecting this step's CPU tests as the grader does: the step's test
    files, tests/test_<tests or id>_*.py (conftest marks them `<tests or id>`), narrowed by
    the manifest's `-k` `select`. The files are named, not found by collecting tests/:
    collecting all ~500 tests imports every step's modules (transformers among them), ~12
    CPU-seconds a run, most of a mutant's run."""
    group = step.get("tests", step["id"])
    files = [str(p.relative_to(tree)) for p in sorted((tree / "tests").glob(f"test_{group}_*.py"))]
    args = ["-m", f"{group} and not slow", *(files or ["tests/"])]
    return args + ["-k", step["select"]] if step.get("select") else args


def load_mutants(folder: Path = MUTANTS_DIR, kind: str = "mutant") -> list[Mutant]:
    """Every `[[<kind>]]` entry of every `<folder>/*.toml`, checked: fields present, `find`
    occurs exactly once, the result compiles, names unique. Mutants (wrong solutions) live
    in tests/mutants/, alternatives (correct ones) in tests/mutants/alternatives/."""
    mutants, problems, names = [], [], set()
    for path in sorted(folder.glob("*.toml")):
        for i, entry in enumerate(tomllib.loads(path.read_text()).get(kind, [])):
            where = f"{path.name} {kind} #{i + 1} ({entry.get('name', '?')})"
            missing = [f for f in FIELDS if not isinstance(entry.get(f), str)]
            if missing:
                problems.append(f"{where}: missing or non-string field(s) {missing}")
                continue
            m = Mutant(**{f: entry[f] for f in FIELDS}, source=path.name)
            ref = ROOT / "reference" / f"{m.module}.py"
            if not ref.exists():
                problems.append(f"{where}: no reference/{m.module}.py")
                continue
            count = ref.read_text().count(m.find)
            if count != 1:
                problems.append(f"{where}: `find` occurs {count} times in reference/{m.module}.py (must be exactly once)")
                continue
            try:
                compile(m.apply(ref.read_text()), str(ref), "exec")
            except SyntaxError as e:
                problems.append(f"{where}: the mutated module does not compile (line {e.lineno}: {e.msg}); check the indentation of `replace`")
                continue
            if m.name in names:
                problems.append(f"{where}: duplicate mutant name")
            names.add(m.name)
            mutants.append(m)
    if problems:
        raise SystemExit(f"invalid {kind} files:\n  " + "\n  ".join(problems))
    return mutants


def load_alternatives() -> list[Mutant]:
    """The correct alternatives of `tests/mutants/alternatives/*.toml` (same fields as a mutant)."""
    return load_mutants(ALTERNATIVES_DIR, "alternative")


@dataclass
class OutsideModule(Mutant):
    """One module of a whole solution written outside the kata (a learner trial's):
    `replace` is the file's text, which takes the reference module's place."""

    def apply(self, reference: str) -> str:
        return self.replace


def load_outside_solutions(steps: dict[str, dict]) -> list[OutsideModule]:
    """Every `tests/mutants/solutions/<name>/<module>.py`: correct solutions written by
    someone who never saw the reference (README.md there). Each module is graded on its
    step like an alternative, the other modules being the reference's, and must pass."""
    by_module = {s["module"]: sid for sid, s in steps.items() if not s.get("gpu")}
    out, problems = [], []
    for path in sorted(SOLUTIONS_DIR.glob("*/*.py")):
        step = by_module.get(path.stem)
        if step is None:
            problems.append(f"{path.relative_to(ROOT)}: no step's module is named {path.stem}")
            continue
        text = path.read_text()
        try:
            compile(text, str(path), "exec")
        except SyntaxError as e:
            problems.append(f"{path.relative_to(ROOT)}: does not compile (line {e.lineno}: {e.msg})")
            continue
        out.append(OutsideModule(f"{path.parent.name}/{path.stem}", step, path.stem, "", text,
                                 f"outside solution {path.parent.name}", source=str(path.relative_to(ROOT))))
    if problems:
        raise SystemExit("invalid outside solutions:\n  " + "\n  ".join(problems))
    return out


def make_solution(tmp: Path, mutant: Mutant | None) -> Path:
    """reference/ copied to `<tmp>/exercises`, with the mutant's replacement applied."""
    pkg = tmp / "exercises"
    shutil.copytree(ROOT / "reference", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    if mutant is not None:
        target = pkg / f"{mutant.module}.py"
        target.write_text(mutant.apply(target.read_text()))
    return tmp


_SUMMARY = re.compile(r"^(FAILED|ERROR) (\S+)")
_running: set[subprocess.Popen] = set()
_stopping = threading.Event()


def _stop_children(signum, frame) -> None:
    """Ctrl-C / SIGTERM: end the pytest runs this script started, start no more, exit."""
    _stopping.set()
    for proc in list(_running):
        proc.kill()
    raise SystemExit(128 + signum)


PLUGIN = """\
import os

# Bind `exercises` to the mutated copy now: the repo's root conftest.py later puts the
# repo first on sys.path, where the stubs would shadow it.
if os.environ.get("KATA_MUTANT_SOLUTION"):
    import exercises

    where = os.path.dirname(os.path.abspath(exercises.__file__))
    if where != os.path.join(os.environ["KATA_MUTANT_SOLUTION"], "exercises"):
        raise RuntimeError(f"the mutant runner imported exercises from {where}, not the mutated copy")


if os.environ.get("KATA_MUTANT_REPLAY"):
    # A learner handout has no reference/: hide the one an editable install would find.
    import sys

    class _NoReference:
        def find_spec(self, name, path=None, target=None):
            if name == "reference" or name.startswith("reference."):
                raise ModuleNotFoundError(f"No module named {name!r} (learner handout)", name=name)
            return None

    sys.meta_path.insert(0, _NoReference())


def pytest_sessionstart(session):  # after tests/conftest.py set its own thread count
    import torch

    torch.set_num_threads(int(os.environ["KATA_MUTANT_THREADS"]))
"""
_threads = 1


_handout: Path | None = None  # the learner handout the replay runs grade in (built once)


def run_pytest(step: dict, solution_path: Path | None, plugin_dir: Path,
               mode: str = "live") -> tuple[int, float, str, list[str]]:
    """(exit code, seconds, first failing test, last output lines) of one step's tests on a solution."""
    env = dict(os.environ)
    paths = [str(solution_path)] if solution_path is not None else []
    tree = _handout if mode == "replay" else ROOT
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(plugin_dir), str(tree)])
    env["KATA_SNAPSHOTS"] = mode
    env.pop("KATA_MUTANT_REPLAY", None)
    if mode == "replay":
        env["KATA_MUTANT_REPLAY"] = "1"
    # Parallel runs share the cores: more torch threads than cores spin-wait and crawl.
    env["KATA_MUTANT_THREADS"] = str(_threads)
    env["KATA_MUTANT_SOLUTION"] = str(solution_path) if solution_path is not None else ""
    env["KATA_SOLUTION"] = "exercises"
    env.setdefault("HYPOTHESIS_PROFILE", "ci")
    # -m, not -k: conftest marks every test of tests/test_<step>_*.py with <step>, while -k
    # would also match other tests whose ids merely mention the step (parametrized infra tests).
    cmd = [sys.executable, "-P", "-m", "pytest", "-q", "-x", *selection(step, Path(tree)), "-p",
           "no:cacheprovider", "-p", "kata_mutant_plugin"]
    t0 = time.time()
    if _stopping.is_set():
        return 130, 0.0, "", ["(not run: interrupted)"]
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _running.add(proc)
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, rc = proc.communicate()[0] or "", 124
    finally:
        _running.discard(proc)
    first = next((m.group(2) for line in out.splitlines() if (m := _SUMMARY.match(line))), "")
    if mode == "replay" and "SnapshotMiss" in out:
        rc = 3  # a missing stored answer: the kata's error, whatever the run was expected to do
        first = first or "a missing stored answer (SnapshotMiss)"
    return rc, time.time() - t0, first, out.strip().splitlines()[-15:]


def check(label: str, step: dict, expect: str, mutant: Mutant | None, stubs: bool = False,
          mode: str = "live") -> Result:
    with tempfile.TemporaryDirectory(prefix="kata-mutant-") as tmp:
        (Path(tmp) / "kata_mutant_plugin.py").write_text(PLUGIN)
        solution = None if stubs else make_solution(Path(tmp) / "solution", mutant)
        rc, secs, first, tail = run_pytest(step, solution, Path(tmp), mode)
    return Result(label if mode == "live" else f"{label} (replay)", step["id"], expect, rc, secs, first,
                  mutant.why if mutant else "", tail, mode)


def select(mutants: list[Mutant], steps: list[str] | None, names: list[str] | None, subset: bool) -> list[Mutant]:
    chosen = [m for m in mutants if (not steps or m.step in steps) and (not names or m.name in names)]
    if subset:  # the first mutant listed for each step
        seen: set[str] = set()
        chosen = [m for m in chosen if not (m.step in seen or seen.add(m.step))]
    return chosen


def describe(r: Result) -> str:
    if r.expect == "pass":
        return "passes" if r.ok else {124: "timed out"}.get(r.rc, f"FAILS (pytest exit {r.rc})")
    if r.ok:
        return "caught"
    return {0: "SURVIVED (all tests passed)", 5: "no tests selected (exit 5)", 124: "timed out"}.get(
        r.rc, f"broken suite (pytest exit {r.rc})")


def report(results: list[Result]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text is enough
        for r in results:
            print(f"{r.label:40} {r.step:6} {describe(r):28} {r.seconds:6.1f}s  {r.first_failure}")
        return
    table = Table(title="kata self-check: baseline, mutants (must fail) and alternatives (must pass)")
    for col in ("solution / mutant / alternative", "step", "result", "time", "first failing test"):
        table.add_column(col, overflow="fold")
    for r in results:
        style = "green" if r.ok else "bold red"
        table.add_row(r.label, r.step, f"[{style}]{describe(r)}[/]", f"{r.seconds:.1f}s", r.first_failure)
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--step", action="append", help="only this step (repeatable), e.g. --step step5")
    p.add_argument("--mutant", action="append", help="only this mutant or alternative (repeatable)")
    p.add_argument("--jobs", type=int, default=2, help="pytest runs in parallel (default 2)")
    p.add_argument("--subset", action="store_true", help="only the first mutant of each step")
    p.add_argument("--no-baseline", action="store_true", help="skip the reference-passes / stubs-fail check")
    p.add_argument("--skip-reference", action="store_true",
                   help="baseline: only the stubs-fail half (the test suite itself runs the reference)")
    p.add_argument("--no-mutants", action="store_true", help="only the baseline")
    p.add_argument("--no-alternatives", action="store_true", help="skip the correct alternatives")
    p.add_argument("--mode", choices=("both", "live", "replay"), default="both",
                   help="live: against reference/ here; replay: in a built handout, on the stored answers; "
                        "both (default)")
    args = p.parse_args(argv)
    global _threads
    _threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    signal.signal(signal.SIGTERM, _stop_children)
    signal.signal(signal.SIGINT, _stop_children)

    mutants = load_mutants()
    alternatives = load_alternatives()
    clash = {m.name for m in mutants} & {a.name for a in alternatives}
    if clash:
        p.error(f"names used by both a mutant and an alternative: {sorted(clash)}")
    all_steps = load_steps()
    outside = load_outside_solutions(all_steps)
    unknown = [s for s in (args.step or []) + [m.step for m in mutants + alternatives] if s not in all_steps]
    if unknown:
        p.error(f"unknown step(s) {sorted(set(unknown))}; the steps are {', '.join(all_steps)}")
    # GPU-only steps (the lab run) cannot be checked on a CPU machine.
    steps = [s for s in (args.step or all_steps) if not all_steps[s].get("gpu")]
    jobs: list[tuple] = []
    if not args.no_baseline and not args.mutant:
        for s in steps:
            if not args.skip_reference:
                jobs.append(("reference", all_steps[s], "pass", None, False))
            jobs.append(("stubs (exercises/)", all_steps[s], "fail", None, True))
    if not args.no_mutants:
        chosen = select(mutants, steps, args.mutant, args.subset)
        jobs += [(m.name, all_steps[m.step], "fail", m, False) for m in chosen]
        without = [s for s in steps if not any(m.step == s for m in mutants)]
        if without and not args.mutant:
            print(f"note: no mutants yet for {', '.join(without)}", flush=True)
    if not args.no_alternatives and not args.subset:
        chosen = select(alternatives, steps, args.mutant, False)
        jobs += [(a.name, all_steps[a.step], "pass", a, False) for a in chosen]
        jobs += [(o.name, all_steps[o.step], "pass", o, False) for o in select(outside, steps, args.mutant, False)]

    modes = ["live", "replay"] if args.mode == "both" else [args.mode]
    jobs = [(*j, m) for m in modes for j in jobs]
    if "replay" in modes:
        global _handout
        sys.path.insert(0, str(ROOT))
        from grader.handout import build

        _handout = Path(tempfile.mkdtemp(prefix="kata-mutant-handout-")) / "handout"
        build(ROOT, _handout, make_zip=False)
    t0 = time.time()
    if args.mutant:
        known = {m.name for m in mutants + alternatives + outside}
        missing = sorted(set(args.mutant) - known)
        if missing:
            p.error(f"no mutant or alternative named {missing}")
    print(f"running {len(jobs)} pytest runs, {args.jobs} at a time ...", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(check, *j) for j in jobs]
        results = []
        for f in futures:
            r = f.result()
            results.append(r)
            print(f"  {r.label} [{r.step}]: {describe(r)} ({r.seconds:.0f}s)", flush=True)
    report(results)
    bad = [r for r in results if not r.ok]
    for r in bad:
        kind = "alternative (correct)" if r.expect == "pass" and r.why else "mutant"
        print(f"\n--- {r.label} [{r.step}]: {describe(r)}" + (f" — {kind}: {r.why}" if r.why else ""))
        print("\n".join(r.tail))
    mutant_names, alt_names = {m.name for m in mutants}, {a.name for a in alternatives}
    outside_names = {o.name for o in outside}
    for mode in modes:
        these = [r for r in results if r.mode == mode]

        def tally(names: set[str]) -> tuple[int, int]:
            """(runs as expected, runs) among this mode's runs of `names`."""
            rows = [r for r in these if r.label.removesuffix(" (replay)") in names]
            return sum(r.ok for r in rows), len(rows)

        (caught, n_mut), (passing, n_alt), (out_ok, n_out) = map(tally, (mutant_names, alt_names, outside_names))
        ok, n = tally({"reference", "stubs (exercises/)"})
        print(f"\n{mode}: {caught}/{n_mut} mutants caught; {passing}/{n_alt} correct alternatives pass; "
              f"{out_ok}/{n_out} modules of outside solutions pass; baseline {'ok' if ok == n else 'BROKEN'}")
    print(f"{time.time() - t0:.0f}s")
    if _handout is not None:
        shutil.rmtree(_handout.parent, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
