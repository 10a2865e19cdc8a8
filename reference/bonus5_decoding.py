"""Bonus 5 — decoding: greedy and beam search for the encoder-decoder.

The model is anything with `encode(src, src_mask) -> memory (B, S, C)` and
`decode(memory, src_mask, tgt_in, tgt_mask) -> logits (B, T, V)` (bonus 1's
`EncoderDecoder`). The source is encoded once; the decoder is run again on the
growing target prefix at every step.

Both decoders return the same format: (B, L) int64 generated tokens, without the
leading BOS, L <= max_len; a row that emitted EOS is filled with `pad_id` after it;
decoding stops as soon as every row has emitted EOS, or after max_len tokens.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .step2_causal_mask import causal_mask


def _check(src: torch.Tensor, src_mask: torch.Tensor, max_len: int) -> None:
    if src.dim() != 2 or src_mask.dim() != 3 or src_mask.size(0) != src.size(0):
        raise ValueError(
            f"expected src (B, S) and src_mask (B, 1, S); got {tuple(src.shape)} and {tuple(src_mask.shape)}"
        )
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1 (the number of tokens to generate at most), got {max_len}")


@torch.no_grad()
def greedy_decode(
    model: nn.Module, src: torch.Tensor, src_mask: torch.Tensor, max_len: int,
    bos_id: int, eos_id: int, pad_id: int = 0,
) -> torch.Tensor:
    """Most likely next token at every step, for a batch of sources -> (B, L) int64, L <= max_len.

    Start every row from [BOS]; at each step append argmax of the last position's
    logits. Once a row has emitted EOS it only receives `pad_id`. Stop when all rows
    are finished or max_len tokens were generated. Greedy is not the most likely
    *sequence*: a likely first token can lead only to unlikely continuations.
    """
    _check(src, src_mask, max_len)
    was_training = model.training
    model.eval()
    B = src.size(0)
    memory = model.encode(src, src_mask)
    ys = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        T = ys.size(1)
        logits = model.decode(memory, src_mask, ys, causal_mask(T, device=src.device))
        nxt = logits[:, -1, :].argmax(dim=-1)
        nxt = nxt.masked_fill(finished, pad_id)  # finished rows only pad
        ys = torch.cat([ys, nxt.unsqueeze(1)], dim=1)
        finished |= nxt == eos_id
        if bool(finished.all()):
            break
    model.train(was_training)
    return ys[:, 1:]


def length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016, eq. 14).

    A hypothesis's score is log P / length_penalty: with alpha = 0 it is the plain
    log-probability, which always favours short outputs (each token adds a negative
    log-prob); alpha > 0 divides longer hypotheses by more and evens that out.
    """
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    model: nn.Module, src: torch.Tensor, src_mask: torch.Tensor, max_len: int,
    bos_id: int, eos_id: int, pad_id: int = 0, beam_size: int = 4, alpha: float = 0.6,
) -> torch.Tensor:
    """Batched beam search -> (B, L) int64 best hypothesis per source, same format as greedy.

    Keeps the `beam_size` best hypotheses per source. Every hypothesis is scored by
    sum of log-probs / length_penalty(length, alpha), where length counts the
    generated tokens including EOS. A finished hypothesis (it emitted EOS) keeps its
    score and is extended only by `pad_id`, so it competes with the live ones until
    the end. Stops when all kept hypotheses of every source are finished, or after
    max_len tokens; hypotheses still alive then are scored as they are. With
    beam_size = 1 this is exactly greedy decoding.
    """
    _check(src, src_mask, max_len)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    was_training = model.training
    model.eval()
    B, K, device = src.size(0), beam_size, src.device
    # Every source is repeated K times: row b*K + k is beam k of source b.
    memory = model.encode(src, src_mask).repeat_interleave(K, dim=0)
    mask = src_mask.repeat_interleave(K, dim=0)
    ys = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)
    # Only beam 0 is live at the start, or the K beams would be K copies of one hypothesis.
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0
    lengths = torch.zeros(B, K, dtype=torch.long, device=device)
    finished = torch.zeros(B, K, dtype=torch.bool, device=device)
    for t in range(1, max_len + 1):
        logits = model.decode(memory, mask, ys, causal_mask(ys.size(1), device=device))
        logp = logits[:, -1, :].float().log_softmax(dim=-1).view(B, K, -1)
        V = logp.size(-1)
        # A finished hypothesis has one continuation, pad, at no cost.
        pad_only = torch.full_like(logp, float("-inf"))
        pad_only[..., pad_id] = 0.0
        logp = torch.where(finished.unsqueeze(-1), pad_only, logp)
        cand = (scores.unsqueeze(-1) + logp).view(B, K * V)
        cand_len = torch.where(finished, lengths, torch.full_like(lengths, t)).unsqueeze(-1).expand(B, K, V)
        cand_len = cand_len.reshape(B, K * V)
        normed = cand / length_penalty(cand_len, alpha)
        top = normed.topk(K, dim=-1).indices  # (B, K), best first
        beam, token = top // V, top % V
        scores = cand.gather(1, top)
        lengths = cand_len.gather(1, top)
        finished = finished.gather(1, beam) | (token == eos_id)
        rows = (beam + torch.arange(B, device=device).unsqueeze(1) * K).view(-1)
        ys = torch.cat([ys[rows], token.view(-1, 1)], dim=1)
        if bool(finished.all()):
            break
    normed = scores / length_penalty(lengths, alpha)
    best = normed.argmax(dim=-1)  # (B,)
    model.train(was_training)
    return ys.view(B, K, -1)[torch.arange(B, device=device), best, 1:]
