"""Step 5 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-5 tests let through.
The learner's code runs only in the probes of tests/_probes_step5.py.
"""
from __future__ import annotations

import math

import pytest
import torch

import _probes_step5 as P
from _step5_checks import chunk_problem, evaluate_result
from _support import assert_close, probe
from _tiny_lm import TinyLM
from strategies import expect

MODULE = "step5_train_loop"


@pytest.mark.parametrize("kind", ["numpy uint16", "numpy int32", "torch int32"])
def test_chunk_tokens_returns_int64_whatever_the_stream_dtype(kind: str) -> None:
    """Token files are often uint16 (GPT-2 ids < 65536) or int32; the chunks are still
    int64, the dtype nn.Embedding and cross_entropy expect for ids."""
    ids = torch.arange(40) * 1237 % 50257
    out = probe(P.chunk_tokens, ids, kind, 8)  # the ids given as a numpy uint16 / int32 array, an int32 tensor
    got = ((type(out).__name__, out.dtype) if isinstance(out, torch.Tensor) else
           (out.get("type"), out.get("dtype", "")))
    expect(isinstance(out, torch.Tensor) and out.dtype == torch.long, (
        f"chunk_tokens on a {kind} stream should return int64 chunks (the docstring's dtype), whatever the "
        f"stream's dtype; got {got[0]} {got[1]}: the stream's own dtype was kept"
    ))
    problem = chunk_problem(ids, 8, out)
    expect(problem is None, f"on a {kind} stream: {problem}")


def test_configure_optimizer_uses_the_given_learning_rate() -> None:
    """Without `lr=` AdamW silently uses its default 1e-3."""
    g = torch.Generator().manual_seed(2)
    grads = {n: torch.randn(p.shape, generator=g) for n, p in TinyLM().named_parameters()}
    opt = probe(P.configure_optimizer, 0.0123, 0.1, None, grads)
    expect(opt["groups"] is not None, f"the optimizer's param_groups could not be read: {opt['step_error']}")
    lrs = [g["lr"] for g in opt["groups"]]
    expect(lrs and all(lr == 0.0123 for lr in lrs), (
        f"configure_optimizer(model, lr=0.0123, ...) gave parameter groups with lr {lrs}: the given lr did not "
        f"reach the optimizer" + (", which fell back to AdamW's default 1e-3" if 1e-3 in lrs else "")
    ))
    # One step from a known gradient: AdamW's first update is lr * g / |g| (plus the decay), so it shows the lr used.
    expect(opt["after_step"] is not None, (
        f"one step of the optimizer configure_optimizer returned, from a known gradient for every parameter, "
        f"raised {opt['step_error']}. Look at configure_optimizer (step5_train_loop.py)"))
    model = TinyLM()
    params = list(model.parameters())
    adamw = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                               {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=0.0123)
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()
    adamw.step()
    for n, p in model.named_parameters():
        assert_close(opt["after_step"][n], p.detach(), atol=1e-6, rtol=1e-5,
                     what=f"parameter {n} after one step of the optimizer from a known gradient",
                     hint="expected one AdamW step at lr=0.0123 (weight decay 0.1 on the parameters with dim >= 2, "
                          "0.0 on the rest): the given lr must be the one the optimizer uses. Look at "
                          "configure_optimizer (step5_train_loop.py)")


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
    # TinyLM(seed=4) on the fake GPU: what evaluate returned, or what it raised (a device mix-up, or another error).
    seen = probe(P.evaluate_on_a_fake_gpu, 4, _chunks(), 3)
    mixed = unsupported = None
    if "mixed" in seen:
        mixed = (f"{call_text} raised {seen['mixed']}{seen['line']}. A tensor on the CPU met the "
                 f"model's GPU tensors: a batch not moved to the model's device, or a running total made without "
                 f"the model's device. (These tests run on a fake GPU that holds real data: a real GPU raises the "
                 f"same at that line; on a CPU the mistake does not show.) Look at evaluate (step5_train_loop.py)")
    elif "unsupported" in seen:  # not a device error: is it evaluate's own, on the CPU as well?
        unsupported = seen["unsupported"]
    if unsupported:
        probe(P.evaluate, {"seed": 4}, _chunks(), (), {"batch_size": 3})  # fails the test if it raises on the CPU too
        pytest.skip(f"the fake GPU could not run this evaluate ({unsupported}), which runs on the CPU: its device "
                    f"placement is not checked here")
    expect(mixed is None, mixed)
    out = evaluate_result(seen["out"], call_text)
    want = evaluate_result(probe(P.evaluate, {"seed": 4}, _chunks(), (), {"batch_size": 3})["out"],
                           "evaluate on the CPU")
    # The same CPU kernels on the same data: the same loss but for rounding.
    expect(math.isclose(out["loss"], want["loss"], rel_tol=1e-6), (
        f"{call_text} gave loss {out['loss']:.6f}, but the same evaluation on the CPU gives {want['loss']:.6f}: "
        f"the result must not depend on the device. Look at evaluate (step5_train_loop.py)"))
    model = TinyLM(seed=4).eval()
    with torch.no_grad():
        _, mean = model(_chunks(), labels=_chunks())  # the mean over all 4 chunks at once
    # fp32 losses of different batchings: only rounding differs.
    expect(math.isclose(out["loss"], mean.item(), rel_tol=1e-5), (
        f"{call_text} gave loss {out['loss']:.6f}, expected {mean.item():.6f}: the mean over all 4 chunks, each "
        f"counted once (the last batch of 3 holds only 1 row). Look at evaluate (step5_train_loop.py)"))
