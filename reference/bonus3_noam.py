"""Bonus 3 — the Noam learning-rate schedule ("Attention Is All You Need", section 5.3).

lr(step) = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), step = 1, 2, ...

It rises linearly for `warmup` steps, peaks at step == warmup (where both terms of the
min are equal), then decays like 1/sqrt(step). Wider models (larger d_model) get a
smaller rate. The paper pairs it with Adam(betas=(0.9, 0.98), eps=1e-9): beta2 = 0.98
lets the second-moment estimate follow the fast-changing early gradients.

Why warm up at all: Adam's first updates rest on moment estimates built from a handful
of gradients; a full-size step then can throw a freshly initialised Transformer into a
region it does not recover from. Why decay: late in training smaller steps settle
into a minimum instead of bouncing around it.

You write `noam_lr` and `noam_optimizer`; `nox -s check -- --step bonus3` grades them.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

ADAM_BETAS = (0.9, 0.98)
ADAM_EPS = 1e-9


def noam_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """The learning rate of update number `step` (counted from 1) -> a Python float.

    The formula in this module's docstring, exactly (the tests compare to ~1e-9
    relative): it rises linearly up to step == warmup, peaks there, then decays as
    step^-0.5; `factor` scales all of it.
    Errors, each a ValueError whose message names the fix:
      - step < 1: there is no step 0 (0^-0.5 is infinite); the first update is step 1,
        and the message says steps count from 1;
      - d_model < 1 or warmup < 1.
    """
    # BEGIN SOLUTION
    if step < 1:
        raise ValueError(
            f"step must be >= 1, got {step}: the Noam schedule counts steps from 1 "
            f"(0 ** -0.5 is infinite); pass the number of the update about to be taken"
        )
    if d_model < 1 or warmup < 1:
        raise ValueError(f"d_model and warmup must be positive, got d_model={d_model}, warmup={warmup}")
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
    # END SOLUTION


def noam_optimizer(
    params: Iterable[torch.nn.Parameter], d_model: int, warmup: int, factor: float = 1.0
) -> tuple[torch.optim.Adam, LambdaLR]:
    """(Adam over `params`, a LambdaLR scheduler on it) that together follow `noam_lr`.

    The optimizer is `torch.optim.Adam` with the paper's ADAM_BETAS and ADAM_EPS, over
    exactly the parameters given. The scheduler is a `LambdaLR` on that optimizer, and
    the pair obeys this contract, for every param group:
      - right after construction (before any update) the lr is noam_lr(1, ...): the
        first update is step 1 of the schedule, and it must not get a rate of 0;
      - after k calls of `scheduler.step()` (the training loop makes one after each
        `optimizer.step()`) the lr is noam_lr(k + 1, ...), with this function's
        d_model, warmup and factor;
      - the schedule alone sets the rate: no other learning rate scales it.
    Read how LambdaLR turns its lambda into a learning rate (its docstring, or
    torch/optim/lr_scheduler.py) before writing the lambda.
    """
    # BEGIN SOLUTION
    optimizer = torch.optim.Adam(params, lr=1.0, betas=ADAM_BETAS, eps=ADAM_EPS)
    scheduler = LambdaLR(optimizer, lr_lambda=lambda s: noam_lr(s + 1, d_model, warmup, factor))
    return optimizer, scheduler
    # END SOLUTION
