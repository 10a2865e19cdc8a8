"""Step 5 — from a token stream to training: chunks, optimizer, clipping, LR, evaluation."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn


def join_documents(docs: Sequence[Sequence[int]], eos_id: int) -> np.ndarray:
    """Concatenate tokenised documents into one stream, each followed by `eos_id`.

    Returns a 1-D int64 array of length sum(len(d) + 1). The end-of-text token tells
    the model where one document stops, so it learns not to continue a play into the
    next one (and generation can learn to stop).
    """
    parts: list[np.ndarray] = []
    for d in docs:
        parts.append(np.asarray(d, dtype=np.int64))
        parts.append(np.asarray([eos_id], dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def chunk_tokens(stream: Sequence[int] | np.ndarray | torch.Tensor, block_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into consecutive, non-overlapping blocks.

    Returns (N, block_size) int64 with N = len(stream) // block_size; row i is
    stream[i*block_size : (i+1)*block_size]. Only the final partial block (fewer than
    block_size tokens of the whole corpus) is dropped. The seed lab chunks inside
    each `map` batch and so drops a tail per batch of 1,000 lines.
    """
    stream = torch.as_tensor(np.asarray(stream), dtype=torch.long).flatten()
    n = stream.numel() // block_size
    if n == 0:
        raise ValueError(
            f"the corpus has {stream.numel()} tokens, fewer than one block of "
            f"block_size={block_size}: use a larger corpus or a smaller block_size"
        )
    return stream[: n * block_size].view(n, block_size)


def configure_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW with two parameter groups: decay on matrices (dim >= 2), none on the rest.

    Weight decay pulls weights towards 0; on biases and LayerNorm gains (1-D) that only
    fights the normalisation, so they are excluded. A tied matrix appears once.
    """
    params = [p for p in model.parameters() if p.requires_grad]  # deduplicates tied weights
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if fused is None:
        fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def lr_at(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warmup to `max_lr`, then cosine decay to `min_lr` at `total_steps`.

    step 0 -> max_lr / warmup_steps (never exactly 0, or the first step is wasted);
    step warmup_steps - 1 -> max_lr; step >= total_steps -> min_lr.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_step(
    model: nn.Module,
    input_ids: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    max_grad_norm: float = 1.0,
    autocast_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a (B, T) batch; labels are the inputs (the model shifts).

    Order matters: zero the old gradients, forward, backward, clip the total gradient
    norm to `max_grad_norm`, and only then `optimizer.step()` — clipping after the
    step changes nothing the optimizer used. Returns (loss, grad norm before clipping)
    as 0-dim tensors, left on the device so the loop does not wait for the GPU.
    With a gradient `scaler` (fp16 on older GPUs; None otherwise) backward runs on
    `scaler.scale(loss)`, `scaler.unscale_(optimizer)` comes before clipping (clip the
    true gradients), and `scaler.step(optimizer)` then `scaler.update()` replace
    `optimizer.step()`; the returned loss and norm are the unscaled ones.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(input_ids.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        _, loss = model(input_ids, labels=input_ids)
    # fp16 gradients below ~6e-8 round to 0: the scaler multiplies the loss (so every
    # gradient) by a large factor for backward, and divides it out again before use.
    (loss if scaler is None else scaler.scale(loss)).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)  # clipping must see the true gradients, not scale x them
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)  # skips the update if a gradient overflowed to inf/NaN
        scaler.update()  # a smaller scale after an overflow, a larger one after a calm stretch
    return loss.detach(), grad_norm.detach()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    chunks: torch.Tensor,
    batch_size: int = 16,
    max_batches: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Validation loss and perplexity over (N, T) chunks, in eval mode (no dropout).

    The loss is the mean over every predicted token (each batch weighted by its
    size, so a short last batch is not over-counted); perplexity = exp(loss).
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = torch.zeros((), device=device, dtype=torch.float64), 0
    for i, start in enumerate(range(0, len(chunks), batch_size)):
        if max_batches is not None and i >= max_batches:
            break
        batch = chunks[start : start + batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            _, loss = model(batch, labels=batch)
        total += loss.double() * len(batch)
        count += len(batch)
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got no chunks: the validation split is shorter than one block")
    mean = (total / count).item()
    return {"loss": mean, "perplexity": math.exp(min(mean, 700.0))}


def epoch_batches(num_chunks: int, batch_size: int, epoch: int, seed: int) -> list[torch.Tensor]:
    """Shuffled index batches for one epoch, the same for the same (seed, epoch).

    Deterministic order is what makes a resumed run continue exactly where it
    stopped. The last partial batch is dropped so every step sees batch_size rows.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(num_chunks, generator=g)
    return [perm[i : i + batch_size] for i in range(0, num_chunks - batch_size + 1, batch_size)]


def iterate_batches(chunks: torch.Tensor, batch_size: int, seed: int, start_step: int = 0) -> Iterable[torch.Tensor]:
    """Endless stream of (batch_size, T) batches from step `start_step` on, epoch after epoch."""
    per_epoch = len(chunks) // batch_size
    if per_epoch == 0:
        raise ValueError(
            f"{len(chunks)} training chunks are fewer than one batch of {batch_size}: "
            f"lower batch_size or block_size, or use a larger corpus"
        )
    step = start_step
    while True:
        epoch, offset = divmod(step, per_epoch)
        for idx in epoch_batches(len(chunks), batch_size, epoch, seed)[offset:]:
            yield chunks[idx]
            step += 1
