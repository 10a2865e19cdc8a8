"""Step 5: `train_step` with a gradient scaler (fp16 mixed precision on older GPUs).

fp16 gradients below ~6e-8 round to zero, so on a T4/V100/P100 the run passes a
`torch.amp.GradScaler` (kata/precision.py): backward on `scaler.scale(loss)`, then
`scaler.unscale_(optimizer)` BEFORE clipping (clip the true gradients), then
`scaler.step(optimizer)` (skips the update when a gradient overflowed) and
`scaler.update()`. Everything runs on the CPU in fp32: a `FakeScaler` with a known
scale records what the learner's code did with it, and PyTorch's own GradScaler
(which works on the CPU) checks the overflow skip. The scalers, optimizers and models
are built in the probes of tests/_probes_step5.py, where the learner's code runs; the
expected updates are computed here, on this file's own TinyLM.
"""
from __future__ import annotations


import pytest
import torch

import _probes_step5 as P
from _step5_checks import loss_problem, train_step_result
from _support import assert_close, probe
from _tiny_lm import TinyLM

MODULE = "step5_train_loop"
SCALE = P.SCALE  # 1024, a power of two: scaling and unscaling fp32 gradients is exact


def batch(seed: int, B: int = 4, T: int = 16, V: int = 97) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def plain_step(model: TinyLM, x: torch.Tensor, lr: float, max_norm: float) -> tuple[float, float]:
    """The update a scaler must not change: backward, clip the true gradients, SGD step."""
    model.train()
    _, loss = model(x, labels=x)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return loss.item(), norm.item()


CLIPPED = 1 + 1e-4  # clip_grad_norm_ scales by max_norm / (norm + 1e-6), plus fp32 rounding


def expect_the_step_without_a_scaler_works(seed: int, max_norm: float) -> None:
    """The scaler tests put a scaler on top of train_step's plain path: backward, clip, step.

    A mistake in that path (clipping after the step, say) is not a scaler bug, so it is
    reported here as what it is, before any scaler is involved, whichever test runs first.
    """
    want = TinyLM(seed=seed)
    want_loss, want_norm = plain_step(want, batch(seed), 0.1, max_norm)
    # TinyLM(seed) and an SGD(lr=0.1) that records its steps and the gradient norm each used.
    got = probe(P.train_step_counting_sgd, seed, batch(seed), max_norm, False)
    loss, norm = train_step_result(got["out"])
    first = "without a scaler (before this test adds one), "
    then = (" The scaler tests build on the plain step; test_train_step_clips_before_the_optimizer_step "
            "(test_step5_train_loop.py) checks it. Look at train_step (step5_train_loop.py)")
    # The loss first: a loss of the wrong pairs changes the gradients and the update too.
    problem = loss_problem(TinyLM(seed=seed), batch(seed), loss)
    if problem:
        pytest.fail(f"{first}{problem}", pytrace=False)
    norms_used = got["norms_used"]
    if len(norms_used) != 1:
        pytest.fail(f"{first}train_step called optimizer.step() {len(norms_used)} times, expected once.{then}",
                    pytrace=False)
    if norms_used[0] > max_norm * CLIPPED:
        pytest.fail(
            f"{first}the gradients had total norm {norms_used[0]:.4g} > max_grad_norm={max_norm} when "
            f"optimizer.step() ran: they were not clipped before the optimizer used them (clipping after the step "
            f"changes nothing it used).{then}", pytrace=False)
    # fp32 on CPU, the same operations: only rounding differs.
    assert_close(loss.detach().float(), torch.tensor(want_loss), atol=1e-5, rtol=1e-5,
                 what=f"{first}the returned loss",
                 hint="expected the model's loss on this batch (the inputs are their own labels), before the update."
                      + then)
    clipped = float(norm) <= max_norm * CLIPPED < want_norm
    assert_close(norm.detach().float(), torch.tensor(want_norm), atol=1e-5, rtol=1e-4,
                 what=f"{first}the returned gradient norm",
                 hint="expected the total gradient norm from before clipping"
                      + (" (the value returned is at most max_grad_norm: the norm after clipping?)" if clipped else "")
                      + "." + then)
    for name, q in want.named_parameters():
        assert_close(got["params"][name], q.detach(), atol=1e-6, rtol=1e-5, what=f"{first}parameter {name} after one SGD step",
                     hint="expected one update from this batch's fresh gradients, clipped to max_grad_norm." + then)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_norm", [0.05, 1e6])  # clipping active, clipping idle
def test_train_step_with_a_scaler_clips_the_unscaled_gradients(seed, max_norm):
    expect_the_step_without_a_scaler_works(seed, max_norm)
    want_model = TinyLM(seed=seed)
    want_loss, want_norm = plain_step(want_model, batch(seed), 0.1, max_norm)
    # TinyLM(seed), the SGD(lr=0.1) that counts its steps, and a FakeScaler (scale 1024) that records its calls.
    got = probe(P.train_step_counting_sgd, seed, batch(seed), max_norm, True)
    loss, norm = train_step_result(got["out"])
    scaler_calls = got["calls"]

    calls = {c: scaler_calls.count(c) for c in ("scale", "unscale_", "step", "update")}
    assert calls["scale"] == 1, (
        f"scaler.scale(loss) was called {calls['scale']} times, expected once: with a scaler, backward runs on "
        f"scaler.scale(loss) so small fp16 gradients do not round to zero (step 5 train_step's docstring)"
    )
    assert calls["unscale_"] == 1, (
        f"scaler.unscale_(optimizer) was called {calls['unscale_']} times, expected once, before "
        f"clip_grad_norm_: clipping must see the true gradients, not scale x them"
    )
    assert got["direct_steps"] == 0 and got["scaler_steps"] == 1, (
        f"with a scaler, the update must go through scaler.step(optimizer) exactly once (it skips the step when a "
        f"gradient overflowed); got {got['scaler_steps']} scaler.step and {got['direct_steps']} direct "
        f"optimizer.step() calls"
    )
    assert "update" in scaler_calls[scaler_calls.index("step"):], (
        f"scaler.update() must follow scaler.step(optimizer) (it adapts the scale for the next step); calls: {scaler_calls}"
    )
    assert got["norms_used"][0] <= max_norm * CLIPPED, (
        f"with a scaler, the gradients had total norm {got['norms_used'][0]:.4g} > max_grad_norm={max_norm} when "
        f"scaler.step(optimizer) ran: the update used gradients that were not clipped (clipping after the step "
        f"changes nothing it used)"
    )
    # fp32 on CPU; the scale is a power of two, so only rounding in the backward differs.
    assert_close(loss.detach().reshape(()), torch.tensor(want_loss), atol=1e-5, rtol=1e-5, what="the returned loss",
                 hint=f"expected the true loss; {SCALE:g} times larger is the scaled loss, the one only backward "
                      f"uses (the docstring: the returned loss and norm are the unscaled ones)")
    assert_close(norm.detach().reshape(()).float(), torch.tensor(want_norm), atol=1e-5, rtol=1e-4,
                 what="the returned gradient norm",
                 hint="expected the norm of the true (unscaled) gradients, from before clipping; a norm "
                      f"{SCALE:g} times larger was measured on the scaled gradients")
    for name, q in want_model.named_parameters():
        assert_close(got["params"][name], q.detach(), atol=1e-6, rtol=1e-5, what=f"parameter {name} after one step",
                     hint="a scaler must not change the update of an fp32 step: the parameters moved differently "
                          "from one step on the true gradients, clipped to max_grad_norm")


def test_train_step_with_a_real_grad_scaler_matches_the_unscaled_step():
    expect_the_step_without_a_scaler_works(3, 0.5)
    # Two copies of TinyLM(seed=3), one train_step each with AdamW(lr=1e-2): without a scaler, and with
    # torch's GradScaler on the CPU (init_scale 2**12; GradScaler runs on the CPU since torch 2.3).
    got = probe(P.train_steps_with_and_without_a_grad_scaler, 3, batch(3), 0.5)
    want = TinyLM(seed=3)
    for name, _ in want.named_parameters():
        assert_close(got["with"][name], got["without"][name], atol=1e-6, rtol=1e-5,
                     what=f"parameter {name} after a scaled step",
                     hint="a GradScaler must not change the update of an fp32 step: the parameters moved "
                          "differently from the same step without it")
    adamw_step(want, batch(3), 1e-2, 0.5)
    for name, q in want.named_parameters():
        # fp32 on CPU, the same operations: only rounding differs.
        assert_close(got["with"][name], q.detach(), atol=1e-6, rtol=1e-5, what=f"parameter {name} after a scaled step",
                     hint="expected one AdamW step (lr 1e-2) from this batch's true gradients, clipped to "
                          "max_grad_norm=0.5: a GradScaler must not change the update of an fp32 step")


def adamw_step(model: TinyLM, x: torch.Tensor, lr: float, max_norm: float) -> None:
    """The update a scaler must not change, with AdamW's defaults: backward, clip the true gradients, step."""
    model.train()
    _, loss = model(x, labels=x)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    torch.optim.AdamW(model.parameters(), lr=lr).step()


def test_train_step_skips_the_update_when_scaled_gradients_overflow():
    # HugeLossLM(seed=4) (TinyLM(seed=4) whose loss is x 1e30), SGD(lr=0.1) and a GradScaler at 2**40:
    # gradients ~1e28 x 2^40 overflow fp32 to inf, as fp16 gradients overflow at 65504.
    before = {n: p.detach().clone() for n, p in TinyLM(seed=4).named_parameters()}
    got = probe(P.train_step_overflowing_a_grad_scaler, 4, batch(4))
    loss, _ = train_step_result(got["out"])
    for n in before:
        assert torch.equal(got["params"][n], before[n]), (
            f"parameter {n} changed (or became NaN) although the scaled gradients overflowed: the update was made "
            f"by the optimizer directly, not by the scaler's step, which skips it when a gradient is inf/NaN"
        )
    assert got["scale"] < 2.0**40, (
        f"the scale is still {got['scale']:.3g} after an overflow: the scaler's scale was never updated after "
        f"its step (the docstring: the scaler makes the step and then updates its scale)"
    )
    assert torch.isfinite(loss), (f"the returned loss is {loss.item()}: that is the scaled loss (infinite here), "
                                  f"the returned loss must be the unscaled one")
