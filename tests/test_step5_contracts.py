"""Step 5 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-5 tests let through.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _fake_device import DeviceMixError, FakeGPU, module_to_fake_gpu
from _step5_checks import chunk_problem, evaluate_result
from _support import _solution_frame, not_implemented_guard, solution_name, student
from _tiny_lm import TinyLM
from strategies import expect

MODULE = "step5_train_loop"


def call(name: str, *args, **kwargs):
    return not_implemented_guard(getattr(student(MODULE), name), *args, **kwargs)


@pytest.mark.parametrize("kind", ["numpy uint16", "numpy int32", "torch int32"])
def test_chunk_tokens_returns_int64_whatever_the_stream_dtype(kind: str) -> None:
    """Token files are often uint16 (GPT-2 ids < 65536) or int32; the chunks are still
    int64, the dtype nn.Embedding and cross_entropy expect for ids."""
    ids = np.arange(40) * 1237 % 50257
    stream = {"numpy uint16": ids.astype(np.uint16), "numpy int32": ids.astype(np.int32),
              "torch int32": torch.from_numpy(ids.astype(np.int32))}[kind]
    out = call("chunk_tokens", stream, 8)
    expect(isinstance(out, torch.Tensor) and out.dtype == torch.long, (
        f"chunk_tokens on a {kind} stream should return int64 chunks (the docstring's dtype), whatever the "
        f"stream's dtype; got {type(out).__name__} {getattr(out, 'dtype', '')}: the stream's own dtype was kept"
    ))
    problem = chunk_problem(torch.as_tensor(ids, dtype=torch.long), 8, out)
    expect(problem is None, f"on a {kind} stream: {problem}")


def test_configure_optimizer_uses_the_given_learning_rate() -> None:
    """Without `lr=` AdamW silently uses its default 1e-3."""
    opt = call("configure_optimizer", TinyLM(), 0.0123, 0.1)
    lrs = [g["lr"] for g in opt.param_groups]
    expect(lrs and all(lr == 0.0123 for lr in lrs), (
        f"configure_optimizer(model, lr=0.0123, ...) gave parameter groups with lr {lrs}: the given lr did not "
        f"reach the optimizer" + (", which fell back to AdamW's default 1e-3" if 1e-3 in lrs else "")
    ))


def _chunks() -> torch.Tensor:
    return torch.arange(4 * 8).view(4, 8) % 97


def test_evaluate_moves_cpu_chunks_to_the_model_device() -> None:
    """Validation chunks usually stay on the CPU while the model is on a GPU: evaluate moves
    each batch to the model's device and sums the losses there (a CPU accumulator += a GPU
    loss raises, and so does a CPU batch fed to a GPU model). The model sits on a fake GPU
    here (tests/_fake_device.py): tensors that claim cuda:0 and hold real data, so any
    correct code runs (`.item()` included), and an op that mixes them with a CPU tensor
    (other than a 0-dim scalar) raises, as on a GPU."""
    call_text = "evaluate(model on a GPU, (4, 8) CPU chunks, batch_size=3)"
    try:
        with FakeGPU():
            out = call("evaluate", module_to_fake_gpu(TinyLM(seed=4)), _chunks(), batch_size=3)
        mixed = unsupported = None
    except DeviceMixError as e:
        unsupported = None
        mixed = (f"{call_text} raised {type(e).__name__}: {e}{_solution_line(e)}. A tensor on the CPU met the "
                 f"model's GPU tensors: a batch not moved to the model's device, or a running total made without "
                 f"the model's device. (These tests run on a fake GPU that holds real data: a real GPU raises the "
                 f"same at that line; on a CPU the mistake does not show.) Look at evaluate (step5_train_loop.py)")
    except Exception as e:  # noqa: BLE001 - not a device error: is it evaluate's own, on the CPU as well?
        mixed, unsupported = None, f"{type(e).__name__}: {e}"
    # Reported outside the `except`, so the report is the message, not a chained traceback.
    if unsupported:
        call("evaluate", TinyLM(seed=4), _chunks(), batch_size=3)  # fails the test if it raises on the CPU too
        pytest.skip(f"the fake GPU could not run this evaluate ({unsupported}), which runs on the CPU: its device "
                    f"placement is not checked here")
    expect(mixed is None, mixed)
    out = evaluate_result(out, call_text)
    want = evaluate_result(call("evaluate", TinyLM(seed=4), _chunks(), batch_size=3), "evaluate on the CPU")
    # The same CPU kernels on the same data: the same loss but for rounding.
    expect(math.isclose(out["loss"], want["loss"], rel_tol=1e-6), (
        f"{call_text} gave loss {out['loss']:.6f}, but the same evaluation on the CPU gives {want['loss']:.6f}: "
        f"the result must not depend on the device. Look at evaluate (step5_train_loop.py)"))


def _solution_line(e: BaseException) -> str:
    """` (step5_train_loop.py:154)`: the deepest line of the learner's code in the traceback."""
    frame = _solution_frame(e.__traceback__, solution_name())
    return f" ({frame[0].name}:{frame[1]})" if frame is not None else ""
