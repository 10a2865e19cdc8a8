"""Step 6 diagnoses shared by its test files: errors raised inside the learner's sampler.

A bare "RuntimeError: probability tensor contains either inf, nan or element < 0" from
deep inside torch says nothing about which argument broke what. The tests call the
learner's `sample_next` and `generate` through `sample` and `run_generate`, which turn
an exception into a diagnosis: the call, its shapes and arguments, the error, the line
of step6_sampler.py it came from, and what that argument means in the contract.
"""
from __future__ import annotations

import inspect

import pytest
import torch

from _support import _solution_frame, not_implemented_guard, solution_name, student

MODULE = "step6_sampler"
WHERE = "Look at sample_next (step6_sampler.py); stuck? `nox -s hint -- 6`"


def _where(e: BaseException) -> str:
    """` (step6_sampler.py:41)`: the deepest line of the learner's code in the traceback."""
    frame = _solution_frame(e.__traceback__, solution_name())
    return f" ({frame[0].name}:{frame[1]})" if frame is not None else ""


def _error(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _args(temperature: float, top_k: int | None) -> str:
    t = f"{temperature:.4g}" if isinstance(temperature, float) else repr(temperature)
    return f"temperature={t}, top_k={top_k!r}"


def _why(e: BaseException, V: int, temperature: float, top_k: int | None) -> str:
    """What in sample_next's contract the failing call most likely broke."""
    text = str(e).lower()
    if top_k is not None and top_k >= V:
        return (f"top_k={top_k} >= the vocabulary size V={V} means no filtering: every token stays drawable "
                f"(there are not {top_k} values in a row to pick from)")
    if temperature == 0:
        return ("temperature=0 means greedy: each row's most likely token (its argmax), shape (B, 1), without "
                "dividing by zero (logits / 0 gives inf and NaN, which softmax and a random draw cannot use)")
    if top_k is not None and any(w in text for w in ("size of tensor", "must match", "broadcast", "expand")):
        return ("the k-th largest logit of each row has to be compared with that row's V logits: as a (B, 1) "
                "column it lines up with its own row; with shape (B,) it lines up with the vocabulary axis instead")
    if top_k is not None and any(w in text for w in ("probability", "nan", "inf", "multinomial")):
        return ("after top-k filtering a row had nothing left to draw (all -inf gives NaN probabilities): the k "
                "largest logits stay drawable, and so does every logit tied with the k-th largest; only those "
                "strictly below it are removed")
    if any(w in text for w in ("probability", "nan", "inf")):
        return ("the probabilities of a row contain inf or NaN, or sum to 0: they are not the softmax of the "
                "scaled logits, which has neither")
    return "check sample_next around that line"


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """The learner's sample_next(logits, ...), an exception turned into a diagnosis."""
    try:
        return not_implemented_guard(student(MODULE).sample_next, logits, temperature=temperature, top_k=top_k,
                                     generator=generator)
    except Exception as e:  # noqa: BLE001 - the learner's error, reported as a diagnosis
        V = logits.size(-1)
        message = (f"sample_next(logits of shape {tuple(logits.shape)}, {_args(temperature, top_k)}) raised "
                   f"{_error(e)}{_where(e)}: {_why(e, V, temperature, top_k)}. {WHERE}")
    pytest.fail(message, pytrace=False)


def sample_next_problem(V: int, temperature: float, top_k: int | None,
                        seen: BaseException | None = None) -> str | None:
    """Try sample_next on its own with these arguments: what breaks, or None.

    `seen`: the error generate raised; an error of the same kind is not quoted twice.

    Used when generate raises, to tell a sampler bug (temperature 0, top-k) from a
    bug in generate itself. (B, V) = (5, V) logits, B != V and B != 1 so that a
    threshold with the wrong shape shows.
    """
    B = 5 if V != 5 else 6
    logits = torch.randn(B, V, generator=torch.Generator().manual_seed(0)) * 2
    call = f"sample_next(logits of shape {(B, V)}, {_args(temperature, top_k)})"
    try:
        out = not_implemented_guard(student(MODULE).sample_next, logits, temperature=temperature, top_k=top_k,
                                    generator=torch.Generator().manual_seed(0))
    except Exception as e:  # noqa: BLE001
        same = seen is not None and _error(e)[:40] == _error(seen)[:40]
        raised = "raises the same error on its own" if same else f"raised {_error(e)}{_where(e)}"
        return f"{call} {raised}: {_why(e, V, temperature, top_k)}"
    if not isinstance(out, torch.Tensor) or out.shape != (B, 1):
        return (f"{call} returned {type(out).__name__} of shape {tuple(getattr(out, 'shape', ()))}, expected "
                f"({B}, 1) int64 ids")
    if temperature == 0 and not torch.equal(out, logits.argmax(-1, keepdim=True)):
        return f"{call} returned {out.flatten().tolist()}, not each row's argmax: {_why(ValueError(), V, 0, None)}"
    return None


def run_generate(model, idx: torch.Tensor, *args, hint: str = "", **kwargs) -> torch.Tensor:
    """The learner's generate(model, idx, ...), an exception turned into a diagnosis.

    When generate raises, sample_next is tried on its own with the same temperature and
    top_k: a sampler bug is reported as such; otherwise the error, its line and `hint`.
    """
    try:
        return not_implemented_guard(student(MODULE).generate, model, idx, *args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the learner's error, reported as a diagnosis
        try:
            bound = inspect.signature(student(MODULE).generate).bind(model, idx, *args, **kwargs)
        except TypeError:  # a signature other than the stub's: report what the test passed
            bound = None
        given = bound.arguments if bound else dict(enumerate(args), **kwargs)
        shown = ", ".join(f"{k}={v!r}" for k, v in given.items() if k not in ("model", "idx", "generator"))
        if bound:
            bound.apply_defaults()
        full = bound.arguments if bound else kwargs
        temperature, top_k = full.get("temperature", 1.0), full.get("top_k")
        call = f"generate(model, a {tuple(idx.shape)} prompt, {shown})"
        problem = sample_next_problem(model.config.vocab_size, temperature, top_k, seen=e)
        if problem:
            message = f"{call} raised {_error(e)}{_where(e)}. The cause is in the sampler: {problem}. {WHERE}"
        else:
            message = (f"{call} raised {_error(e)}{_where(e)}. "
                       + (hint or "Look at generate (step6_sampler.py); stuck? `nox -s hint -- 6`"))
    pytest.fail(message, pytrace=False)
