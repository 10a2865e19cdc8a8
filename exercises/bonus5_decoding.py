"""Bonus 5 — decoding: greedy and beam search for the encoder-decoder.

The model is anything with `encode(src, src_mask) -> memory (B, S, C)` and
`decode(memory, src_mask, tgt_in, tgt_mask) -> logits (B, T, V)` (bonus 1's
`EncoderDecoder`). The source is encoded once; the decoder is run again on the
growing target prefix at every step.

Both decoders return the same format: (B, L) int64 generated tokens, without the
leading BOS, L <= max_len; a row that emitted EOS is filled with `pad_id` after it;
decoding stops as soon as every row has emitted EOS, or after max_len tokens.

Fill in `greedy_decode` and `beam_search`; `pytest -k bonus5` checks them.
`length_penalty` and the input check `_check` are given.
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
    raise NotImplementedError(
        "greedy_decode is not written yet (bonus 5): its docstring states what it must do; "
        "`nox -s check -- --step bonus5` grades it"
    )


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
    raise NotImplementedError(
        "beam_search is not written yet (bonus 5): its docstring states what it must do; "
        "`nox -s check -- --step bonus5` grades it"
    )
