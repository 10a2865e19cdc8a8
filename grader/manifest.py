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

A learner handout keeps the hints out of its steps.toml, in `grader/hints.toml`,
base64-encoded so that reading the manifest for orientation spoils nothing
(`grader.handout` writes it; `encode_hints`); a step without `hints` takes them from there.
"""
from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MANIFEST = Path(__file__).with_name("steps.toml")
DEFAULT_TIME_LIMIT = 180.0
HINTS_FILE = "hints.toml"  # beside steps.toml in a handout: the hints, encoded
HINTS_HEADER = "# spoilers, encoded on purpose: ask with `nox -s hint -- N`"


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
    # Its tests call the learner's code only through probes (tests/_probes_<step>.py), so a
    # separated grading runs that code in a worker, away from the verdict (grader/judge.py).
    separate: bool = False
    # Probe calls a separated grading makes before the step's judge starts, each in a worker
    # of its own: the training runs, which then never share the memory with the judge
    # (grader/judge.py `prerun`). Each: probe = "module:function", args, kwargs, test (the
    # node id of the test that makes the call).
    prerun: tuple = field(default=(), compare=False)
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
    stored: dict[str, list[str]] | None = None
    for i, table in enumerate(data.get("step", []), 1):
        if "hints" not in table and "hint" not in table:
            stored = _encoded_hints(path) if stored is None else stored
            if table.get("id") in stored:
                table = {**table, "hints": stored[table["id"]]}
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
        known["prerun"] = tuple(_prerun_call(path, table["id"], c) for c in known.get("prerun", ()))
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


def _prerun_call(path: Path, step: str, call: object) -> dict:
    ok = (isinstance(call, dict) and isinstance(call.get("probe"), str) and ":" in call["probe"]
          and isinstance(call.get("args", []), list) and isinstance(call.get("kwargs", {}), dict)
          and isinstance(call.get("test", ""), str) and set(call) <= {"probe", "args", "kwargs", "test"})
    if not ok:
        raise ValueError(f'{path}: step {step}: a prerun entry is {{ probe = "module:function", args = [...], '
                         f'kwargs = {{...}}, test = "node id" }}, got {call!r}')
    return dict(call)


def encode_hints(steps: list[Step]) -> str:
    """The text of a handout's grader/hints.toml: each step's hints, base64-encoded."""
    lines = [HINTS_HEADER, 'encoding = "base64"', "", "[hints]"]
    for s in steps:
        lines.append(f"{s.id} = [")
        lines += [f"  {json.dumps(base64.b64encode(h.encode('utf-8')).decode('ascii'))}," for h in s.hints]
        lines.append("]")
    return "\n".join(lines) + "\n"


def _encoded_hints(manifest: Path) -> dict[str, list[str]]:
    """{step id: hints} from the grader/hints.toml beside `manifest`; {} when there is none."""
    path = manifest.with_name(HINTS_FILE)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        if data.get("encoding") != "base64":
            raise ValueError(f"encoding {data.get('encoding')!r}, not \"base64\"")
        return {sid: [base64.b64decode(h, validate=True).decode("utf-8") for h in hints]
                for sid, hints in data.get("hints", {}).items()}
    except (tomllib.TOMLDecodeError, ValueError, TypeError) as e:  # binascii.Error is a ValueError
        raise ValueError(f"{path} cannot be read: {e}") from None


# --------------------------------------------------------------------------- platform policy
# `load_policy` reads the grading policy of a course platform (the `[gradescope]` table at
# the end of steps.toml): per step its visibility, time budget, or why it is not graded there.

VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")  # Gradescope's words


@dataclass(frozen=True)
class StepPolicy:
    """How one step is graded on a course platform (the `[gradescope.steps]` row)."""
    visibility: str = "visible"
    time_limit: float | None = None  # None: the step's own [[step]] time_limit
    graded: bool = True
    why: str = ""  # why it is not graded there (shown in results.json)


@dataclass(frozen=True)
class Policy:
    """The `[gradescope]` table at the end of steps.toml."""
    timeout: float = 2400.0
    jobs: int = 2
    memory_gb: float = 12.0
    visibility: str = "visible"
    steps: dict[str, StepPolicy] = field(default_factory=dict)

    def step(self, step_id: str) -> StepPolicy:
        return self.steps.get(step_id, StepPolicy())


def load_policy(path: Path | str = MANIFEST, platform: str = "gradescope",
                steps: list[Step] | None = None) -> Policy:
    """The grading policy of `platform`, checked against the manifest's steps (`steps`, when
    the caller has read them already from `path`): a row for an unknown step, an unknown key
    or visibility, or a non-positive time limit is an error."""
    path = Path(path)
    data = tomllib.loads(path.read_text(encoding="utf-8")).get(platform, {})
    ids = {s.id for s in (steps if steps is not None else load_manifest(path))}
    where = f"{path} [{platform}]"
    top_keys = {"timeout", "jobs", "memory_gb", "visibility", "steps"}
    unknown = sorted(set(data) - top_keys)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(top_keys))}")
    rows: dict[str, StepPolicy] = {}
    for sid, row in data.get("steps", {}).items():
        if sid not in ids:
            raise ValueError(f"{where}.steps: {sid} is not a step id of the manifest ({', '.join(sorted(ids))})")
        bad = sorted(set(row) - set(StepPolicy.__dataclass_fields__))
        if bad:
            raise ValueError(f"{where}.steps.{sid}: unknown key(s) {', '.join(bad)}; use visibility, time_limit, graded, why")
        p = StepPolicy(**{**row, "time_limit": float(row["time_limit"]) if "time_limit" in row else None})
        if p.visibility not in VISIBILITIES:
            raise ValueError(f"{where}.steps.{sid}: visibility {p.visibility!r}; use one of {', '.join(VISIBILITIES)}")
        if p.time_limit is not None and p.time_limit <= 0:
            raise ValueError(f"{where}.steps.{sid}: time_limit must be positive seconds, not {p.time_limit}")
        if not p.graded and not p.why:
            raise ValueError(f"{where}.steps.{sid}: graded = false needs a `why` (what the learner is told)")
        rows[sid] = p
    vis = data.get("visibility", "visible")
    if vis not in VISIBILITIES:
        raise ValueError(f"{where}: visibility {vis!r}; use one of {', '.join(VISIBILITIES)}")
    return Policy(timeout=float(data.get("timeout", 2400)), jobs=int(data.get("jobs", 2)),
                  memory_gb=float(data.get("memory_gb", 12)), visibility=vis, steps=rows)
