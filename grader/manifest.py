"""The step manifest, `grader/steps.toml`: the one place that lists the kata's steps.

Each `[[step]]` table: `id`, `module`, `title`, `points`, `open`, `hints` (a list, from
the concept to nearly the code; `nox -s hint -- N` shows them one at a time; an older
single `hint = "..."` reads as a one-item list), and optionally
- `bonus = true`: an extra step after the main ones (its points are extra credit);
- `needs = ["step1", ...]`: graded only once these steps pass ("waiting on step N");
- `tests = "step8"`: whose test files to run (default: the step's own id, i.e.
  `tests/test_<id>_*.py`), and `select = "lab"`: a pytest `-k` expression within them;
- `gpu = true` with `gpu_command`: needs CUDA; elsewhere it shows "needs a GPU";
- `time_limit`: seconds for the whole step's test process (default 180).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MANIFEST = Path(__file__).with_name("steps.toml")
DEFAULT_TIME_LIMIT = 180.0


@dataclass(frozen=True)
class Step:
    id: str
    module: str
    title: str
    points: float
    open: str
    hints: tuple[str, ...] = ()
    bonus: bool = False
    needs: tuple[str, ...] = ()
    tests: str = ""
    select: str = ""
    gpu: bool = False
    gpu_command: str = ""
    time_limit: float = DEFAULT_TIME_LIMIT
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def hint(self) -> str:
        """The first hint (older callers read one hint)."""
        return self.hints[0] if self.hints else ""

    @property
    def test_group(self) -> str:
        """The `stepN` / `bonusN` whose `tests/test_<group>_*.py` files hold this step's tests."""
        return self.tests or self.id

    @property
    def learner_file(self) -> str:
        return self.open.split(":", 1)[0].strip() if self.open else f"exercises/{self.module}.py"

    @property
    def functions(self) -> str:
        return self.open.split(":", 1)[1].strip() if ":" in self.open else ""

    @property
    def number(self) -> str:
        """What a learner calls it: `3`, `bonus 1`, `8 (lab)`."""
        digits = "".join(ch for ch in self.id if ch.isdigit())
        label = f"bonus {digits}" if self.bonus else digits or self.id
        suffix = self.id.split("_", 1)[1] if "_" in self.id else ""
        return f"{label} ({suffix})" if suffix else label


_KNOWN = {f for f in Step.__dataclass_fields__ if f != "extra"}
_REQUIRED = ("id", "module", "title", "points", "open")


def load_manifest(path: Path | str = MANIFEST) -> list[Step]:
    """Every step in learning order (main steps first, then bonus steps, each in file order)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from None
    steps: list[Step] = []
    for i, table in enumerate(data.get("step", []), 1):
        if "hint" not in table and table.get("hints"):
            # `hints` (a list, shown one at a time by `nox -s hint`) replaces `hint`;
            # the report's one-line hint is the first, the concept.
            table = {**table, "hint": table["hints"][0]}
        missing = [k for k in _REQUIRED if k not in table]
        if missing:
            raise ValueError(f"{path}: [[step]] number {i} lacks {', '.join(missing)}")
        hints = table.get("hints", [table["hint"]] if "hint" in table else None)
        if isinstance(hints, str):
            hints = [hints]
        if not hints or not all(isinstance(h, str) and h.strip() for h in hints):
            raise ValueError(f"{path}: [[step]] number {i} lacks hints (a list of strings: hints = [\"...\", \"...\"])")
        known = {k: v for k, v in table.items() if k in _KNOWN}
        known["hints"] = tuple(hints)
        known["needs"] = tuple(known.get("needs", ()))
        known["points"] = float(known["points"])
        known["time_limit"] = float(known.get("time_limit", DEFAULT_TIME_LIMIT))
        steps.append(Step(**known, extra={k: v for k, v in table.items() if k not in _KNOWN and k != "hint"}))
    ids = [s.id for s in steps]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"{path}: step ids must be unique; repeated: {', '.join(dupes)}")
    for s in steps:
        unknown = [n for n in s.needs if n not in ids]
        if unknown:
            raise ValueError(f"{path}: step {s.id} needs unknown step(s) {', '.join(unknown)}")
    return [s for s in steps if not s.bonus] + [s for s in steps if s.bonus]
