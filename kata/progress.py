"""Training progress a learner can see wherever the output goes.

On a terminal: a tqdm bar. Anywhere else (a log file, CI, `nohup`, a pipe) tqdm turns
itself off and a run would print nothing for minutes, so `Progress` prints a plain
line instead, at the first step, every `every` seconds and at the last step:

    train step 40/100  loss 5.123  lr 1.20e-03  12,345 tok/s  elapsed 0:20  ETA 0:30

`KATA_PROGRESS_SECONDS` overrides the interval (0: a line after every step).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import TextIO

DEFAULT_EVERY = 30.0  # seconds between plain lines: a 2-hour run logs ~240 of them


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def plain_every() -> float:
    """Seconds between plain progress lines: `$KATA_PROGRESS_SECONDS` or 30."""
    raw = os.environ.get("KATA_PROGRESS_SECONDS")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_EVERY
    except ValueError:
        return DEFAULT_EVERY


class Progress:
    """Iterate over steps `start..end-1` (of `total`) and show how the run goes.

    `set(loss=..., lr=..., tok_s=...)` updates the numbers shown; `advance(tokens)` counts a
    step's tokens when they vary per step (else `tokens_per_step` is used).
    `mode`: "bar" (tqdm), "plain" (lines) or "off"; default: bar on a terminal, else plain.
    """

    def __init__(self, start: int, end: int, total: int, desc: str = "train", *, tokens_per_step: int | None = None,
                 mode: str | None = None, every: float | None = None, file: TextIO | None = None) -> None:
        self.start, self.end, self.total, self.desc = start, end, total, desc
        self.file = file or sys.stdout
        if mode is None:
            isatty = getattr(self.file, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "plain"
        if mode not in ("bar", "plain", "off"):
            raise ValueError(f"progress mode {mode!r}: use bar, plain or off")
        self.mode = mode
        self.every = plain_every() if every is None else every
        self.tokens_per_step = tokens_per_step
        self.values: dict[str, float] = {}
        self.done = start
        self.tokens = 0
        self._t0 = self._last = time.time()
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True, file=self.file)

    def set(self, **values: float) -> None:
        """Numbers to show (loss, lr, ...), e.g. after each logged step."""
        self.values.update(values)
        if self._bar is not None:
            self._bar.set_postfix({k: _fmt(k, v) for k, v in values.items()}, refresh=False)

    def advance(self, tokens: int | None = None) -> None:
        """One step done (with `tokens` tokens, if they vary per step)."""
        self.done += 1
        self.tokens += tokens if tokens is not None else (self.tokens_per_step or 0)
        if self._bar is not None:
            self._bar.update(1)
        elif self.mode == "plain":
            now = time.time()
            if self.done == self.start + 1 or self.done >= self.end or now - self._last >= self.every:
                self._last = now
                print(self.line(now), file=self.file, flush=True)

    def line(self, now: float | None = None) -> str:
        """`train step 40/100  loss 5.123  12,345 tok/s  elapsed 0:20  ETA 0:30`."""
        elapsed = max((now or time.time()) - self._t0, 1e-9)
        steps = self.done - self.start
        parts = [f"{self.desc} step {self.done}/{self.total}"]
        parts += [f"{k} {_fmt(k, v)}" for k, v in self.values.items() if k != "tok_s"]
        # The caller's own rate (training time only) when it gives one; else tokens / wall time.
        rate = self.values.get("tok_s", self.tokens / elapsed if self.tokens else None)
        if rate is not None:
            parts.append(f"{rate:,.0f} tok/s")
        eta = (self.end - self.done) * elapsed / steps if steps else float("nan")
        parts.append(f"elapsed {_clock(elapsed)}")
        if self.done < self.end and eta == eta:
            parts.append(f"ETA {_clock(eta)}")
        return "  ".join(parts)

    def __iter__(self) -> Iterator[int]:
        """The steps to do; a step counts as done when the loop asks for the next one."""
        try:
            for step in range(self.start, self.end):
                yield step
                self.advance()
        finally:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _fmt(key: str, value: float) -> str:
    if isinstance(value, str):
        return value
    if key == "lr":
        return f"{value:.2e}"
    if key in ("tok_s", "tokens_per_s"):
        return f"{value:,.0f}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
