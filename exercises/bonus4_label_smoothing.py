"""Bonus 4 — label smoothing as a loss module (the Annotated Transformer's `LabelSmoothing`).

Instead of asking for probability 1 on the right token, ask for `1 - smoothing` and
spread `smoothing` evenly over the other tokens — except padding, which the model must
never produce. The model becomes less sure of itself: perplexity gets worse, but
accuracy and BLEU improve (section 5.4 of the paper).

You write `LabelSmoothingLoss.smoothed_targets` and `LabelSmoothingLoss.forward`;
`nox -s check -- --step bonus4` grades them. `__init__` and `check_inputs` are given.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bonus2_batch import PAD_ID


class LabelSmoothingLoss(nn.Module):
    """KL(smoothed targets || model), summed over real target tokens, divided by their count."""

    def __init__(self, vocab_size: int, pad_id: int = PAD_ID, smoothing: float = 0.1) -> None:
        super().__init__()
        if vocab_size < 3:
            raise ValueError(
                f"vocab_size must be >= 3 (padding, the target, and one token to smooth onto), got {vocab_size}"
            )
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id={pad_id} is not a token id of a vocabulary of {vocab_size}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.smoothing = smoothing
        self.confidence = 1.0 - smoothing

    def check_inputs(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Raise a ValueError naming the problem for shapes the loss cannot take, or no real token."""
        if logits.shape[:-1] != target.shape or logits.size(-1) != self.vocab_size:
            raise ValueError(
                f"expected logits (..., {self.vocab_size}) and target (...) with the same leading "
                f"dims; got {tuple(logits.shape)} and {tuple(target.shape)}"
            )
        if not bool((target != self.pad_id).any()):
            raise ValueError("every target is padding: there is no token to compute a loss on")

    def smoothed_targets(self, target: torch.Tensor) -> torch.Tensor:
        """(N,) int64 target ids -> (N, V) float32: row n is the distribution q_n the model is taught.

        For a real target (target[n] != pad_id), q_n is a probability distribution over
        the V tokens — it sums to 1 — with these properties:
          - the target token gets `self.confidence` (= 1 - smoothing);
          - the padding token gets 0: the model must never be taught to produce padding;
          - the remaining mass, `smoothing`, is shared equally by all the other tokens
            (every token that is neither the target nor padding gets the same share).
        With smoothing = 0, q_n is the one-hot vector of the target.
        A row whose target is padding is all zeros: it is not a token to learn, so it
        contributes nothing to the loss. Same device as `target`.
        """
        raise NotImplementedError(
            "LabelSmoothingLoss.smoothed_targets is not written yet (bonus 4): its docstring states what it must do; "
            "`nox -s check -- --step bonus4` grades it"
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (..., V) float, target (...) int64 with the same leading dims -> 0-dim float32 tensor.

        The loss per real target token: the KL divergence KL(q || p) between the
        smoothed target q of a position (`smoothed_targets`) and the model's
        p = softmax(logits) there, summed over every position whose target is real
        (not pad_id) and divided by the number of such positions. Consequences the
        tests check:
          - positions whose target is padding contribute nothing: neither to the value
            nor to the gradient of their logits;
          - adding padded positions to a batch leaves the loss unchanged (a mean per
            real token, not per position), so padding-heavy batches are not down-weighted;
          - a token with q = 0 contributes 0 (the convention 0 * log 0 = 0), never NaN;
          - with smoothing = 0 it equals the cross-entropy with ignore_index = pad_id.
        Why KL rather than the cross-entropy: they differ by the entropy of q, a
        constant, so the gradients are identical, but KL is 0 exactly when the model
        matches q, which makes the logged number readable.
        Computed in float32 whatever the logits' dtype (bf16 log-probabilities are too
        coarse to sum), and differentiable with respect to the logits. Call
        `self.check_inputs(logits, target)` first (given): it raises ValueError for
        mismatched shapes and for a target with no real token (nothing to divide by).
        """
        raise NotImplementedError(
            "LabelSmoothingLoss.forward is not written yet (bonus 4): its docstring states what it must do; "
            "`nox -s check -- --step bonus4` grades it"
        )
