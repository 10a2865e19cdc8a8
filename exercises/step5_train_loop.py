"""Step 5 — from a token stream to training: chunks, optimizer, clipping, LR, evaluation.

Fill in the functions that raise `NotImplementedError`; `pytest -k step5` checks them.
`set_lr`, `epoch_batches` and `iterate_batches` are given.
"""
from __future__ import annotations

import math  # noqa: F401  (you will want math.cos, math.pi, math.exp)
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn


def join_documents(docs: Sequence[Sequence[int]], eos_id: int) -> np.ndarray:
    """Concatenate tokenised documents into one stream, each followed by `eos_id`.

    docs: a list of token-id lists. Returns a 1-D int64 numpy array of length
    sum(len(d) + 1): d0 tokens, eos, d1 tokens, eos, ... (an empty list of documents
    gives an empty array). The end-of-text token tells the model where one document
    stops, so it learns not to run a play into the next one, and generation can stop.
    """
    raise NotImplementedError(
        "join_documents is not written yet (step 5): its docstring states what it must do; "
        "`nox -s check -- --step 5` grades it"
    )


def chunk_tokens(stream: Sequence[int] | np.ndarray | torch.Tensor, block_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into consecutive, non-overlapping blocks.

    Returns (N, block_size) int64 with N = len(stream) // block_size; row i is
    stream[i*block_size : (i+1)*block_size]. Only the final partial block (fewer than
    block_size tokens of the whole corpus) may be dropped. A stream shorter than one
    block raises ValueError saying so and what to change. The seed lab chunks inside
    each `map` batch and so throws away a tail per batch of 1,000 lines.
    """
    raise NotImplementedError(
        "chunk_tokens is not written yet (step 5): its docstring states what it must do; "
        "`nox -s check -- --step 5` grades it"
    )


def configure_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW with two parameter groups: decay on matrices (dim >= 2), none on the rest.

    Group 0: every trainable parameter with p.dim() >= 2, weight_decay=weight_decay.
    Group 1: the rest (biases, LayerNorm gains), weight_decay=0.0. Each parameter
    appears exactly once (model.parameters() already lists a tied matrix once).
    `fused=None` means fused only when every parameter is on CUDA.
    Weight decay pulls weights towards 0; on biases and LayerNorm gains that only
    fights the normalisation, so they are excluded.
    """
    raise NotImplementedError(
        "configure_optimizer is not written yet (step 5): its docstring states what it must do; "
        "`nox -s check -- --step 5` grades it"
    )


def lr_at(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warmup to `max_lr`, then cosine decay to `min_lr` at `total_steps`.

    step < warmup_steps: max_lr * (step + 1) / warmup_steps, so step 0 gives
    max_lr / warmup_steps (never 0, or the first update is wasted) and step
    warmup_steps - 1 gives max_lr. Then min_lr + 0.5 * (max_lr - min_lr) * (1 + cos(pi * p))
    with p = (step - warmup_steps) / (total_steps - warmup_steps); step >= total_steps
    gives min_lr. Returns a Python float.
    """
    raise NotImplementedError(
        "lr_at is not written yet (step 5): its docstring states what it must do; "
        "`nox -s check -- --step 5` grades it"
    )


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
    """One optimisation step on a (B, T) int64 batch; labels are the inputs (the model shifts).

    Order matters: model.train(), zero the old gradients, forward (`_, loss =
    model(input_ids, labels=input_ids)`, under torch.autocast when autocast_dtype is
    set), backward, clip the total gradient norm to `max_grad_norm`, and only then
    `optimizer.step()` — clipping after the step changes nothing the optimizer used.
    Returns (loss, total grad norm *before* clipping), both detached 0-dim tensors left
    on the device, so the loop does not wait for the GPU.
    With a gradient `scaler` (fp16 on older GPUs; None otherwise) backward runs on
    `scaler.scale(loss)`, `scaler.unscale_(optimizer)` comes before clipping (clip the
    true gradients), and `scaler.step(optimizer)` then `scaler.update()` replace
    `optimizer.step()`; the returned loss and norm are the unscaled ones.
    """
    raise NotImplementedError(
        "train_step is not written yet (step 5): its docstring states what it must do; "
        "`nox -s check -- --step 5` grades it"
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    chunks: torch.Tensor,
    batch_size: int = 16,
    max_batches: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Validation loss and perplexity over (N, T) chunks, in eval mode (no dropout).

    Batches of `batch_size` rows in order (at most `max_batches` of them). Returns
    {"loss": float, "perplexity": float}: the loss is the mean over every chunk, each
    batch weighted by its number of rows so a short last batch is not over-counted;
    perplexity = exp(loss). The model's train/eval mode is restored afterwards, and
    no chunks at all raises ValueError. Dropout left on makes validation noisy and
    pessimistic.
    """
    raise NotImplementedError(
        "evaluate is not written yet (step 5): its docstring states what it must do; "
        "`nox -s check -- --step 5` grades it"
    )


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
