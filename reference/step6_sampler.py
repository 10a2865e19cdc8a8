"""Step 6 — sampling text: temperature, top-k, a context cropped to block_size."""
from __future__ import annotations

import torch
import torch.nn as nn


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row from (B, V) logits. Returns (B, 1) int64.

    Logits are *divided* by the temperature: T < 1 sharpens the distribution (T -> 0
    is argmax), T > 1 flattens it. With `top_k`, every logit below the k-th largest
    is set to -inf first, so no token outside the k most likely can be drawn.
    temperature == 0 means greedy (argmax), without dividing by zero.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def crop_context(idx: torch.Tensor, block_size: int) -> torch.Tensor:
    """The last `block_size` tokens of (B, T) ids: the model has no positions beyond."""
    return idx if idx.size(1) <= block_size else idx[:, -block_size:]


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
    """Extend (B, T0) prompt ids by up to `max_new_tokens` sampled tokens -> (B, T0 + n).

    Each step feeds at most the last `block_size` tokens, samples from the logits of
    the last position, and appends. The returned ids keep the full history (the seed
    lab crops the *returned* sequence, so its output loses the prompt). Stops early
    once every row has produced `eos_id`. Pass a seeded `generator` to reproduce a sample.
    """
    was_training = model.training
    model.eval()
    block_size = model.config.block_size
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        logits, _ = model(crop_context(idx, block_size))
        nxt = sample_next(logits[:, -1, :], temperature, top_k, generator)
        if eos_id is not None:
            # A finished row only pads with eos_id; the others go on until all are done.
            nxt = nxt.masked_fill(done.unsqueeze(1), eos_id)
            done |= nxt.squeeze(1) == eos_id
        idx = torch.cat([idx, nxt], dim=1)
        if eos_id is not None and bool(done.all()):
            break
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
