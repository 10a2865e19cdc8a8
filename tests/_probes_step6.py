"""Step 6's probes: the learner-facing half of tests/test_step6_*.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests (and the judge-side
diagnoses of tests/_step6_checks.py) compare what it returns with answers they compute
themselves. The learner's exceptions are not caught here: they travel to the judge and
are raised there, where the diagnoses read them.

Two things that are not plain data cross as plain data:
- a `torch.Generator` goes as its state (`wire`, rebuilt by `_unwire`): the same seeded
  generator draws the same numbers on either side;
- a result of the learner's that is not a tensor comes back as `{NOT_A_TENSOR: type
  name, "repr": its repr}` (`returned`), which `_step6_checks.value` turns into a
  stand-in that reads as that object does in the tests' messages.
"""
from __future__ import annotations

import inspect

import torch

from _fake_device import DeviceMixError, FakeGPU, module_to_fake_gpu, to_fake_gpu
from _support import _solution_frame, not_implemented_guard, solution_name, student
from _tiny_lm import TableLM

MODULE = "step6_sampler"
GENERATOR_STATE = "kata: torch.Generator state"
NOT_A_TENSOR = "kata: not a tensor"


# ------------------------------------------------------------- exceptions as the messages say them
# Used on both sides: here on an exception with its traceback, in the judge on the
# learner's exception as the worker described it (grader/judge.py: `_kata_where`).

def _where(e: BaseException) -> str:
    """` (step6_sampler.py:41)`: the deepest line of the learner's code in the traceback."""
    frame = _solution_frame(e.__traceback__, solution_name())
    if frame is not None:
        return f" ({frame[0].name}:{frame[1]})"
    where = getattr(e, "_kata_where", "")  # raised in the worker: `exercises/step6_sampler.py:41`
    return f" ({where.rsplit('/', 1)[-1]})" if where else ""


def _error(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ------------------------------------------------------------------------------ plain data

def wire(x: object) -> object:
    """`x` as a probe's argument: a torch.Generator as its state, containers item by item."""
    if isinstance(x, torch.Generator):
        return {GENERATOR_STATE: x.get_state()}
    if isinstance(x, (list, tuple)):
        return type(x)(wire(i) for i in x)
    if isinstance(x, dict):
        return {k: wire(v) for k, v in x.items()}
    return x


def _unwire(x: object) -> object:
    if isinstance(x, dict) and set(x) == {GENERATOR_STATE}:
        return torch.Generator().set_state(x[GENERATOR_STATE])
    if isinstance(x, (list, tuple)):
        return type(x)(_unwire(i) for i in x)
    if isinstance(x, dict):
        return {k: _unwire(v) for k, v in x.items()}
    return x


def returned(x: object) -> object:
    """What the learner's function returned, as data: a tensor as it is, anything else described."""
    if isinstance(x, torch.Tensor):
        return x.cpu() if x.device.type != "cpu" else x
    return {NOT_A_TENSOR: type(x).__name__, "repr": repr(x)[:2000]}


# ------------------------------------------------------------------------------------ probes

def call(name: str, *args, **kwargs) -> object:
    """The learner's `name` (sample_next, crop_context) on these arguments, through the guard."""
    fn = getattr(student(MODULE), name)
    return returned(not_implemented_guard(fn, *_unwire(args), **_unwire(kwargs)))


def generate(table: torch.Tensor, block_size: int, training: bool, idx: torch.Tensor, args: list,
             kwargs: dict) -> dict:
    """The learner's generate(model, idx, *args, **kwargs) on a `TableLM(table, block_size)` in
    train mode or not: what it returned, and the model's record of its forward passes
    ((input length, training) each) and its mode afterwards."""
    model = TableLM(table, block_size=block_size).train(training)
    out = not_implemented_guard(student(MODULE).generate, model, idx, *_unwire(args), **_unwire(kwargs))
    return {"out": returned(out), "calls": list(model.calls), "training": model.training}


def generate_arguments(args: list, kwargs: dict) -> dict | None:
    """How the learner's generate binds (model, idx, *args, **kwargs) (None where it does not):
    the arguments given, by the learner's names and as repr() shows them (model, idx and
    generator left out), and temperature and top_k once its defaults apply."""
    try:
        bound = inspect.signature(student(MODULE).generate).bind(None, None, *_unwire(args), **_unwire(kwargs))
    except (TypeError, ValueError):  # a signature other than the stub's: the test reports what it passed
        return None
    given = {k: repr(v) for i, (k, v) in enumerate(bound.arguments.items())
             if i >= 2 and k not in ("model", "idx", "generator")}
    bound.apply_defaults()

    def plain(v: object) -> object:
        return v if v is None or isinstance(v, (bool, int, float)) else repr(v)

    return {"given": given, "temperature": plain(bound.arguments.get("temperature", 1.0)),
            "top_k": plain(bound.arguments.get("top_k"))}


def generate_on_fake_gpu(table: torch.Tensor, block_size: int, prompt: torch.Tensor, max_new_tokens: int,
                         kwargs: dict) -> dict:
    """The learner's generate with a `TableLM(table, block_size)` and `prompt` on the fake GPU
    (tests/_fake_device.py): {"out": the ids, back on the CPU} when it ran, {"mixed": the
    error and its line} when an op mixed devices, {"unsupported": ...} for any other error."""
    try:
        with FakeGPU():
            model = module_to_fake_gpu(TableLM(table, block_size=block_size))
            out = not_implemented_guard(student(MODULE).generate, model, to_fake_gpu(prompt), max_new_tokens,
                                        **_unwire(kwargs))
    except DeviceMixError as e:
        return {"mixed": f"{_error(e)}{_where(e)}"}
    except Exception as e:  # noqa: BLE001 - not a device error: the test asks whether the CPU raises it too
        return {"unsupported": f"{_error(e)}{_where(e)}"}
    return {"out": returned(out)}
