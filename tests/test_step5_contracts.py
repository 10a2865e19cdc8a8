"""Step 5 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-5 tests let through.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

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
    expect(out.tolist() == torch.as_tensor(ids, dtype=torch.long).view(5, 8).tolist(),
           f"chunk_tokens on a {kind} stream changed the ids: expected rows of 8 consecutive ids")


def test_configure_optimizer_uses_the_given_learning_rate() -> None:
    """Without `lr=` AdamW silently uses its default 1e-3."""
    opt = call("configure_optimizer", TinyLM(), 0.0123, 0.1)
    lrs = [g["lr"] for g in opt.param_groups]
    expect(lrs and all(lr == 0.0123 for lr in lrs), (
        f"configure_optimizer(model, lr=0.0123, ...) gave parameter groups with lr {lrs}; pass lr=lr "
        f"to torch.optim.AdamW (its default is 1e-3)"
    ))


class AutocastSpy(TinyLM):
    """TinyLM that records whether each forward ran under CPU autocast, and its dtype
    (then computes in fp32, so the numbers do not depend on it)."""

    def __init__(self) -> None:
        super().__init__(seed=3)
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, input_ids, labels=None):
        self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        with torch.autocast("cpu", enabled=False):
            return super().forward(input_ids, labels)


def _chunks() -> torch.Tensor:
    return torch.arange(4 * 8).view(4, 8) % 97


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, None], ids=str)
@pytest.mark.parametrize("fn", ["train_step", "evaluate"])
def test_forward_runs_under_autocast_with_the_requested_dtype(fn: str, dtype: torch.dtype | None) -> None:
    """`autocast_dtype=torch.float16` means a float16 forward (CPU autocast's own default is
    bfloat16, CUDA's float16: not passing the dtype on gives the wrong one); None, no autocast."""
    model = AutocastSpy()
    if fn == "train_step":
        call("train_step", model, _chunks(), torch.optim.SGD(model.parameters(), lr=0.0), 1.0, dtype)
    else:
        call("evaluate", model, _chunks(), batch_size=2, autocast_dtype=dtype)
    want = (dtype is not None, dtype)
    got = [(on, dt if on else None) for on, dt in model.seen]
    expect(got and all(g == want for g in got), (
        f"{fn}(..., autocast_dtype={dtype}): the model's forward ran with (autocast on, dtype) = {got}, "
        f"expected {want} every time. Wrap the forward in torch.autocast(device.type, dtype=autocast_dtype, "
        f"enabled=autocast_dtype is not None)"
    ))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: device placement is invisible on a CPU")
def test_evaluate_moves_cpu_chunks_to_the_model_device() -> None:
    """Validation chunks usually stay on the CPU; evaluate() moves each batch to the
    model's device and sums the losses there (a CPU accumulator += a CUDA loss raises)."""
    model = TinyLM(seed=4).cuda()
    out = call("evaluate", model, _chunks(), batch_size=3)
    expect(math.isfinite(out["loss"]), f"evaluate on a CUDA model with CPU chunks gave {out}")
