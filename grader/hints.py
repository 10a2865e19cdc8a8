"""`nox -s hint -- N`: a step's hints, one at a time, from the concept to nearly the code.

    python -m grader.hints 3          # the next hint of step 3 you have not seen: "hint 2/3: ..."
    python -m grader.hints 3 --all    # every hint of step 3
    python -m grader.hints bonus 2    # (or bonus2) a bonus step

Hints live in `grader/steps.toml` (`hints = [...]` per step); a learner handout keeps
them in `grader/hints.toml` instead, base64-encoded so that reading the manifest spoils
nothing (`grader.manifest.load_manifest` reads both forms). How many of a step's hints
the learner has seen is kept in `exercises/hints_used.json` (`{"step3": 2}`), so the
count travels with a submission: the grader's table and its Gradescope JSON show it.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .manifest import MANIFEST, Step, load_manifest

ROOT = Path(__file__).resolve().parents[1]
USED_FILE = "hints_used.json"


def used_path(root: Path) -> Path:
    """Where the seen-hint counts live: always the learner's exercises/ (it is what is submitted)."""
    return root / "exercises" / USED_FILE


def load_used(root: Path) -> dict[str, int]:
    """{step id: hints seen}; a missing or unreadable file means none seen."""
    try:
        data = json.loads(used_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, (int, float)) and v > 0}


def save_used(root: Path, used: dict[str, int]) -> None:
    path = used_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(sorted(used.items())), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def seen(step: Step, used: dict[str, int]) -> int:
    """Hints of `step` the learner has seen (never more than it has)."""
    return min(used.get(step.id, 0), len(step.hints))


def find_step(steps: list[Step], words: list[str]) -> Step:
    """`3`, `step3`, `bonus 2`, `bonus2`, `8_lab` -> the manifest's step."""
    w = "".join(words).strip().lower().replace(" ", "")
    for s in steps:
        if w in (s.id, s.id.replace("step", ""), s.number.replace(" ", "")):
            return s
    known = ", ".join(s.number for s in steps)
    raise SystemExit(f"no step {' '.join(words)!r}; the manifest has {known}")


def reveal(root: Path, step: Step, show_all: bool = False) -> list[str]:
    """The lines to print (`hint k/n: ...`), recording what is now seen."""
    used = load_used(root)
    n = len(step.hints)
    before = seen(step, used)
    if show_all:
        upto, shown = n, range(n)
    else:
        upto = min(before + 1, n)
        shown = [upto - 1]
    lines = [f"hint {i + 1}/{n}: {step.hints[i]}" for i in shown]
    if not show_all and before >= n:
        lines.append(f"(that was the last of {'' if step.bonus else 'step '}{step.number}'s {n} hints; `--all` lists them all)")
    elif not show_all and upto < n:
        lines.append(f"({n - upto} more: run the same command again)")
    if upto > before:
        used[step.id] = upto
        save_used(root, used)
    return lines


def how_to_ask(step: Step, used: dict[str, int]) -> str:
    """One line for the failure panel: how many hints are seen and how to get the next."""
    n, k = len(step.hints), seen(step, used)
    arg = step.number.split(" (")[0]
    if k >= n:
        return f"all {n} hints seen: `nox -s hint -- {arg} --all` shows them again"
    return f"`nox -s hint -- {arg}` shows hint {k + 1}/{n}" + (f" (seen {k})" if k else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nox -s hint --", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("step", nargs="+", help="3, step3, bonus 2, bonus2")
    p.add_argument("--all", action="store_true", help="show every hint of the step")
    p.add_argument("--root", type=Path, default=ROOT, help="the kata's folder (default: this checkout)")
    args = p.parse_args(argv)
    manifest = args.root / "grader" / "steps.toml"
    step = find_step(load_manifest(manifest if manifest.exists() else MANIFEST), args.step)
    print(f"{'' if step.bonus else 'step '}{step.number}: {step.title}")
    for line in reveal(args.root, step, args.all):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
