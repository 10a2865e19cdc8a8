"""Bonus 5: greedy decoding and batched beam search, on small hand-built models.

The models here are tables, not Transformers, so every probability is known: a
source picks a table; the next-token logits are that table's row for the last
target token (`MarkovSeq2Seq`) or for a hash of the whole prefix (`PrefixSeq2Seq`).
The oracles are a per-row greedy loop and an exhaustive search over every sequence.
Outputs are token ids, compared exactly.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st

from _support import not_implemented_guard, student

MODULE = "bonus5_decoding"
PAD, BOS, EOS, A, B, C = 0, 1, 2, 3, 4, 5
NEG = -1e4  # "impossible" token: finite, so no solution trips over inf - inf


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


def log_table(rows: dict[int, dict[int, float]], V: int = 6) -> torch.Tensor:
    """(V, V) log-probabilities from {from_token: {to_token: prob}}; unlisted entries impossible."""
    t = torch.full((V, V), NEG)
    for frm, to in rows.items():
        for tok, p in to.items():
            t[frm, tok] = math.log(p)
    t[EOS, A] = 0.0  # after EOS the model would say A: a finished row must still get PAD
    t[PAD, A] = 0.0
    return t


def sources(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.arange(n).unsqueeze(1).repeat(1, 3)
    return src, torch.ones(n, 1, 3, dtype=torch.bool)


def greedy(model, src, mask, max_len, **kw) -> torch.Tensor:
    return not_implemented_guard(student(MODULE).greedy_decode, model, src, mask, max_len, BOS, EOS, PAD, **kw)


def beam(model, src, mask, max_len, beam_size, alpha, **kw) -> torch.Tensor:
    return not_implemented_guard(student(MODULE).beam_search, model, src, mask, max_len, BOS, EOS, PAD,
                                 beam_size=beam_size, alpha=alpha, **kw)


def upto_eos(row: list[int]) -> list[int]:
    return row[: row.index(EOS) + 1] if EOS in row else row


def seq_logprob(model: MarkovSeq2Seq, table: int, seq: list[int]) -> float:
    ys = torch.tensor([[BOS, *seq]])
    logp = model.decode(torch.tensor([[[float(table)]]]), None, ys, None).log_softmax(-1)[0]
    return float(sum(logp[t, tok] for t, tok in enumerate(seq)))


def oracle_greedy(model: MarkovSeq2Seq, n: int, max_len: int) -> torch.Tensor:
    """Row by row: argmax until EOS or max_len; width = the longest row; PAD after EOS."""
    rows = []
    for b in range(n):
        seq = []
        while len(seq) < max_len and (not seq or seq[-1] != EOS):
            logits = model.decode(torch.tensor([[[float(b)]]]), None, torch.tensor([[BOS, *seq]]), None)
            seq.append(int(logits[0, -1].argmax()))
        rows.append(seq)
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows])


def random_tables(n: int, V: int, seed: int) -> torch.Tensor:
    return torch.randn(n, V, V, generator=torch.Generator().manual_seed(seed)) * 2


# ------------------------------------------------------------------------ greedy


def test_greedy_follows_the_argmax_stops_at_eos_and_pads_finished_rows():
    tables = torch.stack([
        log_table({BOS: {A: 0.9, B: 0.1}, A: {B: 0.8, EOS: 0.2}, B: {EOS: 0.9, A: 0.1}}),
        log_table({BOS: {B: 0.7, A: 0.3}, B: {EOS: 0.6, C: 0.4}, A: {EOS: 1.0}}),
    ])
    model = MarkovSeq2Seq(tables)
    out = greedy(model, *sources(2), max_len=10)
    want = torch.tensor([[A, B, EOS], [B, EOS, PAD]])
    if out.shape == want.shape and torch.equal(out, want):
        return
    hint = ("expected each step to append the argmax of the last position's logits, a row that has produced EOS "
            "to get only PAD after it, and decoding to stop when every row has. Look at greedy_decode "
            "(bonus5_decoding.py); stuck? `nox -s hint -- bonus 5`")
    if out.size(1) == 10:
        hint = "it ran to max_len although both rows had produced EOS by step 3: stop when every row is finished"
    elif out.size(1) == 4 and out[0, 0] == BOS:
        hint = "the output starts with BOS: it must hold only the generated tokens"
    elif out.shape == want.shape and out[1, 2] == A:
        hint = "row 1 went on after its EOS: a finished row must only receive pad_id"
    pytest.fail(f"greedy_decode: expected {want.tolist()}, got {out.tolist()}. {hint}", pytrace=False)


def test_greedy_never_exceeds_max_len():
    cycle = log_table({BOS: {A: 1.0}, A: {B: 1.0}, B: {A: 1.0}})  # never says EOS
    model = MarkovSeq2Seq(cycle.unsqueeze(0))
    out = greedy(model, *sources(1), max_len=5)
    assert out.tolist() == [[A, B, A, B, A]], (
        f"a model that never emits EOS, with max_len=5, must give exactly 5 tokens [A, B, A, B, A] = "
        f"{[A, B, A, B, A]}; got {out.tolist()} (max_len counts generated tokens, BOS not included)"
    )
    assert model.longest <= 5, f"the decoder was fed {model.longest} target tokens; with max_len=5 it needs at most 5"


@given(n=st.integers(1, 4), max_len=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_greedy_matches_a_row_by_row_argmax_loop(n, max_len, seed):
    model = PrefixSeq2Seq(random_tables(n, 7, seed))
    out = greedy(model, *sources(n), max_len=max_len)
    want = oracle_greedy(model, n, max_len)
    assert out.shape == want.shape and torch.equal(out, want), (
        f"greedy_decode on {n} sources, max_len={max_len}: expected {want.tolist()}, got {out.tolist()}. Feed the "
        f"next token of a row depends on its whole prefix (BOS and everything generated so far, read under a "
        f"causal target mask) and is the argmax at the LAST position"
    )


# ------------------------------------------------------------------- beam search

# Greedy takes A (0.55) and then never finds a likely way to finish; B then EOS
# has probability 0.45 * 0.95 = 0.4275, the most likely sequence.
TRAP = log_table({BOS: {A: 0.55, B: 0.45}, A: {A: 0.36, C: 0.34, EOS: 0.30}, B: {EOS: 0.95, A: 0.05},
                  C: {EOS: 0.5, A: 0.5}})


def test_beam_finds_the_likely_sequence_that_greedy_misses():
    model = MarkovSeq2Seq(TRAP.unsqueeze(0))
    g = greedy(model, *sources(1), max_len=4)[0].tolist()
    out = beam(model, *sources(1), max_len=4, beam_size=2, alpha=0.0)
    got = upto_eos(out[0].tolist())
    lp_beam, lp_greedy = seq_logprob(model, 0, got), seq_logprob(model, 0, upto_eos(g))
    assert got == [B, EOS], (
        f"beam search (beam 2, alpha 0) should find [B, EOS] = {[B, EOS]} (probability 0.4275), which greedy "
        f"misses (greedy gives {g}, log-prob {lp_greedy:.3f}); got {out[0].tolist()} (log-prob {lp_beam:.3f}). "
        f"At each step the beam_size best continuations of all beams together survive (score = summed "
        f"log-probs), and finished hypotheses keep competing. Look at beam_search (bonus5_decoding.py)"
    )
    assert lp_beam > lp_greedy


def test_beam_stops_when_every_hypothesis_has_ended():
    # With 2 beams, both of source 0's kept hypotheses end at step 2 ([A, EOS] 0.54, [B, EOS] 0.36);
    # source 1's at step 4 ([A, B, C, EOS] 0.486 and [B, C, EOS] 0.36).
    tables = torch.stack([
        log_table({BOS: {A: 0.6, B: 0.4}, A: {EOS: 0.9, C: 0.1}, B: {EOS: 0.9, C: 0.1}, C: {EOS: 1.0}}),
        log_table({BOS: {A: 0.6, B: 0.4}, A: {B: 0.9, C: 0.1}, B: {C: 0.9, EOS: 0.1}, C: {EOS: 1.0}}),
    ])
    model = MarkovSeq2Seq(tables)
    out = beam(model, *sources(2), max_len=10, beam_size=2, alpha=0.0)
    want = torch.tensor([[A, EOS, PAD, PAD], [A, B, C, EOS]])
    if out.shape == want.shape and torch.equal(out, want):
        return
    hint = ""
    if out.size(1) == 10:
        hint = ("it ran to max_len: once every kept hypothesis has produced EOS there is nothing left to extend — "
                "stop (a beam that never stops is slow and its output is full of padding)")
    elif out.shape == want.shape and out[0, 2] != PAD:
        hint = "source 0's best hypothesis went on after EOS: a finished hypothesis must only be extended by PAD"
    pytest.fail(f"beam_search: expected {want.tolist()}, got {out.tolist()}. {hint}", pytrace=False)


def test_beam_never_exceeds_max_len():
    cycle = log_table({BOS: {A: 0.5, B: 0.5}, A: {B: 0.9, A: 0.1}, B: {A: 0.9, B: 0.1}})
    model = MarkovSeq2Seq(cycle.unsqueeze(0))
    out = beam(model, *sources(1), max_len=6, beam_size=3, alpha=0.6)
    assert out.size(1) == 6, (
        f"a model that never emits EOS with max_len=6 must give 6 tokens; got {out.size(1)}: {out.tolist()}"
    )
    assert model.longest <= 6, f"the decoder was fed {model.longest} target tokens; with max_len=6 it needs at most 6"


@given(n=st.integers(1, 4), max_len=st.integers(1, 7), seed=st.integers(0, 10_000),
       alpha=st.sampled_from([0.0, 0.6, 1.5]))
def test_beam_of_width_one_is_greedy(n, max_len, seed, alpha):
    model = PrefixSeq2Seq(random_tables(n, 7, seed))
    want = oracle_greedy(model, n, max_len)
    out = beam(model, *sources(n), max_len=max_len, beam_size=1, alpha=alpha)
    assert out.shape == want.shape and torch.equal(out, want), (
        f"beam_search with beam_size=1 (alpha={alpha}) must be greedy decoding: expected {want.tolist()}, got "
        f"{out.tolist()}. With one beam the best continuation is the argmax; check the beam bookkeeping "
        f"(which beam each new token extends) and the start, where the beams are still identical"
    )


def exhaustive_best(model: MarkovSeq2Seq, table: int, max_len: int, alpha: float) -> list[int]:
    """Best of every sequence over {A, B} ending in EOS (or cut at max_len), by log P / ((5+L)/6)^alpha."""
    best, best_score = None, -math.inf
    for L in range(1, max_len + 1):
        for body in itertools.product([A, B], repeat=L - 1):
            for seq in ([*body, EOS],) + (([*body, A], [*body, B]) if L == max_len else ()):
                score = seq_logprob(model, table, list(seq)) / ((5 + L) / 6) ** alpha
                if score > best_score:
                    best, best_score = list(seq), score
    return best


@given(seed=st.integers(0, 10_000), alpha=st.sampled_from([0.0, 0.6, 1.0, 2.0]))
def test_a_wide_beam_finds_the_best_length_penalised_sequence(seed, alpha):
    V, n, max_len = 5, 2, 4  # tokens PAD, BOS, EOS, A, B
    tables = random_tables(n, V, seed)
    tables[..., PAD] = NEG
    tables[..., BOS] = NEG
    model = MarkovSeq2Seq(tables)
    # 32 beams hold every one of the <= 31 possible hypotheses: beam search is exact here.
    out = beam(model, *sources(n), max_len=max_len, beam_size=32, alpha=alpha)
    for b in range(n):
        want = exhaustive_best(model, b, max_len, alpha)
        got = upto_eos(out[b].tolist())
        if got != want:
            pytest.fail(
                f"source {b} (alpha={alpha}): the best sequence by log P / ((5 + length) / 6) ** alpha is {want}; "
                f"beam search returned {out[b].tolist()}. Score every hypothesis by its summed log-probs divided by "
                f"length_penalty(length, alpha), where length counts its tokens including EOS; a finished hypothesis "
                f"keeps its length and score", pytrace=False,
            )


def test_batched_beam_search_equals_one_source_at_a_time():
    tables = random_tables(3, 7, 123)
    model = PrefixSeq2Seq(tables)
    src, mask = sources(3)
    together = beam(model, src, mask, max_len=6, beam_size=3, alpha=0.6)
    for b in range(3):
        alone = beam(PrefixSeq2Seq(tables), src[b : b + 1], mask[b : b + 1], max_len=6, beam_size=3, alpha=0.6)
        assert upto_eos(together[b].tolist()) == upto_eos(alone[0].tolist()), (
            f"source {b} decoded in a batch of 3 gave {together[b].tolist()}, alone {alone[0].tolist()}: the "
            f"sources' beams must not mix: each source keeps its own beam_size best candidates"
        )
