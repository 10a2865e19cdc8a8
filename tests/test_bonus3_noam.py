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

import _probes_bonus3 as P
from _support import probe

REL = 1e-9


def closed_form(step: int, d_model: int, warmup: int, factor: float) -> float:
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def as_float(got: dict, step: int, d_model: int, warmup: int, factor: float) -> float:
    """The value `noam_lr(step, d_model, warmup, factor)` returned (`got`: `P.returned`'s
    description of it); fails the test unless it is a Python float."""
    if not got["float"]:
        pytest.fail(
            f"noam_lr({step}, d_model={d_model}, warmup={warmup}, factor={factor}) returned a "
            f"{got['type']} ({got['repr']}), not the Python float its docstring "
            f"states: the rate is plain arithmetic on Python numbers; a tensor rate ends up inside the "
            f"optimizer's param_groups and in every log line",
            pytrace=False,
        )
    return got["value"]


def noam(step: int, d_model: int, warmup: int, factor: float) -> float:
    """The learner's `noam_lr(step, d_model, warmup, factor)` (run in the worker when separated)."""
    return as_float(probe(P.noam_lr, step, d_model, warmup, factor), step, d_model, warmup, factor)


def check(step: int, d_model: int, warmup: int, factor: float, where: str) -> None:
    got = noam(step, d_model, warmup, factor)
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
    lrs = [as_float(got, s, d_model, warmup, factor)
           for s, got in zip(steps, probe(P.noam_lrs, list(steps), d_model, warmup, factor))]
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
        probe(P.noam_lr, 0, 512, 4000)
    assert "1" in str(e.value), f"the ValueError for step 0 should say steps count from 1; it says: {e.value}"


def a_pair(seen: dict) -> dict:
    """What a probe saw of `noam_optimizer`'s result; fails the test unless it was the documented pair."""
    assert seen["pair"], "noam_optimizer must return (optimizer, scheduler)"
    return seen


def lr_mismatch(k: int, got: float, d_model: int, warmup: int, factor: float) -> str:
    """Why the optimizer's lr after `k` scheduler.step() calls is not noam_lr(k + 1): the
    failure message, or "" when it is."""
    want = closed_form(k + 1, d_model, warmup, factor)
    if math.isclose(got, want, rel_tol=REL):
        return ""
    hint = (f"it is {got / want:.4g} times the schedule's value: the schedule alone must set the rate, "
            f"nothing else may scale it (how does LambdaLR turn its lambda into a learning rate?). "
            f"Look at noam_optimizer (bonus3_noam.py)")
    if k > 0 and math.isclose(got, closed_form(k, d_model, warmup, factor), rel_tol=REL):
        hint = (f"it is one step behind, noam_lr({k}) where noam_lr({k + 1}) was due: the first update is "
                f"step 1 of the schedule, while LambdaLR counts its own steps from 0")
    elif k == 0 and got == 0.0:
        hint = "the first update gets lr 0: LambdaLR's counter starts at 0, the schedule's at 1"
    return (f"after {k} scheduler.step() calls the optimizer's lr should be noam_lr({k + 1}) = {want:.6g}, "
            f"got {got:.6g}: {hint}")


def test_optimizer_is_adam_with_the_papers_betas_and_eps():
    d_model, warmup, factor = 64, 10, 2.0
    opt = a_pair(probe(P.optimizer_settings, d_model, warmup, factor))
    assert opt["is_adam"], f"noam_optimizer should build torch.optim.Adam, got {opt['optimizer']}"
    assert tuple(opt["betas"]) == (0.9, 0.98), (
        f"the paper's Adam uses betas=(0.9, 0.98), got {tuple(opt['betas'])}: beta2 = 0.98 (not the default "
        f"0.999) lets the second moment follow the fast-changing early gradients"
    )
    assert opt["eps"] == 1e-9, f"the paper's Adam uses eps=1e-9, got {opt['eps']}"
    assert opt["same_params"], "the optimizer must hold exactly the parameters it was given"
    mismatch = lr_mismatch(0, opt["lr"], d_model, warmup, factor)
    if mismatch:
        pytest.fail(f"right after noam_optimizer(..., d_model={d_model}, warmup={warmup}, factor={factor}), {mismatch}",
                    pytrace=False)


def test_the_optimizers_lr_follows_the_schedule_step_by_step():
    d_model, warmup, factor = 64, 10, 2.0
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    seen = a_pair(probe(P.lrs_while_training, d_model, warmup, factor, x, 3 * warmup))
    for k, got in enumerate(seen["lrs"]):
        mismatch = lr_mismatch(k, got, d_model, warmup, factor)
        if mismatch:
            pytest.fail(mismatch, pytrace=False)
