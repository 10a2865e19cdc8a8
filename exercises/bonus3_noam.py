"""Bonus 3 — the Noam learning-rate schedule ("Attention Is All You Need", section 5.3).

lr(step) = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), step = 1, 2, ...

It rises linearly for `warmup` steps, peaks at step == warmup (where both terms of the
min are equal), then decays like 1/sqrt(step). Wider models (larger d_model) get a
smaller rate. The paper pairs it with Adam(betas=(0.9, 0.98), eps=1e-9): beta2 = 0.98
lets the second-moment estimate follow the fast-changing early gradients.

Fill in `noam_lr` and `noam_optimizer`; `pytest -k bonus3` checks them.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

ADAM_BETAS = (0.9, 0.98)
ADAM_EPS = 1e-9


def noam_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """The learning rate at optimisation step `step` (counted from 1). Returns a float.

    Step 0 does not exist in the formula (0^-0.5 is infinite): the first update is step 1.
    """
    raise NotImplementedError(
        "noam_lr is not written yet (bonus 3): its docstring states what it must do; "
        "`nox -s check -- --step bonus3` grades it"
    )


def noam_optimizer(
    params: Iterable[torch.nn.Parameter], d_model: int, warmup: int, factor: float = 1.0
) -> tuple[torch.optim.Adam, LambdaLR]:
    """Adam with the paper's betas and eps, and a LambdaLR that applies `noam_lr`.

    Contract: right after construction every param group's lr is noam_lr(1); after k
    calls of `scheduler.step()` (one per `optimizer.step()`) it is noam_lr(k + 1).
    LambdaLR multiplies the base lr by the lambda, so the base lr is 1.0; it calls the
    lambda with its own counter, which starts at 0 — hence the + 1.
    """
    raise NotImplementedError(
        "noam_optimizer is not written yet (bonus 3): its docstring states what it must do; "
        "`nox -s check -- --step bonus3` grades it"
    )
