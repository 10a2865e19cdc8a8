"""The kata's own measure of a trained model: held-out next-token loss.

Step 8's verdict and step 7's Trainer comparison both score a trained model with this,
never with the learner's step 4 or step 5 `evaluate`: a loss that is wrong in the
learner's favour (unshifted, say) would otherwise grade itself. `kata.pretrain` uses it
for the verdict of every run; `kata.final` compares it with the tier's threshold.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def heldout_loss(
    model: torch.nn.Module,
    chunks: torch.Tensor,
    batch_size: int = 16,
    max_batches: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Mean next-token cross-entropy over (N, T) validation chunks, in eval mode.

    The kata's own measurement for the verdict: logits at t are scored against the
    token at t+1, averaged over every predicted token (batches weighted by size), on
    the same first `max_batches` batches the run's `evaluate` uses. The model's
    forward may return `(logits, loss)` (TinyGPT) or an object with `.logits` (HF).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for i, start in enumerate(range(0, len(chunks), batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            batch = chunks[start : start + batch_size].to(device)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                out = model(batch)
            logits = out[0] if isinstance(out, tuple) else out.logits
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), batch[:, 1:].reshape(-1))
            total += loss.item() * len(batch)
            count += len(batch)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("heldout_loss() got no chunks: the validation split is shorter than one block")
    return total / count
