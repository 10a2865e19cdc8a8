"""Step 6 — sampling text: temperature, top-k, a context cropped to block_size.

Fill in `sample_next`, `crop_context` and `generate`; `pytest -k step6` checks them.
`complete` (text in, text out) is given.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row from (B, V) float logits. Returns (B, 1) int64.

    Logits are *divided* by the temperature: T < 1 sharpens the distribution (T -> 0
    is argmax), T > 1 flattens it. temperature == 0 means greedy (argmax) without
    dividing by zero. With `top_k`, every logit below the k-th largest is set to -inf
    first, so no token outside the k most likely can be drawn (top_k >= V keeps all).
    Then softmax and torch.multinomial(probs, 1, generator=generator).
    temperature < 0 or top_k < 1 raise ValueError. This is how every LM picks its
    next word; getting temperature backwards makes "careful" sampling wild.
    """
    raise NotImplementedError(
        "sample_next is not written yet (step 6): its docstring states what it must do; "
        "`nox -s check -- --step 6` grades it"
    )


def crop_context(idx: torch.Tensor, block_size: int) -> torch.Tensor:
    """The last `block_size` tokens of (B, T) int64 ids -> (B, min(T, block_size)).

    The model has no position embedding past block_size - 1, so a longer context
    must be cut, keeping the most recent tokens.
    """
    raise NotImplementedError(
        "crop_context is not written yet (step 6): its docstring states what it must do; "
        "`nox -s check -- --step 6` grades it"
    )


@torch.no_grad()
def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Extend (B, T0) int64 prompt ids by up to `max_new_tokens` sampled tokens -> (B, T0 + n).

    In eval mode (restore the mode afterwards), each step feeds the model at most the
    last `model.config.block_size` tokens (`logits, _ = model(ids)`), samples from the
    logits of the last position with `sample_next`, and appends. The returned ids keep
    the whole prompt (the seed lab crops the *returned* sequence and loses it). Stops
    early once every row has produced `eos_id` (if given). The same seeded `generator`
    gives the same sample.
    """
    raise NotImplementedError(
        "generate is not written yet (step 6): its docstring states what it must do; "
        "`nox -s check -- --step 6` grades it"
    )


def complete(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 100,
             temperature: float = 0.8, top_k: int | None = 200, seed: int = 0) -> str:
    """Text in, text out: the prompt followed by a reproducible sampled continuation."""
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    out = generate(model, ids, max_new_tokens, temperature, top_k, g, eos_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0].tolist(), skip_special_tokens=True)
