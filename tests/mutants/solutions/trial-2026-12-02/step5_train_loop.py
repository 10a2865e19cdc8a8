"""Step 5 — from a token stream to training: chunks, optimizer, clipping, LR, evaluation.

You write `join_documents`, `chunk_tokens`, `configure_optimizer`, `lr_at`, `train_step`
and `evaluate`; `nox -s check -- --step 5` grades them. `set_lr`, `epoch_batches` and
`iterate_batches` are given.
"""
from __future__ import annotations

import math  # noqa: F401
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn


def join_documents(docs: Sequence[Sequence[int]], eos_id: int) -> np.ndarray:
    """Concatenate tokenised documents into one stream, each followed by `eos_id`.

    docs: a sequence of token-id sequences; eos_id: any token id, 0 included. Returns a
    1-D int64 numpy array of length sum(len(d) + 1): the documents in order, each one's
    tokens followed by one `eos_id` (an empty document contributes just the `eos_id`;
    no documents give an empty array).
    Why: the end-of-text token tells the model where one document stops, so it learns
    not to run one play into the next, and generation can learn to stop.
    """
    parts: list[np.ndarray] = []
    eos = np.array([eos_id], dtype=np.int64)
    for d in docs:
        parts.append(np.asarray(d, dtype=np.int64).reshape(-1))
        parts.append(eos)
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(parts).astype(np.int64, copy=False)


def chunk_tokens(stream: Sequence[int] | np.ndarray | torch.Tensor, block_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into consecutive, non-overlapping blocks.

    stream: a list, numpy array or tensor of ids. Returns an (N, block_size) int64
    tensor holding the stream's tokens in their original order, as many whole blocks
    as fit: only the final partial block (fewer than block_size tokens of the whole
    corpus) may be lost. A stream shorter than one block raises ValueError saying so
    and what to change (a larger corpus or a smaller block_size).
    Why: the seed lab chunks inside each `map` batch and so throws away a tail per
    batch of 1,000 lines.
    """
    if isinstance(stream, torch.Tensor):
        t = stream.detach().to(torch.long).reshape(-1)
    else:
        t = torch.as_tensor(np.asarray(stream, dtype=np.int64)).reshape(-1)
    if block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size}")
    n = t.numel() // block_size
    if n == 0:
        raise ValueError(
            f"the token stream has {t.numel()} tokens, fewer than one block of block_size={block_size}: "
            f"use a larger corpus or a smaller block_size"
        )
    return t[: n * block_size].reshape(n, block_size).clone()


def configure_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """torch.optim.AdamW with two parameter groups: decay on matrices, none on the rest.

    Group 0: every trainable parameter with two or more dimensions (weight matrices,
    embeddings), with `weight_decay`. Group 1: every other trainable parameter (biases,
    LayerNorm gains), with weight decay 0. Every trainable parameter appears exactly
    once: a tied matrix is one parameter, not two. `lr` and `betas` as given;
    `fused=None` means fused only when every parameter is on CUDA.
    Why: weight decay pulls weights towards 0; on biases and LayerNorm gains that only
    fights the normalisation, so they are left alone.
    """
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() yields a tied one once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    if fused is None:
        fused = bool(params) and all(p.is_cuda for p in params)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


def lr_at(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate for update number `step` (0-based): linear warmup, then cosine decay.

    Returns a Python float with these properties (the tests check them to 1e-9):
    - warmup, steps 0 .. warmup_steps - 1: rises linearly in equal increments, from
      max_lr / warmup_steps at step 0 (never 0: an update at lr 0 is wasted) to
      exactly max_lr at step warmup_steps - 1;
    - decay, steps warmup_steps .. total_steps: half a period of a cosine, from max_lr
      at step warmup_steps down to min_lr at step total_steps; it falls slowly at both
      ends and fastest in the middle, where it is halfway between max_lr and min_lr;
    - past the end, step >= total_steps (warm-up over): min_lr, for ever (a run may go
      on longer).
    Edge cases, without dividing by zero: warmup_steps == 0 means no warm-up (step 0
    is at max_lr, where the decay starts); total_steps <= warmup_steps leaves no room
    for a decay: the warm-up still runs in full, then min_lr from step warmup_steps
    on (both 0: min_lr from step 0).
    It never rises after warmup and never leaves [0, max_lr].
    Why: at the start the gradients are large and Adam's statistics empty, so full
    steps would throw the weights far; at the end small steps settle into a minimum.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    decay_steps = total_steps - warmup_steps  # > 0 here
    progress = (step - warmup_steps) / decay_steps
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
    """One optimisation step on a (B, T) int64 batch; the labels are the inputs (the model shifts).

    Afterwards: the model is in train mode; the optimizer has stepped once, using
    only this batch's gradients (none left over from an earlier step) after they
    were clipped so that their total norm (over all parameters together) is at most
    `max_grad_norm`. The forward pass runs under autocast to `autocast_dtype` when
    one is given (bf16 on a GPU), in full precision when it is None.
    Returns (loss, total gradient norm *before* clipping): both 0-dim tensors,
    detached from the graph and left on the device, so the loop does not wait for
    the GPU at every step.
    Why the order matters: clipping after the optimizer's step changes nothing the
    optimizer used, and gradients not cleared add up across steps.
    With a gradient `scaler` (a `torch.amp.GradScaler`, for fp16 on older GPUs; None
    otherwise): backward runs on the scaled loss, the gradients are unscaled before
    they are clipped (the clip must see the true gradients), and the scaler makes the
    optimizer's step (skipping it if a gradient overflowed) and then updates its scale;
    the returned loss and norm are the unscaled ones.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    if autocast_dtype is not None:
        with torch.autocast(device_type=input_ids.device.type, dtype=autocast_dtype):
            _, loss = model(input_ids, labels=input_ids)
    else:
        _, loss = model(input_ids, labels=input_ids)
    params = [p for p in model.parameters() if p.requires_grad]
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
    return loss.detach(), norm.detach()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    chunks: torch.Tensor,
    batch_size: int = 16,
    max_batches: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Validation loss and perplexity over (N, T) int64 chunks, in eval mode (no dropout).

    Runs over the chunks in order, `batch_size` rows at a time (only the first
    `max_batches` batches when it is given), on the model's device, under autocast
    when `autocast_dtype` is given. Returns {"loss": float, "perplexity": float}: the
    loss is the mean over every chunk evaluated (each batch weighted by its number of
    rows, so a short last batch is not over-counted) and perplexity = e ** loss.
    The model's train/eval mode is what it was before the call (also when it stops at
    max_batches); no chunks at all raise ValueError. Why eval mode: dropout left on makes validation noisy and
    pessimistic.
    """
    if len(chunks) == 0:
        raise ValueError("evaluate got no chunks: there is nothing to evaluate")
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    total, rows = 0.0, 0
    try:
        for i, start in enumerate(range(0, len(chunks), batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            batch = chunks[start : start + batch_size].to(device)
            if autocast_dtype is not None:
                with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                    _, loss = model(batch, labels=batch)
            else:
                _, loss = model(batch, labels=batch)
            total += loss.float().item() * batch.size(0)
            rows += batch.size(0)
    finally:
        model.train(was_training)
    if rows == 0:
        raise ValueError(f"evaluate evaluated no batch (max_batches={max_batches})")
    mean = total / rows
    return {"loss": mean, "perplexity": math.exp(mean)}


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
