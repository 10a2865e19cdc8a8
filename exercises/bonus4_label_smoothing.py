"""Bonus 4 — label smoothing as a loss module (the Annotated Transformer's `LabelSmoothing`).

Instead of asking for probability 1 on the right token, ask for `1 - smoothing` and
spread `smoothing` evenly over the other tokens — except padding, which the model must
never produce. The model becomes less sure of itself: perplexity gets worse, but
accuracy and BLEU improve (section 5.4 of the paper).

Fill in `LabelSmoothingLoss.smoothed_targets` and `LabelSmoothingLoss.forward`;
`pytest -k bonus4` checks them. `__init__` and `check_inputs` are given.
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
        """(N,) int64 target ids -> (N, V) float32 target distribution.

        Row n: `confidence` at target[n], `smoothing / (V - 2)` at every other token
        except the padding column, which is 0 (V - 2: the target and padding are
        excluded). A row whose target is padding is all zeros: it is not a token to
        learn, so it contributes nothing to the loss.
        """
        raise NotImplementedError(
            "smoothed_targets is not written yet (bonus 4): its docstring states what it must do; "
            "`nox -s check -- --step bonus4` grades it"
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (..., V) float, target (...) int64 -> 0-dim float: the loss per real token.

        Sum over every real (non-pad) target position of KL(q || softmax(logits)),
        divided by the number of such positions, so batches with more padding are not
        weighted less. KL differs from the cross-entropy by the entropy of q, a
        constant: the same gradients, but 0 when the model matches q exactly.
        Call `self.check_inputs(logits, target)` first (given); compute in float32.
        """
        raise NotImplementedError(
            "LabelSmoothingLoss.forward is not written yet (bonus 4): its docstring states what it must do; "
            "`nox -s check -- --step bonus4` grades it"
        )
