"""Step 5: `train_step` with a gradient scaler (fp16 mixed precision on older GPUs).

fp16 gradients below ~6e-8 round to zero, so on a T4/V100/P100 the run passes a
`torch.amp.GradScaler` (kata/precision.py): backward on `scaler.scale(loss)`, then
`scaler.unscale_(optimizer)` BEFORE clipping (clip the true gradients), then
`scaler.step(optimizer)` (skips the update when a gradient overflowed) and
`scaler.update()`. Everything runs on the CPU in fp32: a `FakeScaler` with a known
scale records what the learner's code did with it, and PyTorch's own GradScaler
(which works on the CPU) checks the overflow skip.
"""
from __future__ import annotations

import copy

import pytest
import torch

from _step5_checks import loss_problem, train_step_result
from _support import assert_close, not_implemented_guard, student
from _tiny_lm import TinyLM

MODULE = "step5_train_loop"
SCALE = 1024.0  # a power of two: scaling and unscaling fp32 gradients is exact


def train_step(*args, **kwargs):
    return not_implemented_guard(student(MODULE).train_step, *args, **kwargs)


def checked_train_step(*args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """train_step, its return contract (0-dim detached tensors) checked before a test reads the values."""
    return train_step_result(train_step(*args, **kwargs))


class CountingSGD(torch.optim.SGD):
    """SGD that counts its steps, whether a scaler made them, and the gradient norm each step used."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.direct_steps = 0
        self.scaler_steps = 0
        self.via_scaler = False
        self.norms_used: list[float] = []

    def step(self, closure=None):
        if self.via_scaler:
            self.scaler_steps += 1
        else:
            self.direct_steps += 1
        grads = [p.grad.detach().flatten() for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.norms_used.append(torch.linalg.vector_norm(torch.cat(grads)).item() if grads else 0.0)
        return super().step(closure)


class FakeScaler:
    """Scales by a fixed SCALE and records calls; the GradScaler methods train_step needs."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.calls: list[str] = []

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        self.calls.append("scale")
        return loss * SCALE

    def unscale_(self, optimizer) -> None:
        self.calls.append("unscale_")
        with torch.no_grad():
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad /= SCALE

    def step(self, optimizer, *args, **kwargs):
        self.calls.append("step")
        optimizer.via_scaler = True
        try:
            return optimizer.step(*args, **kwargs)
        finally:
            optimizer.via_scaler = False

    def update(self, new_scale=None) -> None:
        self.calls.append("update")


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
    model = TinyLM(seed=seed)
    want = copy.deepcopy(model)
    want_loss, want_norm = plain_step(want, batch(seed), 0.1, max_norm)
    before = copy.deepcopy(model)
    opt = CountingSGD(model.parameters(), lr=0.1)
    loss, norm = checked_train_step(model, batch(seed), opt, max_norm)
    first = "without a scaler (before this test adds one), "
    then = (" The scaler tests build on the plain step; test_train_step_clips_before_the_optimizer_step "
            "(test_step5_train_loop.py) checks it. Look at train_step (step5_train_loop.py)")
    # The loss first: a loss of the wrong pairs changes the gradients and the update too.
    problem = loss_problem(before, batch(seed), loss)
    if problem:
        pytest.fail(f"{first}{problem}", pytrace=False)
    if len(opt.norms_used) != 1:
        pytest.fail(f"{first}train_step called optimizer.step() {len(opt.norms_used)} times, expected once.{then}",
                    pytrace=False)
    if opt.norms_used[0] > max_norm * CLIPPED:
        pytest.fail(
            f"{first}the gradients had total norm {opt.norms_used[0]:.4g} > max_grad_norm={max_norm} when "
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
    for (name, p), q in zip(model.named_parameters(), want.parameters()):
        assert_close(p.detach(), q.detach(), atol=1e-6, rtol=1e-5, what=f"{first}parameter {name} after one SGD step",
                     hint="expected one update from this batch's fresh gradients, clipped to max_grad_norm." + then)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_norm", [0.05, 1e6])  # clipping active, clipping idle
def test_train_step_with_a_scaler_clips_the_unscaled_gradients(seed, max_norm):
    expect_the_step_without_a_scaler_works(seed, max_norm)
    model = TinyLM(seed=seed)
    want_model = copy.deepcopy(model)
    want_loss, want_norm = plain_step(want_model, batch(seed), 0.1, max_norm)
    opt = CountingSGD(model.parameters(), lr=0.1)
    scaler = FakeScaler(model)
    loss, norm = checked_train_step(model, batch(seed), opt, max_norm, None, scaler)

    calls = {c: scaler.calls.count(c) for c in ("scale", "unscale_", "step", "update")}
    assert calls["scale"] == 1, (
        f"scaler.scale(loss) was called {calls['scale']} times, expected once: with a scaler, backward runs on "
        f"scaler.scale(loss) so small fp16 gradients do not round to zero (step 5 train_step's docstring)"
    )
    assert calls["unscale_"] == 1, (
        f"scaler.unscale_(optimizer) was called {calls['unscale_']} times, expected once, before "
        f"clip_grad_norm_: clipping must see the true gradients, not scale x them"
    )
    assert opt.direct_steps == 0 and opt.scaler_steps == 1, (
        f"with a scaler, the update must go through scaler.step(optimizer) exactly once (it skips the step when a "
        f"gradient overflowed); got {opt.scaler_steps} scaler.step and {opt.direct_steps} direct optimizer.step() calls"
    )
    assert "update" in scaler.calls[scaler.calls.index("step"):], (
        f"scaler.update() must follow scaler.step(optimizer) (it adapts the scale for the next step); calls: {scaler.calls}"
    )
    assert opt.norms_used[0] <= max_norm * CLIPPED, (
        f"with a scaler, the gradients had total norm {opt.norms_used[0]:.4g} > max_grad_norm={max_norm} when "
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
    for (name, p), q in zip(model.named_parameters(), want_model.parameters()):
        assert_close(p.detach(), q.detach(), atol=1e-6, rtol=1e-5, what=f"parameter {name} after one step",
                     hint="a scaler must not change the update of an fp32 step: the parameters moved differently "
                          "from one step on the true gradients, clipped to max_grad_norm")


def test_train_step_with_a_real_grad_scaler_matches_the_unscaled_step():
    expect_the_step_without_a_scaler_works(3, 0.5)
    model = TinyLM(seed=3)
    want = copy.deepcopy(model)
    train_step(want, batch(3), torch.optim.AdamW(want.parameters(), lr=1e-2), 0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)  # GradScaler runs on the CPU since torch 2.3
    loss, _ = train_step(model, batch(3), torch.optim.AdamW(model.parameters(), lr=1e-2), 0.5, None, scaler)
    for (name, p), q in zip(model.named_parameters(), want.parameters()):
        assert_close(p.detach(), q.detach(), atol=1e-6, rtol=1e-5, what=f"parameter {name} after a scaled step",
                     hint="a GradScaler must not change the update of an fp32 step: the parameters moved "
                          "differently from the same step without it")


class HugeLossLM(TinyLM):
    """TinyLM with its loss multiplied by 1e30: finite in fp32, but its gradients x 2^40 are not."""

    def forward(self, input_ids, labels=None):
        logits, loss = super().forward(input_ids, labels)
        return logits, None if loss is None else loss * 1e30


def test_train_step_skips_the_update_when_scaled_gradients_overflow():
    model = HugeLossLM(seed=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # Gradients ~1e28 x 2^40 overflow fp32 to inf, as fp16 gradients overflow at 65504.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, _ = checked_train_step(model, batch(4), opt, 1.0, None, scaler)
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]), (
            f"parameter {n} changed (or became NaN) although the scaled gradients overflowed: the update was made "
            f"by the optimizer directly, not by the scaler's step, which skips it when a gradient is inf/NaN"
        )
    assert scaler.get_scale() < 2.0**40, (
        f"the scale is still {scaler.get_scale():.3g} after an overflow: the scaler's scale was never updated after "
        f"its step (the docstring: the scaler makes the step and then updates its scale)"
    )
    assert torch.isfinite(loss), (f"the returned loss is {loss.item()}: that is the scaled loss (infinite here), "
                                  f"the returned loss must be the unscaled one")
