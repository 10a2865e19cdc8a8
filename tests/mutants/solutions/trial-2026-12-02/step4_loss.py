"""Step 4 — next-token loss: shift, ignore padding, average over real tokens.

You write `next_token_loss`; `nox -s check -- --step 4` grades it. Step 3's
`TinyGPT.forward` calls it when labels are given.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from position t. Returns a 0-dim float32 tensor.

    logits: (B, T, V) float (float32 or bf16); labels: (B, T) int64, usually the input
    ids themselves (the Hugging Face convention: the loss does the shift, not the data).
    Neither argument is modified: labels is often the very tensor the caller passed as
    input_ids, so writing the shifted targets into it would change the batch.
    The logits at position t are scored against the label at t+1: the last position
    has no next token and the first label has no prediction, so B*(T-1) pairs remain.
    A pair whose label is `ignore_index` (padding) does not count; any real id in
    [0, V) counts, the end-of-text id included. The result is the mean over the pairs
    that count, computed in float32 whatever the logits' dtype.
    Decided edge cases:
    - no pair counts (every shifted label is ignore_index, or T == 1): the result is a
      float32 0.0 that is still part of the graph (backward gives all-zero gradients),
      never NaN: a batch of pure padding must not poison training;
    - shapes that do not fit (not (B, T, V) with (B, T)) raise ValueError naming both.
    Why the shift: without it the model is trained to copy its input; the loss
    collapses towards 0 while it learns nothing it can generate with.
    Why it matters for speed: the logits are the largest tensor in the model
    (B x T x 50257 floats). A solution that slices or otherwise copies them pays a
    full copy forward and another backward; the labels are V times smaller. (bf16
    logits are copied once anyway, into the float32 the loss is computed in.)
    """
    if logits.dim() != 3 or labels.dim() != 2 or tuple(logits.shape[:2]) != tuple(labels.shape):
        raise ValueError(
            f"next_token_loss expects logits (B, T, V) and labels (B, T); got logits "
            f"{tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    B, T, V = logits.shape
    # Shift the labels (V times smaller than the logits), not the logits.
    targets = torch.full_like(labels, ignore_index)
    targets[:, :-1] = labels[:, 1:]
    flat = logits.reshape(B * T, V).float()
    total = F.cross_entropy(flat, targets.reshape(B * T), ignore_index=ignore_index, reduction="sum")
    count = (targets != ignore_index).sum()
    return total / count.clamp(min=1)
