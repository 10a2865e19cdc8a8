"""Attacks on the grade (issue 21): how much an untouched stub plus hostile code scores.

    python tests/mutants/attacks.py [--attack NAME] [--steps step1,step2,step3,step4]

Each `tests/mutants/attacks/<name>.py` is appended to the learner's untouched stubs of
the graded steps (or only to the modules its `# targets:` line names) in a fresh copy of
the built handout, and the copy is graded twice, as learners and courses grade:

- by the handout's grader in its separated mode, `python -m grader --separate --step ... --json`;
- by the Gradescope autograder (`autograder.zip`, `run_autograder` in a simulated
  `/autograder`), whose results.json is read again 5 s after run_autograder returns (an
  attack may leave a process behind that rewrites it).

An honest grade of every attack is 0 on every step. The table printed at the end (and
`--json PATH`) is the measurement `docs/separation.md` keeps. CI runs every attack in
fewer gradings (tests/test_platform_autograder.py, `ATTACK_ROUNDS`); this harness grades
each one on its own, for the table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks.grading import clean_env  # noqa: E402  (the same clean environment as the grading benchmark)

ATTACKS_DIR = Path(__file__).resolve().parent / "attacks"
DEFAULT_STEPS = "step1,step2,step3,step4"  # the cheap steps: no training run


def targets(attack: Path, modules: dict[str, str], steps: list[str]) -> list[str]:
    """The modules the attack is appended to: its `# targets:` line, else every graded step's."""
    for line in attack.read_text().splitlines():
        if line.startswith("# targets:"):
            return line.split(":", 1)[1].split()
    return [modules[s] for s in steps]


def scores(results: dict) -> dict[str, float]:
    """Gradescope results.json -> points per step (its tests' `number` is the step id)."""
    out: dict[str, float] = {}
    for t in results.get("tests", []):
        out[t["number"]] = round(out.get(t["number"], 0.0) + float(t.get("score", 0.0)), 2)
    return out


def grade_in_handout(tree: Path, steps: list[str], out: Path) -> dict[str, float]:
    args = [a for s in steps for a in ("--step", s)]
    subprocess.run([sys.executable, "-m", "grader", "--root", str(tree), *args, "--no-bonus", "--separate",
                    "--json", str(out)], cwd=tree, env=clean_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=1200)
    return scores(json.loads(out.read_text())) if out.exists() else {"(no results.json)": 0.0}


def grade_in_autograder(source: Path, exercises: Path, steps: list[str], tmp: Path) -> dict[str, float]:
    root = tmp / "autograder"
    (root / "results").mkdir(parents=True)
    (root / "submission").mkdir()
    (root / "source").symlink_to(source)
    shutil.copytree(exercises, root / "submission" / "exercises")
    env = clean_env(AUTOGRADER_ROOT=str(root), KATA_PYTHON=sys.executable, OMP_NUM_THREADS="1")
    subprocess.run(["bash", str(source / "run_autograder"), "--steps", ",".join(steps), "--jobs", "2"],
                   cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    time.sleep(5)  # a process the attack left behind may rewrite results.json now
    path = root / "results" / "results.json"
    got = scores(json.loads(path.read_text())) if path.exists() else {"(no results.json)": 0.0}
    kill_leftovers(f"AUTOGRADER_ROOT={root}")
    return got


def kill_leftovers(marker: str) -> None:
    """End the processes an attack left running (found by `marker` in their environment),
    so that none outlives its row and touches the next one or this machine."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), 9)
        except (OSError, ValueError):
            pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attack", action="append", help="only this attack (file stem); repeatable")
    p.add_argument("--steps", default=DEFAULT_STEPS, help=f"the steps graded (default {DEFAULT_STEPS})")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    from grader import autograder, handout
    from grader.manifest import load_manifest

    modules = {s.id: s.module for s in load_manifest()}
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    attacks = sorted(ATTACKS_DIR.glob("*.py"))
    if args.attack:
        attacks = [a for a in attacks if a.stem in args.attack]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kata-attacks-") as tmp_:
        tmp = Path(tmp_)
        built, _ = handout.build(ROOT, tmp / "handout", make_zip=False)
        source = autograder.unpack_zip(autograder.build_zip(ROOT, tmp / "autograder.zip", official_inputs=steps),
                                       tmp / "source")
        for attack in [None, *attacks]:  # None: the untouched stubs, the baseline
            label = attack.stem if attack else "(untouched stubs)"
            work = tmp / f"try-{label.strip('()').replace(' ', '-')}"
            tree = work / "handout"
            shutil.copytree(built, tree)
            if attack is not None:
                for module in targets(attack, modules, steps):
                    f = tree / "exercises" / f"{module}.py"
                    f.write_text(f.read_text() + "\n\n" + attack.read_text())
            t0 = time.time()
            handout_scores = grade_in_handout(tree, steps, work / "results.json")
            t1 = time.time()
            gradescope_scores = grade_in_autograder(source, tree / "exercises", steps, work)
            row = {"attack": label, "handout": handout_scores, "autograder": gradescope_scores,
                   "seconds": [round(t1 - t0), round(time.time() - t1)]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| attack | handout grader: points per step | run_autograder: points per step |")
    print("|---|---|---|")
    for r in rows:
        fmt = lambda d: ", ".join(f"{k} {v:g}" for k, v in d.items() if k in steps or k.startswith("(")) or "-"  # noqa: E731
        print(f"| {r['attack']} | {fmt(r['handout'])} (total {sum(r['handout'].values()):g}) "
              f"| {fmt(r['autograder'])} (total {sum(r['autograder'].values()):g}) |")
    if args.json:
        args.json.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    forged = [r["attack"] for r in rows if sum(r["handout"].values()) > 0 or sum(r["autograder"].values()) > 0]
    print(f"\n{len(forged)} of {len(rows)} rows score above 0: {', '.join(forged) or 'none'}")
    return 1 if forged else 0


if __name__ == "__main__":
    raise SystemExit(main())
