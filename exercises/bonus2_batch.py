"""Bonus 2 — `Batch`: one object with everything a training step of the encoder-decoder needs.

A target sentence is stored as `[BOS, y1, ..., yn, EOS, PAD, ...]`. The decoder reads
it shifted right (`tgt_in`, starts with BOS) and is scored against it shifted left
(`tgt_out`, ends with EOS), so position t learns to predict token t+1 — the same shift
as step 4, done once here instead of inside the loss.

Fill in `src_padding_mask`, `target_mask` and `Batch.__init__`; `pytest -k bonus2`
checks them. `check_batch_inputs` and `Batch.to` are given.
"""
from __future__ import annotations

import torch

from .step2_causal_mask import causal_mask

PAD_ID = 0


def src_padding_mask(src: torch.Tensor, pad_id: int = PAD_ID) -> torch.Tensor:
    """(B, S) int64 source ids -> (B, 1, S) bool, True where the token is real (not `pad_id`).

    The middle dimension of size 1 broadcasts over the queries: every query position
    ignores the same padded keys, in the encoder's self-attention and in the
    decoder's cross-attention.
    """
    raise NotImplementedError(
        "src_padding_mask is not written yet (bonus 2): its docstring states what it must do; "
        "`nox -s check -- --step bonus2` grades it"
    )


def target_mask(tgt_in: torch.Tensor, pad_id: int = PAD_ID) -> torch.Tensor:
    """(B, T) int64 decoder input -> (B, T, T) bool: query t may attend to key s iff s <= t AND key s is real.

    The causal part stops the decoder from reading the token it must predict; the
    padding part stops it from attending to padding. It is the AND of both: OR would
    let every query see the whole future as soon as one of the two allowed it.
    """
    raise NotImplementedError(
        "target_mask is not written yet (bonus 2): its docstring states what it must do; "
        "`nox -s check -- --step bonus2` grades it"
    )


def check_batch_inputs(src: torch.Tensor, tgt: torch.Tensor | None, pad_id: int) -> None:
    """Raise a ValueError that names the problem for sources / targets a Batch cannot hold."""
    if src.dim() != 2:
        raise ValueError(f"src must be (B, S) token ids, got shape {tuple(src.shape)}")
    if bool((src == pad_id).all(dim=1).any()):
        raise ValueError(
            "a source row is all padding: attention over it would have no key to attend to "
            "(softmax of all -inf is NaN); drop empty sentences before batching"
        )
    if tgt is not None and (tgt.dim() != 2 or tgt.size(0) != src.size(0) or tgt.size(1) < 2):
        raise ValueError(
            f"tgt must be (B, T+1) ids with the same B as src ({src.size(0)}) and at least "
            f"[BOS, EOS]; got shape {tuple(tgt.shape)}"
        )


class Batch:
    """A batch of source and (optionally) target sentences, with their masks.

    src: (B, S) int64; tgt: (B, T+1) int64 `[BOS, ..., EOS, PAD...]` or None at
    inference. Attributes:
      src       (B, S)        the source ids, unchanged
      src_mask  (B, 1, S)     bool, `src_padding_mask(src)`
      tgt_in    (B, T)        tgt without its last column: the decoder's input
      tgt_out   (B, T)        tgt without its first column: what each position predicts
      tgt_mask  (B, T, T)     bool, `target_mask(tgt_in)`
      ntokens   int           number of real (non-pad) tokens in tgt_out: the loss's divisor
    """

    def __init__(self, src: torch.Tensor, tgt: torch.Tensor | None = None, pad_id: int = PAD_ID) -> None:
        """Set every attribute above; tgt=None (inference) leaves the target ones None and ntokens 0.

        Call `check_batch_inputs(src, tgt, pad_id)` first (given). Shift with slicing,
        not a copy: tgt_in = tgt[:, :-1], tgt_out = tgt[:, 1:].
        """
        raise NotImplementedError(
            "Batch.__init__ is not written yet (bonus 2): its docstring states what it must do; "
            "`nox -s check -- --step bonus2` grades it"
        )

    def to(self, device: torch.device | str) -> "Batch":
        """Move every tensor to `device` (returns self, like nn.Module.to)."""
        for name in ("src", "src_mask", "tgt_in", "tgt_out", "tgt_mask"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self
