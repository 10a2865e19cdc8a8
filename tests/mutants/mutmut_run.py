"""Tool-driven mutation testing of steps 1-7 with mutmut 3 (issue 11): `nox -s mutmut`.

    python tests/mutants/mutmut_run.py [--step step4 ...] [--all-functions] [--work DIR]

The hand-written mutants in `tests/mutants/step*.toml` (`nox -s mutants`) name the
mistakes a learner is likely to make; this runner lets mutmut generate every small
mutation it knows (operators, constants, arguments, return values...) and reports
which ones the step's tests fail to notice. Survivors are triaged in
`tests/mutants/MUTATION.md`: killed by a test in `tests/test_<step>_contracts.py`, or
listed as equivalent with a reason. Slow (minutes per step), so outside CI.

How one step runs. The tests compare the graded solution (`student(...)`) with the
reference (`oracle(...)`), so the mutated code must be the *graded* package while the
oracle stays clean, as in `tests/mutants/run.py`. For each step a work folder
`<work>/<step>/` gets:

- `exercises/` = a copy of `reference/` (the package mutmut mutates; only the step's
  module, `only_mutate`), `reference/` = the clean oracle, `tests/`, `conftest.py`,
  `grader/`, and `pyproject.toml` = the repo's plus a `[tool.mutmut]` table;
- `KATA_SOLUTION=exercises`, one torch thread (a small pytest plugin: tests/conftest.py
  asks for 2), Hypothesis' derandomized `ci` profile;
- `python -m mutmut run --max-children 1 <patterns>` in that folder. mutmut imports
  torch and collects the tests once, records which tests call which function, then
  forks one child per mutant that runs only those tests with `-x`; a child is killed
  after ~30x the tests' clean CPU time (mutmut's `timeout`).
- mutmut never mutates a decorated function, so the copy of the step's module has its
  `@torch.no_grad()` moved below the module (`undecorate`): `generate`, `evaluate`.

By default only the functions a learner writes (`open` in grader/steps.toml) are
mutated: the given scaffolding (dataclasses, `__init__`s, helpers) is not the
learner's code and is out of scope (`--all-functions` mutates them too). The result
per step goes to `<work>/<step>/result.json` and a summary table is printed; every
survivor is shown with its diff so it can be triaged. Exit status 1 if a survivor is
not listed in MUTATION.md's survivor table (by mutmut name) as equivalent, out of
scope or GPU only; 0 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = Path(__file__).resolve().parent / "MUTATION.md"
STEPS = ("step1", "step2", "step3", "step4", "step5", "step6", "step7")

PLUGIN = """\
import os


def pytest_sessionstart(session):  # after tests/conftest.py asked for 2 torch threads
    import torch

    torch.set_num_threads(int(os.environ.get("KATA_MUTANT_THREADS", "1")))
"""

# mutmut's exit-code meanings (mutmut.stats.status_by_exit_code), folded into our columns.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
          -9: "segfault", -11: "segfault", None: "not checked"}


def load_steps() -> dict[str, dict]:
    return {s["id"]: s for s in tomllib.loads((ROOT / "grader" / "steps.toml").read_text())["step"]}


def open_functions(step: dict) -> list[str]:
    """`open = "exercises/step1_embeddings.py: Embeddings.forward, init_weights"` ->
    ["Embeddings.forward", "init_weights"]."""
    return [name.strip() for name in step["open"].split(":", 1)[1].split(",") if name.strip()]


def mutant_patterns(step: dict) -> list[str]:
    """mutmut's mutant-name globs for the learner-written functions of a step:
    `exercises.<module>.x_<func>__mutmut_*`, methods `exercises.<module>.xǁ<Class>ǁ<meth>__mutmut_*`."""
    patterns = []
    for name in open_functions(step):
        cls, _, func = name.rpartition(".")
        if not cls and func[:1].isupper():  # a whole class (step 7's CausalLMCollator): every method
            cls, func = func, "*"
        mangled = f"xǁ{cls}ǁ{func}" if cls else f"x_{func}"
        patterns.append(f"exercises.{step['module']}.{mangled}__mutmut_*")
    return patterns


NO_GRAD = re.compile(r"^@torch\.no_grad\(\)\ndef (\w+)\(", re.MULTILINE)


def undecorate(source: str) -> str:
    """`@torch.no_grad()` on a top-level def -> the same wrapping after the module's end.

    mutmut leaves decorated functions alone (it cannot put its trampoline under a
    decorator), so `generate` and `evaluate` would never be mutated. The wrapped name is
    rebound at import time, so every caller still gets the no-grad function.
    """
    names = NO_GRAD.findall(source)
    source = NO_GRAD.sub(lambda m: f"def {m.group(1)}(", source)
    return source + "".join(f"\n{n} = torch.no_grad()({n})\n" for n in names)


def prepare(step: dict, work: Path) -> None:
    """A fresh work folder for one step (see the module docstring)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / "reference", work / "exercises", ignore=ignore)
    shutil.copytree(ROOT / "reference", work / "reference", ignore=ignore)
    target = work / "exercises" / f"{step['module']}.py"
    target.write_text(undecorate(target.read_text()))
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copytree(ROOT / "grader", work / "grader", ignore=ignore)
    shutil.copy2(ROOT / "conftest.py", work / "conftest.py")
    (work / "kata_mutmut_plugin.py").write_text(PLUGIN)
    selection = ["-m", f"{step.get('tests', step['id'])} and not slow"]
    if step.get("select"):
        selection += ["-k", step["select"]]
    config = {
        "source_paths": ["exercises"],
        "only_mutate": [f"exercises/{step['module']}.py"],
        "also_copy": ["reference", "grader", "conftest.py", "kata_mutmut_plugin.py"],
        "pytest_add_cli_args_test_selection": [*selection, "tests/"],
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "kata_mutmut_plugin"],
        # The mutant's tests get (clean CPU time + 1 s) x 15 x 2 CPU seconds.
        "timeout_multiplier": 15.0,
        "use_git_change_detection": False,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + "\n".join(lines) + "\n")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "KATA_SOLUTION": "exercises", "KATA_MUTANT_THREADS": "1", "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1", "HYPOTHESIS_PROFILE": "ci", "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("PYTHONPATH", None)
    return env


def read_results(work: Path, step: dict, patterns: list[str] | None) -> dict[str, str]:
    """mutant name -> status, from mutmut's `mutants/exercises/<module>.py.meta`."""
    import fnmatch

    meta = json.loads((work / "mutants" / "exercises" / f"{step['module']}.py.meta").read_text())
    out = {}
    for name, code in meta["exit_code_by_key"].items():
        if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
            continue
        out[name] = STATUS.get(code, f"suspicious (exit {code})")
    return out


def show(work: Path, name: str) -> str:
    """The mutant's diff (`mutmut show`), without the file header lines."""
    proc = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, env=environment(),
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if not line.startswith(("---", "+++", "#"))]
    return "\n".join(lines).strip() or proc.stderr.strip()


ACCEPTED = ("equivalent", "out of scope", "gpu only")


def listed_equivalent() -> set[str]:
    """Mutant names in MUTATION.md's survivor table whose verdict accepts them: `equivalent`,
    `out of scope` (given code, e.g. a default in the given signature) or `GPU only` (a
    device mistake a CPU cannot show; a CUDA-only test kills it there)."""
    if not TABLE.exists():
        return set()
    names = set()
    for line in TABLE.read_text().splitlines():
        m = re.match(r"\|\s*`([^`]+__mutmut_\d+)`\s*\|", line)
        if m and any(word in line.lower().rsplit("|", 2)[-2] for word in ACCEPTED):
            names.add(m.group(1))
    return names


def run_step(step: dict, base: Path, all_functions: bool, nice: int) -> dict:
    work = base / step["id"]
    prepare(step, work)
    patterns = None if all_functions else mutant_patterns(step)
    cmd = ["nice", "-n", str(nice)] if nice and shutil.which("nice") else []
    cmd += [sys.executable, "-m", "mutmut", "run", "--max-children", "1", *(patterns or [])]
    print(f"== {step['id']}: {' '.join(cmd[-len(patterns or []) - 4:])}", flush=True)
    t0 = time.time()
    with open(work / "mutmut.log", "w") as log:
        proc = subprocess.run(cmd, cwd=work, env=environment(), stdout=log, stderr=subprocess.STDOUT)
    seconds = time.time() - t0
    if proc.returncode != 0:
        tail = (work / "mutmut.log").read_text().splitlines()[-30:]
        raise SystemExit(f"mutmut failed on {step['id']} (exit {proc.returncode}); {work}/mutmut.log ends:\n"
                         + "\n".join(tail))
    results = read_results(work, step, patterns)
    survivors = {name: show(work, name) for name, status in results.items() if status == "survived"}
    summary = {
        "step": step["id"], "seconds": round(seconds), "scope": "all functions" if all_functions else "open functions",
        "generated": len(results),
        "counts": {s: sum(1 for v in results.values() if v == s) for s in sorted(set(results.values()))},
        "survivors": survivors, "status": results,
    }
    (work / "result.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--step", action="append", choices=STEPS, help="only this step (repeatable); default 1-7")
    p.add_argument("--work", type=Path, default=ROOT / ".mutmut", help="work folders (default .mutmut/)")
    p.add_argument("--all-functions", action="store_true", help="also mutate the given scaffolding")
    p.add_argument("--nice", type=int, default=10, help="niceness of the mutmut runs (default 10)")
    args = p.parse_args(argv)
    try:
        import mutmut  # noqa: F401
    except ImportError:
        raise SystemExit("mutmut is not installed in this Python; `nox -s mutmut` installs it")
    steps = load_steps()
    summaries = [run_step(steps[s], args.work, args.all_functions, args.nice) for s in (args.step or STEPS)]
    equivalent = listed_equivalent()
    print(f"\n{'step':6} {'mutants':>7} {'killed':>6} {'survived':>8} {'timeout':>7} {'other':>5} {'time':>6}")
    unlisted = []
    for s in summaries:
        c = s["counts"]
        other = s["generated"] - c.get("killed", 0) - c.get("survived", 0) - c.get("timeout", 0)
        print(f"{s['step']:6} {s['generated']:7} {c.get('killed', 0):6} {c.get('survived', 0):8} "
              f"{c.get('timeout', 0):7} {other:5} {s['seconds']:5}s")
        for name, diff in s["survivors"].items():
            listed = name in equivalent
            unlisted += [] if listed else [name]
            print(f"  survived{' (listed in MUTATION.md)' if listed else ''}: {name}\n    "
                  + diff.replace("\n", "\n    "))
    if unlisted:
        print(f"\n{len(unlisted)} survivor(s) not triaged in {TABLE.relative_to(ROOT)}: "
              "kill them with a test in tests/test_<step>_contracts.py or list them with a reason")
    return 1 if unlisted else 0


if __name__ == "__main__":
    raise SystemExit(main())
