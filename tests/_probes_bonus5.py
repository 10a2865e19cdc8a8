"""Bonus 5's probes: the learner-facing half of tests/test_bonus5_decoding.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with answers they compute themselves.

The hand-built models live here, because both sides need them: the tests build one to
compute their expected answers (the greedy loop, the exhaustive search), and `decode`
builds the same model, by its class name and its tables, for the learner's decoder. What
the decoder did to its model (the longest prefix it fed, the calls a `RecordingSeq2Seq`
recorded, every submodule's mode afterwards) comes back as data.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from _support import not_implemented_guard as call, student

MODULE = "bonus5_decoding"


class MarkovSeq2Seq(nn.Module):
    """src[b, 0] picks table `tables[src[b, 0]]` (V, V) of logits; next token depends on the last one."""

    def __init__(self, tables: torch.Tensor) -> None:
        super().__init__()
        self.tables = tables
        self.calls = 0
        self.longest = 0

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        return src[:, :1].float().unsqueeze(-1)  # (B, 1, 1): the table id, as a "memory"

    def key(self, tgt: torch.Tensor) -> torch.Tensor:
        return tgt

    def decode(self, memory, src_mask, tgt, tgt_mask) -> torch.Tensor:
        self.calls += 1
        self.longest = max(self.longest, tgt.size(1))
        table = memory[:, 0, 0].long()
        return self.tables[table.unsqueeze(1), self.key(tgt)]  # (B, T, V)


class PrefixSeq2Seq(MarkovSeq2Seq):
    """Like MarkovSeq2Seq, but the row is picked by a hash of the whole prefix (cumulative sum mod V)."""

    def key(self, tgt: torch.Tensor) -> torch.Tensor:
        return tgt.cumsum(dim=1) % self.tables.size(-1)


class RecordingSeq2Seq(MarkovSeq2Seq):
    """A MarkovSeq2Seq with a child module (so model.train()/eval() reach it), recording each call."""

    def __init__(self, tables: torch.Tensor) -> None:
        super().__init__(tables)
        self.child = nn.Dropout(0.5)  # never applied: only its mode is read
        self.log: list[dict] = []

    def record(self, what: str, **kw) -> None:
        self.log.append(dict(what=what, modes={n or "model": mod.training for n, mod in self.named_modules()},
                             grad=torch.is_grad_enabled(), **kw))

    def encode(self, src, src_mask):
        self.record("encode", src=src, src_mask=src_mask)
        return super().encode(src, src_mask)

    def decode(self, memory, src_mask, tgt, tgt_mask):
        self.record("decode", memory=memory, src_mask=src_mask, tgt=tgt, tgt_mask=tgt_mask)
        return super().decode(memory, src_mask, tgt, tgt_mask)


MODELS = {cls.__name__: cls for cls in (MarkovSeq2Seq, PrefixSeq2Seq, RecordingSeq2Seq)}


def _plain(x: object) -> object:
    """An argument the decoder handed the model, as data: a tensor or None as it is, anything
    else as its repr (the tests print it and find it is not a tensor)."""
    return x if x is None or isinstance(x, torch.Tensor) else repr(x)[:2000]


def decode(decoder: str, model: str, tables: torch.Tensor, training: bool, src: torch.Tensor,
           src_mask: torch.Tensor, max_len: int, bos_id: int, eos_id: int, pad_id: int, **kwargs) -> dict:
    """The learner's `decoder` (greedy_decode or beam_search) on a `MODELS[model](tables)` in
    train mode or not: {"type": the type of what it returned, "out": that, if a tensor (else
    None), "longest": the longest target prefix it fed the model, "modes": every submodule's
    mode afterwards, "log": a RecordingSeq2Seq's record of its calls (else [])}."""
    m = MODELS[model](tables).train(training)
    out = call(getattr(student(MODULE), decoder), m, src, src_mask, max_len, bos_id, eos_id, pad_id, **kwargs)
    log = [{k: (v if k in ("what", "modes", "grad") else _plain(v)) for k, v in entry.items()}
           for entry in getattr(m, "log", [])]
    return {"type": type(out).__name__, "out": out if isinstance(out, torch.Tensor) else None,
            "longest": m.longest, "modes": {n or "model": mod.training for n, mod in m.named_modules()},
            "log": log}
