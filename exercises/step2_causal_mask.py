"""Step 2 — the causal mask and masked, scaled attention scores.

Fill in `causal_mask` and `masked_attention_scores`; `pytest -k step2` checks them.
Step 3's attention uses both when `attn_impl="manual"`.
"""
from __future__ import annotations

import math

import torch


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) bool on `device`, True where query i may attend to key j, i.e. j <= i.

    That is the lower triangle, diagonal included: position i may look at itself and
    at everything before it. Position i predicts token i+1, so seeing j > i would let
    it copy the answer and learn nothing it can use when generating.
    """
    raise NotImplementedError(
        "causal_mask is not written yet (step 2): its docstring states what it must do; "
        "`nox -s check -- --step 2` grades it"
    )


def masked_attention_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product scores with disallowed positions set to -inf.

    q, k: (B, H, T, D) float. mask: (T, T) bool from `causal_mask` (True = may attend);
    use the mask you are given, not one you build yourself.
    Returns (B, H, T, T): q·k / sqrt(D) where allowed, -inf elsewhere, so a softmax over
    the last dim gives exactly zero weight to the future. Dividing by sqrt(D) (the
    head size, not T) keeps the scores' variance ~1 so the softmax does not saturate
    at init.
    """
    raise NotImplementedError(
        "masked_attention_scores is not written yet (step 2): its docstring states what it must do; "
        "`nox -s check -- --step 2` grades it"
    )
