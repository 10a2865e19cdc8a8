"""Step 5 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-5 tests let through.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _step5_checks import chunk_problem
from _support import not_implemented_guard, student
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
        f"chunk_tokens on a {kind} stream should return int64 chunks (the docstring's dtype); got "
        f"{type(out).__name__} {getattr(out, 'dtype', '')}. Convert with dtype=torch.long"
    ))
    problem = chunk_problem(torch.as_tensor(ids, dtype=torch.long), 8, out)
    expect(problem is None, f"on a {kind} stream: {problem}")


def test_configure_optimizer_uses_the_given_learning_rate() -> None:
    """Without `lr=` AdamW silently uses its default 1e-3."""
    opt = call("configure_optimizer", TinyLM(), 0.0123, 0.1)
    lrs = [g["lr"] for g in opt.param_groups]
    expect(lrs and all(lr == 0.0123 for lr in lrs), (
        f"configure_optimizer(model, lr=0.0123, ...) gave parameter groups with lr {lrs}; pass lr=lr "
        f"to torch.optim.AdamW (its default is 1e-3)"
    ))


def _chunks() -> torch.Tensor:
    return torch.arange(4 * 8).view(4, 8) % 97


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: device placement is invisible on a CPU")
def test_evaluate_moves_cpu_chunks_to_the_model_device() -> None:
    """Validation chunks usually stay on the CPU; evaluate() moves each batch to the
    model's device and sums the losses there (a CPU accumulator += a CUDA loss raises)."""
    model = TinyLM(seed=4).cuda()
    out = call("evaluate", model, _chunks(), batch_size=3)
    expect(math.isfinite(out["loss"]), f"evaluate on a CUDA model with CPU chunks gave {out}")
