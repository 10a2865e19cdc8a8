"""Bonus 3: the Noam schedule against its closed form, and the optimizer that follows it.

Tolerance: rel 1e-9. The schedule is one closed-form expression in float64; writing it
as 1/sqrt(step) or step ** -0.5 changes only the last bits (~1e-16 relative), while
the mistakes looked for (step from 0, missing d_model^-0.5, warmup^-0.5) are off by
> 1e-3 relative at the steps tested.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from _support import not_implemented_guard, student

MODULE = "bonus3_noam"
REL = 1e-9


def closed_form(step: int, d_model: int, warmup: int, factor: float) -> float:
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def noam(*args, **kwargs) -> float:
    return not_implemented_guard(student(MODULE).noam_lr, *args, **kwargs)


def check(step: int, d_model: int, warmup: int, factor: float, where: str) -> None:
    got = noam(step, d_model, warmup, factor)
    if not isinstance(got, float):
        pytest.fail(
            f"noam_lr({step}, d_model={d_model}, warmup={warmup}, factor={factor}) returned a "
            f"{type(got).__module__}.{type(got).__qualname__} ({got!r}), not the Python float its docstring "
            f"states: the rate is plain arithmetic on Python numbers; a tensor rate ends up inside the "
            f"optimizer's param_groups and in every log line",
            pytrace=False,
        )
    want = closed_form(step, d_model, warmup, factor)
    if not math.isclose(got, want, rel_tol=REL):
        hint = ("the closed form is in the module docstring of bonus3_noam.py. Look at noam_lr; "
                "stuck? `nox -s hint -- bonus 3`")
        if step > 1 and math.isclose(got, closed_form(step - 1, d_model, warmup, factor), rel_tol=REL):
            hint = "it equals the value at step - 1: the formula counts steps from 1, use `step` as given"
        elif math.isclose(got, closed_form(step, d_model, warmup, factor) * d_model ** 0.5, rel_tol=REL):
            hint = "it is sqrt(d_model) times too large: the d_model scale is missing (wider models get a smaller rate)"
        elif math.isclose(got, factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -0.5), rel_tol=REL):
            hint = ("the warm-up term has the wrong power of warmup: the two terms of the min must meet exactly at "
                    "step == warmup")
        pytest.fail(
            f"noam_lr({step}, d_model={d_model}, warmup={warmup}, factor={factor}) {where}: expected {want:.6g}, "
            f"got {got:.6g}. {hint}",
            pytrace=False,
        )


SHAPES = dict(d_model=st.integers(8, 1024), warmup=st.integers(1, 500), factor=st.floats(0.1, 5.0))


@given(**SHAPES)
def test_first_step_is_factor_over_sqrt_d_model_times_warmup_to_minus_one_and_a_half(d_model, warmup, factor):
    check(1, d_model, warmup, factor, "(the first update, step 1)")


@given(**SHAPES)
def test_peak_is_at_warmup(d_model, warmup, factor):
    check(warmup, d_model, warmup, factor, "(the peak, step == warmup)")
    steps = range(1, 3 * warmup + 2)
    lrs = [noam(s, d_model, warmup, factor) for s in steps]
    peak = steps[max(range(len(lrs)), key=lrs.__getitem__)]
    assert peak == warmup, (
        f"with warmup={warmup} the learning rate should rise until step {warmup} and fall after it; its largest "
        f"value over steps 1..{3 * warmup + 1} is at step {peak}: the rising and the falling term of the min must "
        f"meet exactly at step == warmup (noam_lr, bonus3_noam.py)"
    )


@given(**SHAPES, multiple=st.integers(2, 1000))
def test_after_warmup_it_decays_as_one_over_sqrt_step(d_model, warmup, factor, multiple):
    check(warmup * multiple, d_model, warmup, factor, "(after warm-up, decaying as step ** -0.5)")


def test_step_zero_is_an_error_that_says_steps_count_from_one():
    with pytest.raises(ValueError) as e:
        noam(0, 512, 4000)
    assert "1" in str(e.value), f"the ValueError for step 0 should say steps count from 1; it says: {e.value}"


def make_optimizer(d_model: int = 64, warmup: int = 10, factor: float = 2.0):
    lin = torch.nn.Linear(3, 2)
    out = not_implemented_guard(student(MODULE).noam_optimizer, lin.parameters(), d_model, warmup, factor)
    assert isinstance(out, tuple) and len(out) == 2, "noam_optimizer must return (optimizer, scheduler)"
    return lin, *out


def test_optimizer_is_adam_with_the_papers_betas_and_eps():
    lin, opt, _ = make_optimizer()
    assert type(opt) is torch.optim.Adam, f"noam_optimizer should build torch.optim.Adam, got {type(opt).__name__}"
    group = opt.param_groups[0]
    assert tuple(group["betas"]) == (0.9, 0.98), (
        f"the paper's Adam uses betas=(0.9, 0.98), got {tuple(group['betas'])}: beta2 = 0.98 (not the default "
        f"0.999) lets the second moment follow the fast-changing early gradients"
    )
    assert group["eps"] == 1e-9, f"the paper's Adam uses eps=1e-9, got {group['eps']}"
    params = {id(p) for g in opt.param_groups for p in g["params"]}
    assert params == {id(p) for p in lin.parameters()}, "the optimizer must hold exactly the parameters it was given"


def test_the_optimizers_lr_follows_the_schedule_step_by_step():
    d_model, warmup, factor = 64, 10, 2.0
    lin, opt, sched = make_optimizer(d_model, warmup, factor)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    for k in range(3 * warmup):
        got = opt.param_groups[0]["lr"]
        want = closed_form(k + 1, d_model, warmup, factor)
        if not math.isclose(got, want, rel_tol=REL):
            hint = (f"it is {got / want:.4g} times the schedule's value: the schedule alone must set the rate, "
                    f"nothing else may scale it (how does LambdaLR turn its lambda into a learning rate?). "
                    f"Look at noam_optimizer (bonus3_noam.py)")
            if k > 0 and math.isclose(got, closed_form(k, d_model, warmup, factor), rel_tol=REL):
                hint = (f"it is one step behind, noam_lr({k}) where noam_lr({k + 1}) was due: the first update is "
                        f"step 1 of the schedule, while LambdaLR counts its own steps from 0")
            elif k == 0 and got == 0.0:
                hint = "the first update gets lr 0: LambdaLR's counter starts at 0, the schedule's at 1"
            pytest.fail(
                f"after {k} scheduler.step() calls the optimizer's lr should be noam_lr({k + 1}) = {want:.6g}, "
                f"got {got:.6g}: {hint}",
                pytrace=False,
            )
        opt.zero_grad()
        lin(x).pow(2).sum().backward()
        opt.step()
        sched.step()
