"""Step 6 diagnoses shared by its test files: errors raised inside the learner's sampler.

A bare "RuntimeError: probability tensor contains either inf, nan or element < 0" from
deep inside torch says nothing about which argument broke what. The tests call the
learner's `sample_next` and `generate` through `sample` and `run_generate`, which turn
an exception into a diagnosis: the call, its shapes and arguments, the error, the line
of step6_sampler.py it came from, and what that argument means in the contract.

These run in the judge: the learner's code runs in the probes of tests/_probes_step6.py
(in the worker, in a separated grading), and what comes back is data: ids, the model's
record of its forward passes, the learner's exception (its class name, message and
line). A model is described by a `TableModel`, which the probe builds as a
`_tiny_lm.TableLM` where generate runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch

import _probes_step6 as P
from _probes_step6 import MODULE, NOT_A_TENSOR, _error, _where, wire
from _support import probe

WHERE = "Look at sample_next (step6_sampler.py); stuck? `nox -s hint -- 6`"


class NotATensor:
    """What the learner's function returned when it was not a tensor, as the worker described it:
    its repr() reads as the object's did, and reading a tensor's attribute off it fails as it did."""

    def __init__(self, described: dict) -> None:
        self.type_name, self.text = described[NOT_A_TENSOR], described["repr"]

    def __repr__(self) -> str:
        return self.text

    def __getattr__(self, name: str):
        raise AttributeError(f"{self.type_name!r} object has no attribute {name!r}")


def value(x: object) -> object:
    """A probe's report of a learner's result (`_probes_step6.returned`): the tensor, or a `NotATensor`."""
    return NotATensor(x) if isinstance(x, dict) and NOT_A_TENSOR in x else x


@dataclass
class TableModel:
    """A `_tiny_lm.TableLM(table, block_size)` in train or eval mode, as the judge describes it.

    `run_generate` has the probe build that model where the learner's generate runs and
    writes back what the model saw there: `calls` gains one (input length, training) per
    forward pass, and `training` is the mode generate left it in (the next run starts there,
    as with the same model object)."""

    table: torch.Tensor
    block_size: int
    training: bool = True
    calls: list = field(default_factory=list)

    def train(self, mode: bool = True) -> "TableModel":
        self.training = mode
        return self

    @property
    def config(self) -> SimpleNamespace:
        return SimpleNamespace(vocab_size=self.table.size(0), block_size=self.block_size)


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
        return value(probe(P.call, "sample_next", logits, temperature=temperature, top_k=top_k,
                           generator=wire(generator)))
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
        out = value(probe(P.call, "sample_next", logits, temperature=temperature, top_k=top_k,
                          generator=wire(torch.Generator().manual_seed(0))))
    except Exception as e:  # noqa: BLE001
        same = seen is not None and _error(e)[:40] == _error(seen)[:40]
        raised = "raises the same error on its own" if same else f"raised {_error(e)}{_where(e)}"
        return f"{call} {raised}: {_why(e, V, temperature, top_k)}"
    if not isinstance(out, torch.Tensor) or out.shape != (B, 1):
        kind = out.type_name if isinstance(out, NotATensor) else type(out).__name__
        return (f"{call} returned {kind} of shape {tuple(getattr(out, 'shape', ()))}, expected "
                f"({B}, 1) int64 ids")
    if temperature == 0 and not torch.equal(out, logits.argmax(-1, keepdim=True)):
        return f"{call} returned {out.flatten().tolist()}, not each row's argmax: {_why(ValueError(), V, 0, None)}"
    return None


def run_generate(model: TableModel, idx: torch.Tensor, *args, hint: str = "", **kwargs) -> torch.Tensor:
    """The learner's generate(model, idx, ...), an exception turned into a diagnosis.

    `model` is built where generate runs (see `TableModel`); afterwards `model.calls` and
    `model.training` hold what that model saw.
    When generate raises, sample_next is tried on its own with the same temperature and
    top_k: a sampler bug is reported as such; otherwise the error, its line and `hint`.
    """
    try:
        seen = probe(P.generate, model.table, model.block_size, model.training, idx, wire(list(args)), wire(kwargs))
    except Exception as e:  # noqa: BLE001 - the learner's error, reported as a diagnosis
        bound = probe(P.generate_arguments, wire(list(args)), wire(kwargs))  # None: a signature other than the stub's
        if bound:
            shown = ", ".join(f"{k}={v}" for k, v in bound["given"].items())
            temperature, top_k = bound["temperature"], bound["top_k"]
        else:  # report what the test passed
            given = dict(enumerate(args), **kwargs)
            shown = ", ".join(f"{k}={v!r}" for k, v in given.items() if k not in ("model", "idx", "generator"))
            temperature, top_k = kwargs.get("temperature", 1.0), kwargs.get("top_k")
        call = f"generate(model, a {tuple(idx.shape)} prompt, {shown})"
        problem = sample_next_problem(model.config.vocab_size, temperature, top_k, seen=e)
        if problem:
            message = f"{call} raised {_error(e)}{_where(e)}. The cause is in the sampler: {problem}. {WHERE}"
        else:
            message = (f"{call} raised {_error(e)}{_where(e)}. "
                       + (hint or "Look at generate (step6_sampler.py); stuck? `nox -s hint -- 6`"))
    else:
        model.calls += seen["calls"]
        model.training = seen["training"]
        return value(seen["out"])
    pytest.fail(message, pytrace=False)
