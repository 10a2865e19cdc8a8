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
    raise NotImplementedError(
        "beam_search is not written yet (bonus 5): its docstring states what it must do; "
        "`nox -s check -- --step bonus5` grades it"
    )
