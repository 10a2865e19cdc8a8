"""Bonus 2 — `Batch`: one object with everything a training step of the encoder-decoder needs.

A target sentence is stored as `[BOS, y1, ..., yn, EOS, PAD, ...]`. The decoder reads
it shifted right (`tgt_in`, starts with BOS) and is scored against it shifted left
(`tgt_out`, ends with EOS), so position t learns to predict token t+1 — the same shift
as step 4, done once here instead of inside the loss.

Every mask here is bool with True = "may attend", and its last axis is the keys:
padding hides keys (columns), never queries (rows). A padded query still gets an
output; nothing is ever scored on it. `pad_id` may be any token id (0 is only the
default): every function here masks and counts the pad_id it is given.

You write `src_padding_mask`, `target_mask` and `Batch.__init__`;
`nox -s check -- --step bonus2` grades them. `check_batch_inputs` and `Batch.to` are
given.
"""
from __future__ import annotations

import torch

from .step2_causal_mask import causal_mask

PAD_ID = 0


def src_padding_mask(src: torch.Tensor, pad_id: int = PAD_ID) -> torch.Tensor:
    """(B, S) int64 source ids -> (B, 1, S) bool, True where the token is real (not `pad_id`).

    The middle axis, of size 1, is the queries: one row of keys shared by every query
    position, because in the encoder's self-attention and in the decoder's
    cross-attention every query ignores the same padded source tokens. Same device as
    `src`. A `src` that is not 2-D raises ValueError naming its shape.
    """
    # BEGIN SOLUTION
    if src.dim() != 2:
        raise ValueError(f"src must be (B, S) token ids, got shape {tuple(src.shape)}")
    return (src != pad_id).unsqueeze(-2)
    # END SOLUTION


def target_mask(tgt_in: torch.Tensor, pad_id: int = PAD_ID) -> torch.Tensor:
    """(B, T) int64 decoder input -> (B, T, T) bool: [b, t, s] is True iff s <= t AND tgt_in[b, s] != pad_id.

    Axis 1 is the query t, axis 2 the key s. The causal part stops position t from
    reading the token it must predict (t + 1 and later); the padding part stops it from
    attending to padding. Both must allow a key: with "either", every query would see
    every real future token. Rows of padded queries are not blanked: they still see
    the real keys before them (no row is ever all False, since tgt_in starts with BOS).
    Same device as `tgt_in`; a `tgt_in` that is not 2-D raises ValueError. Build the
    causal part with step 2's `causal_mask`.
    """
    # BEGIN SOLUTION
    if tgt_in.dim() != 2:
        raise ValueError(f"tgt_in must be (B, T) token ids, got shape {tuple(tgt_in.shape)}")
    T = tgt_in.size(1)
    keys_real = (tgt_in != pad_id).unsqueeze(-2)  # (B, 1, T)
    return keys_real & causal_mask(T, device=tgt_in.device)  # (B, 1, T) & (T, T) -> (B, T, T)
    # END SOLUTION


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
      tgt_in    (B, T)        the decoder's input: the target shifted right, starting with
                              BOS and without the target's last column
      tgt_out   (B, T)        what each position must predict: tgt_out[:, t] is the target
                              token that follows tgt_in[:, t]; ends with EOS (or padding)
      tgt_mask  (B, T, T)     bool, `target_mask(tgt_in)`
      ntokens   int           number of real (non-pad) tokens in tgt_out: the loss's divisor
      pad_id    int           the padding id the masks were built with
    """

    def __init__(self, src: torch.Tensor, tgt: torch.Tensor | None = None, pad_id: int = PAD_ID) -> None:
        """Set every attribute above. tgt=None (inference): tgt_in, tgt_out and tgt_mask are None, ntokens is 0.

        Call `check_batch_inputs(src, tgt, pad_id)` first (given): it raises ValueError
        for what a Batch cannot hold (an all-padding source row, a target narrower than
        [BOS, EOS] or with another batch size). tgt_in and tgt_out may share memory with
        `tgt` (views, no copy): nothing writes to them. ntokens is a Python int, because
        the loss and the logs divide by it.
        """
        # BEGIN SOLUTION
        check_batch_inputs(src, tgt, pad_id)
        self.pad_id = pad_id
        self.src = src
        self.src_mask = src_padding_mask(src, pad_id)
        self.tgt_in = self.tgt_out = self.tgt_mask = None
        self.ntokens = 0
        if tgt is not None:
            self.tgt_in = tgt[:, :-1]
            self.tgt_out = tgt[:, 1:]
            self.tgt_mask = target_mask(self.tgt_in, pad_id)
            self.ntokens = int((self.tgt_out != pad_id).sum())
        # END SOLUTION

    def to(self, device: torch.device | str) -> "Batch":
        """Move every tensor to `device` (returns self, like nn.Module.to)."""
        for name in ("src", "src_mask", "tgt_in", "tgt_out", "tgt_mask"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self
