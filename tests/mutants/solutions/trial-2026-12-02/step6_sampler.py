"""Step 6 — sampling text: temperature, top-k, a context cropped to block_size.

You write `sample_next`, `crop_context` and `generate`; `nox -s check -- --step 6` grades
them. `complete` (text in, text out) is given.
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
    """Draw one token per row from (B, V) float logits. Returns (B, 1) int64 ids.

    Each row's token is drawn from the softmax of its logits *divided* by the
    temperature: T < 1 sharpens the distribution (T -> 0 tends to the argmax), T > 1
    flattens it. temperature == 0 means greedy (the argmax), without dividing by zero.
    With `top_k`, only the k most likely tokens of a row can be drawn, in the same
    proportions as before among themselves (a token tied with the k-th largest logit
    stays in; top_k >= V keeps every token). Draws use `generator` when given, so the
    same seeded generator gives the same tokens. temperature < 0 or top_k < 1 raise
    ValueError. Why: this is how every LM picks its next word; getting temperature
    backwards makes "careful" sampling wild.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    scaled = logits.float() / temperature
    if top_k is not None and top_k < scaled.size(-1):
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def crop_context(idx: torch.Tensor, block_size: int) -> torch.Tensor:
    """The last `block_size` tokens of (B, T) int64 ids -> (B, min(T, block_size)).

    The model has no position embedding past block_size - 1, so a longer context must
    be cut, keeping the most recent tokens (the ones that matter for the next word).
    A context that fits is returned as it is.
    """
    if idx.size(1) <= block_size:
        return idx
    return idx[:, -block_size:]


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

    One new token per row per step, drawn by `sample_next` (with the given
    temperature, top_k and generator) from the model's prediction for the position
    after the last one. The model sees at most its last `model.config.block_size`
    tokens; the returned ids keep the whole prompt and everything generated (the seed
    lab crops the *returned* sequence and loses the prompt). Runs in eval mode, no
    gradients, and gives the model back in the mode it came in (train or eval), however
    generation ends. The same seeded generator gives the same sample. Runs on the
    prompt's device: a tensor it makes goes there too (a GPU refuses to mix devices).
    With `eos_id` (decided; any token id, 0 included — only None means no end token):
    a row that has produced eos_id is finished, and every later position of that row
    is eos_id (like padding); generation stops as soon as every row has finished, or
    after max_new_tokens steps, so n <= max_new_tokens is the number of steps actually
    taken. Stopping when *any* row finished is wrong.
    Without eos_id, n == max_new_tokens.
    The model it relies on (TinyGPT, step 3, or any model alike): `model(ids)` with
    (B, T) int64 ids, T <= `model.config.block_size`, returns a pair (logits, loss):
    (B, T, V) float logits, where position t's row scores the token after position t,
    and a loss that is None when no labels are given.
    """
    was_training = model.training
    model.eval()
    block_size = model.config.block_size
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    try:
        for _ in range(max_new_tokens):
            logits, _ = model(crop_context(idx, block_size))
            nxt = sample_next(logits[:, -1, :], temperature, top_k, generator).to(idx.device)
            if eos_id is not None:
                nxt = torch.where(finished.unsqueeze(1), torch.full_like(nxt, eos_id), nxt)
                finished = finished | (nxt.squeeze(1) == eos_id)
            idx = torch.cat([idx, nxt], dim=1)
            if eos_id is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)
    return idx


def complete(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 100,
             temperature: float = 0.8, top_k: int | None = 200, seed: int = 0) -> str:
    """Text in, text out: the prompt followed by a reproducible sampled continuation."""
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    out = generate(model, ids, max_new_tokens, temperature, top_k, g, eos_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0].tolist(), skip_special_tokens=True)
