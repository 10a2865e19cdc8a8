"""Step 2 — the causal mask and masked, scaled attention scores.

You write `causal_mask` and `masked_attention_scores`; `nox -s check -- --step 2` grades
them. Step 3's attention uses both when `attn_impl="manual"`.
"""
from __future__ import annotations

import math

import torch


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) torch.bool on `device`: entry [i, j] is True where query i may attend to key j.

    Allowed means j <= i: a position sees itself and everything before it, never
    after (row i is True in columns 0..i). Why: position i predicts token i+1, so
    seeing j > i would let it copy the answer and learn nothing it can use when
    generating, where the future does not exist yet.
    """
    return torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))


def masked_attention_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product scores with disallowed positions set to -inf.

    q, k: (B, H, T, D) float; mask: (T, T) bool from `causal_mask` (True = may attend).
    Use the mask you are given, not one you build yourself. Returns (B, H, T, T) in
    q's dtype: entry [b, h, i, j] is the dot product of query i with key j divided by
    sqrt(D) (the head size, not T) where the mask allows it, and -inf where it does
    not, so a softmax over the last dim gives the future exactly zero weight. q, k and
    mask are not modified: they belong to the caller, which may use them again. Why the
    scale: dot products of D-dim vectors have variance ~D; dividing by sqrt(D) keeps
    the scores ~1 so the softmax does not saturate at init.
    """
    D = q.size(-1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)
    return scores.masked_fill(~mask, float("-inf"))
