"""Bonus 5 — decoding: greedy and beam search for the encoder-decoder.

The model is anything with `encode(src, src_mask) -> memory (B, S, C)` and
`decode(memory, src_mask, tgt_in, tgt_mask) -> logits (B, T, V)` (bonus 1's
`EncoderDecoder`). The source is encoded once; the decoder is run again on the
growing target prefix at every step.

Both decoders share one contract:
  - output: (B, L) int64 generated tokens, without the leading BOS, on src's device;
    a row that emitted EOS holds `pad_id` in every column after it (EOS itself kept);
  - L is the number of decoding steps taken, 1 <= L <= max_len: decoding stops after
    the step at which every row (for beam search: every kept hypothesis) has emitted
    EOS, or after max_len generated tokens, whichever comes first;
  - the decoder is called on the prefix decoded so far, BOS first, with a causal
    target mask, so it is never fed more than max_len target positions; each row of
    the memory it reads comes with the padding mask of that row's own source;
  - bos_id, eos_id and pad_id are the token ids to use, whatever they are: 0 is a
    valid id like any other;
  - the model (every submodule) runs in eval mode (no dropout) without gradients,
    and is left in the training mode it came in;
  - invalid arguments (shapes, max_len < 1) raise ValueError (`_check`, given).

You write `greedy_decode` and `beam_search`; `nox -s check -- --step bonus5` grades
them. `length_penalty` and `_check` are given.
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
    """Greedy decoding of a batch of sources -> (B, L) int64, in the module's output format.

    Every row starts from [BOS]. At each step, a row that has not finished takes the
    single most likely next token under the model, given its source and its prefix so
    far; a row that has emitted EOS is finished and receives only `pad_id` from then
    on. The source is encoded once. Rows are independent: a row of a batch gets the
    tokens it would get decoded alone (the batch only decides the padded width L).
    Greedy finds the most likely next *token*, not the most likely *sequence*: a
    likely first token can lead only to unlikely continuations (beam search's job).
    """
    # BEGIN SOLUTION
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
    # END SOLUTION


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
    """Batched beam search -> (B, L) int64, the best hypothesis per source, in the module's output format.

    Definitions (the tests grade each of them):
      - A hypothesis is a sequence of generated tokens after BOS. Its log-probability
        is the sum, over its tokens, of log_softmax of the decoder's logits (in
        float32) at that token; its length is the number of its tokens up to and
        including EOS (padding after EOS does not count).
      - Its score is log-probability / length_penalty(length, alpha). Every ranking
        below uses this score: with alpha = 0 the raw log-probability, with alpha > 0
        longer hypotheses are divided by more (see `length_penalty`).
      - The beam of a source holds at most `beam_size` hypotheses; it starts as the
        single hypothesis [] (only BOS), so the first step already chooses among
        distinct tokens, never among copies of one hypothesis.
      - Each step, every live (unfinished) kept hypothesis is extended by every token
        of the vocabulary; a finished hypothesis (it emitted EOS) has exactly one
        continuation, itself followed by `pad_id`, with the same log-probability and
        length — so it keeps competing, unchanged, with the live ones. Of all these
        candidates of one source, the `beam_size` with the best scores are kept.
        Sources never compete with each other.
      - Stopping: after the step at which every kept hypothesis of every source has
        finished, or after max_len steps. Hypotheses still unfinished then are scored
        as they are (length = number of tokens generated).
      - Result: per source, the kept hypothesis with the best score.
    With beam_size = 1 this is exactly greedy decoding, whatever alpha. A beam_size
    below 1 raises ValueError.
    """
    # BEGIN SOLUTION
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
    # END SOLUTION
