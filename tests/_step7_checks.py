"""Diagnoses for step 7's tests: what a wrong collator or TrainingArguments did, worked out
in the test (the judge) from what the probes saw of the learner's objects, for the failure
messages and the checks that decide.

Each function takes plain data (the caller's own inputs, and what a probe in
`_probes_step7.py` returned) and only describes: it returns text, or an empty list when it
finds nothing; the tests decide what fails. The diagnoses that need the learner's objects
themselves (which weights do not fit a GPT2LMHeadModel, how its attention is scaled) are
the probes' (`_probes_step7.shape_mismatches`, `_probes_step7.attention_mistakes`).
"""
from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture(scope="module")
def kata_folders_made(tmp_path_factory) -> None:
    """The folders the learner's code writes in, made here before the first probe: the kata's
    cache (.kata_cache/, with the tokenizer file the probes load; the Trainer run's cache) and
    pytest's temporary folder (each test's output_dir). A separated grading's worker may
    write only in folders that exist when it starts (grader/confinement.py), and a fresh
    handout has neither yet."""
    from kata.tokenizer import load_tokenizer

    load_tokenizer()  # writes .kata_cache/tokenizer/ the first time
    tmp_path_factory.getbasetemp()


# ------------------------------------------------------------------------ collator


def example_changes(before: list[dict], now: dict) -> list[str]:
    """How the caller's examples differ from what they held `before` (the caller's own copy):
    a list shortened or reordered, keys added or removed, a value replaced by another (or
    changed in place). `now` is what `_probes_step7.examples_now` saw after the call."""
    changes = []
    if not now["same_dicts"]:
        changes.append(f"the list of {len(before)} examples now holds {now['count']}, or other dicts")
    for i, (was_ex, ex) in enumerate(zip(before, now["examples"])):
        added, removed = sorted(set(ex) - set(was_ex)), sorted(set(was_ex) - set(ex))
        if added:
            changes.append(f"example {i} gained the key(s) {added}")
        if removed:
            changes.append(f"example {i} lost the key(s) {removed}")
        for k in set(ex) & set(was_ex):
            value, was = ex[k], was_ex[k]
            if isinstance(was, torch.Tensor):
                same = (isinstance(value, torch.Tensor) and value.dtype == was.dtype and value.shape == was.shape
                        and torch.equal(value, was))
            else:
                same = type(value) is type(was) and value == was
            if not same:
                changes.append(f"example {i}['{k}'] was changed (it was {_show(was)}, it is now {_show(value)})")
    return changes


def _show(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor {v.tolist()}"
    return f"a {type(v).__name__} {v!r}"[:120]


def examples_message(changes: list[str], raised: str | None = None, message: str = "") -> str:
    """The failure for a collator that changed the caller's examples (and then raised the
    exception named `raised`, with `message`, where it did)."""
    what = "; ".join(changes[:4]) + ("; ..." if len(changes) > 4 else "")
    return (
        f"CausalLMCollator.torch_call changed the caller's examples ({what})"
        + (f", and then raised {raised}: {message[:300].rstrip('.')}" if raised is not None else "")
        + ". The docstring: the examples belong to the caller and are not modified (a caller may collate them "
        "again, or keep them). Look at CausalLMCollator.torch_call (step7_trainer.py)"
    )


# -------------------------------------------------------------- training_arguments


def optimisation_mistakes(seen: dict | None, learning_rate: float, warmup_steps: int) -> list[str]:
    """What the Trainer built from training_arguments does against the loop's optimisation:
    torch's AdamW, and a learning rate at step 0 that follows `warmup_steps` (the peak when it
    is 0, peak / warmup_steps after a warm-up of that many steps). `seen` is what
    `_probes_step7.optimisation_seen` saw of the Trainer (None: nothing could be seen)."""
    if seen is None:
        return []
    try:
        lines = []
        if not seen["adamw"]:
            lines.append(f"the Trainer optimises with {seen['optimizer']}, not torch's AdamW (the loop's optimizer)")
        lrs = seen["lrs"]
        # HF's warm-up: lr(t) = peak * t / warmup_steps for t < warmup_steps, then the decay from the peak.
        if warmup_steps == 0:
            ok = math.isclose(lrs[0], learning_rate, rel_tol=1e-3)
        else:
            ok = lrs[0] == 0 and math.isclose(lrs[1], learning_rate / warmup_steps, rel_tol=1e-3)
        if not ok:
            lines.append(f"with warmup_steps={warmup_steps} and learning_rate={learning_rate:g}, the Trainer's "
                         f"learning rate at steps 0 and 1 is {lrs[0]:.3g}, {lrs[1]:.3g}: "
                         f"{warmup_story(lrs, learning_rate)}, not the warm-up of the given warmup_steps")
        return lines
    except Exception:  # noqa: BLE001 - a diagnosis only
        return []


def warmup_story(lrs: list[float], peak: float) -> str:
    """What a learning rate that starts at lrs[0], lrs[1] says about the warm-up it follows."""
    if lrs[0] == 0 and lrs[1] > 0:
        return f"a linear warm-up of {peak / lrs[1]:.0f} steps"
    if lrs[0] == 0:
        return "the learning rate stays 0"
    if math.isclose(lrs[0], peak, rel_tol=1e-3):
        return "it starts at the peak, with no warm-up"
    return f"it starts at {lrs[0] / peak:.3g} of the peak"
