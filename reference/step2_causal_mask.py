"""Step 2 — the causal mask and masked, scaled attention scores."""
from __future__ import annotations

import math

import torch


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) bool, True where query i may attend to key j, i.e. j <= i (lower triangle).

    Position i predicts token i+1, so it may only look at tokens 0..i; seeing j > i
    would let it copy the answer and learn nothing it can use when generating.
    """
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def masked_attention_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product scores with disallowed positions set to -inf.

    q, k: (B, H, T, D). mask: (T, T) bool from `causal_mask` (True = may attend).
    Returns (B, H, T, T): q·k / sqrt(D) where allowed, -inf elsewhere, so a softmax
    over the last dim gives exactly zero weight to the future. Dividing by sqrt(D)
    keeps the scores' variance ~1 so the softmax does not saturate at init.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return scores.masked_fill(~mask, float("-inf"))
