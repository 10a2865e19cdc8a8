"""Bonus 5: greedy decoding and batched beam search, on small hand-built models.

The models here are tables, not Transformers, so every probability is known: a
source picks a table; the next-token logits are that table's row for the last
target token (`MarkovSeq2Seq`) or for a hash of the whole prefix (`PrefixSeq2Seq`).
The oracles are a per-row greedy loop, a per-source beam of Python lists and an
exhaustive search over every sequence. Outputs are token ids, compared exactly.

The learner's decoders run only through probes (tests/_probes_bonus5.py): a test builds
its model here, for its own expected answer, and the probe builds the same model (class
and tables) for the decoder and sends back what it returned and what it did to the model.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import _probes_bonus5 as P
from _probes_bonus5 import MarkovSeq2Seq, PrefixSeq2Seq, RecordingSeq2Seq
from _support import probe
from strategies import expect

PAD, BOS, EOS, A, B, C = 0, 1, 2, 3, 4, 5
NEG = -1e4  # "impossible" token: finite, so no solution trips over inf - inf


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


def decode(decoder: str, model: MarkovSeq2Seq, src, mask, max_len, ids=(BOS, EOS, PAD), **kw) -> dict:
    """The learner's `decoder` on a copy of `model` (its class, tables and mode), with (bos_id, eos_id,
    pad_id) = ids: what it returned ("out", a tensor), the longest prefix it fed the model ("longest"),
    the modes it left the model's submodules in ("modes") and a RecordingSeq2Seq's calls ("log")."""
    got = probe(P.decode, decoder, type(model).__name__, model.tables, model.training, src, mask, max_len, *ids,
                **kw)
    if got["out"] is None:
        pytest.fail(f"{decoder} must return a torch.Tensor of token ids, got a {got['type']}", pytrace=False)
    return got


def greedy(model, src, mask, max_len) -> torch.Tensor:
    return decode("greedy_decode", model, src, mask, max_len)["out"]


def beam(model, src, mask, max_len, beam_size, alpha) -> torch.Tensor:
    return decode("beam_search", model, src, mask, max_len, beam_size=beam_size, alpha=alpha)["out"]


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
    got = decode("greedy_decode", model, *sources(1), max_len=5)
    out = got["out"]
    assert out.tolist() == [[A, B, A, B, A]], (
        f"a model that never emits EOS, with max_len=5, must give exactly 5 tokens [A, B, A, B, A] = "
        f"{[A, B, A, B, A]}; got {out.tolist()} (max_len counts generated tokens, BOS not included)"
    )
    assert got["longest"] <= 5, f"the decoder was fed {got['longest']} target tokens; with max_len=5 it needs at most 5"


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
    got = decode("beam_search", model, *sources(1), max_len=6, beam_size=3, alpha=0.6)
    out = got["out"]
    assert out.size(1) == 6, (
        f"a model that never emits EOS with max_len=6 must give 6 tokens; got {out.size(1)}: {out.tolist()}"
    )
    assert got["longest"] <= 6, f"the decoder was fed {got['longest']} target tokens; with max_len=6 it needs at most 6"


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


def oracle_beam(model: MarkovSeq2Seq, table: int, max_len: int, beam_size: int, alpha: float) -> list[int]:
    """One source's beam search as beam_search's docstring defines it, on lists of (tokens, log P, length,
    finished): each step every live hypothesis is extended by every token, a finished one by PAD alone at no
    cost, and the beam_size best by log P / ((5 + length) / 6) ** alpha are kept; the best of them, up to EOS."""
    def score(h: tuple) -> float:
        return h[1] / ((5 + h[2]) / 6) ** alpha

    hyps = [([], 0.0, 0, False)]
    for t in range(1, max_len + 1):
        cands = []
        for seq, lp, length, done in hyps:
            if done:
                cands.append((seq + [PAD], lp, length, True))
                continue
            logits = model.decode(torch.tensor([[[float(table)]]]), None, torch.tensor([[BOS, *seq]]), None)
            logp = logits[0, -1].float().log_softmax(-1)
            cands += [(seq + [v], lp + float(logp[v]), t, v == EOS) for v in range(logp.numel())]
        hyps = sorted(cands, key=score, reverse=True)[:beam_size]
        if all(h[3] for h in hyps):
            break
    return upto_eos(max(hyps, key=score)[0])


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
    want = [oracle_beam(model, b, 6, 3, 0.6) for b in range(3)]
    assert [upto_eos(row) for row in together.tolist()] == want, (
        f"beam_search (beam 3, alpha 0.6) on 3 sources: expected {want} (each row up to its EOS), got "
        f"{together.tolist()}. Look at beam_search (bonus5_decoding.py)"
    )


# ------------------------------------------------- the length penalty ranks at every step

# alpha = 2, beam 2. Step 1 keeps [A] (0.65) and [EOS] (0.35). Step 2's candidates, by
# log P / ((5 + length) / 6) ** 2: [A, B] -1.085 / 1.361 = -0.797, [A, C] -1.165 / 1.361 =
# -0.856, the finished [EOS] -1.050 / 1 = -1.050: [A, B] and [A, C] are kept. Step 3:
# [A, C, EOS] -1.175 / 1.778 = -0.661 beats [A, B, EOS] -1.596 / 1.778 = -0.898. Ranked by
# raw log P at step 2 instead, [EOS] (-1.050) outranks [A, C] (-1.165), [A, C] is dropped,
# and the best left is [A, B, EOS]. With alpha = 0 the answer is [EOS]. Every margin is
# > 0.05, far beyond float rounding.
PENALTY_TABLE = log_table({BOS: {EOS: 0.35, A: 0.65}, A: {B: 0.52, C: 0.48}, B: {EOS: 0.6, A: 0.4},
                           C: {EOS: 0.99, A: 0.01}})


def test_every_ranking_divides_by_the_length_penalty():
    model = MarkovSeq2Seq(PENALTY_TABLE.unsqueeze(0))
    out = upto_eos(beam(model, *sources(1), max_len=6, beam_size=2, alpha=2.0)[0].tolist())
    if out != [A, C, EOS]:
        hint = ("expected the beam_size candidates kept at each step, and the final pick, to be the best by "
                "log P / length_penalty(length, alpha). Look at beam_search (bonus5_decoding.py)")
        if out == [A, B, EOS]:
            hint = ("that is what a beam gives that keeps its candidates by raw log-probability at each step and "
                    "divides by the length penalty only for the final pick: at step 2 the finished [EOS] (log P "
                    "-1.05, length 1) then outranks [A, C] (log P -1.17, length 2), which is dropped although its "
                    "score, -1.17 / ((5 + 2) / 6) ** 2 = -0.86, is the better one. The docstring's score is used by "
                    "every ranking, the per-step one included: alpha must change which candidates survive")
        elif out == [EOS]:
            hint = ("that is the best by raw log-probability (alpha = 0): alpha = 2 was ignored, or a finished "
                    "hypothesis was scored with the current step number instead of its own length (1)")
        pytest.fail(f"beam_search (beam 2, alpha=2.0) on a model where the length penalty decides: expected "
                    f"[A, C, EOS] = {[A, C, EOS]}, got {out}. {hint}", pytrace=False)
    raw = upto_eos(beam(MarkovSeq2Seq(PENALTY_TABLE.unsqueeze(0)), *sources(1), max_len=6, beam_size=2,
                        alpha=0.0)[0].tolist())
    assert raw == [EOS], (
        f"with alpha=0 the score is the raw log-probability, and the best hypothesis of this model is [EOS] = "
        f"{[EOS]} (log P -1.05; [A, C, EOS] has -1.18); got {raw}: alpha = 0 must not penalise anything"
    )


# -------------------------------------------------------------- the ids it is given

CANONICAL = (PAD, BOS, EOS, A, B, C)
# (pad_id, bos_id, eos_id, A, B, C): each id a valid token, 0 included; `relabel` moves the
# tables' rows and columns accordingly, so the same model answers under the new names.
RELABELLINGS = {
    "eos_id=0": (2, 1, 0, 3, 4, 5),
    "bos_id=0": (1, 0, 2, 3, 4, 5),
    "pad_id=5, A=0": (5, 3, 4, 0, 1, 2),
}


def relabel(tables: torch.Tensor, new: tuple[int, ...]) -> torch.Tensor:
    """The same model with token CANONICAL[i] renamed new[i] (rows and columns of every table)."""
    perm = torch.tensor(new)
    out = torch.empty_like(tables)
    out[:, perm.unsqueeze(1), perm.unsqueeze(0)] = tables
    return out


GREEDY_TABLES = torch.stack([
    log_table({BOS: {A: 0.9, B: 0.1}, A: {B: 0.8, EOS: 0.2}, B: {EOS: 0.9, A: 0.1}}),
    log_table({BOS: {B: 0.7, A: 0.3}, B: {EOS: 0.6, C: 0.4}, A: {EOS: 1.0}}),
])
STOP_TABLES = torch.stack([
    log_table({BOS: {A: 0.6, B: 0.4}, A: {EOS: 0.9, C: 0.1}, B: {EOS: 0.9, C: 0.1}, C: {EOS: 1.0}}),
    log_table({BOS: {A: 0.6, B: 0.4}, A: {B: 0.9, C: 0.1}, B: {C: 0.9, EOS: 0.1}, C: {EOS: 1.0}}),
])


@pytest.mark.parametrize("ids", list(RELABELLINGS), ids=list(RELABELLINGS))
def test_decoders_use_the_special_ids_they_are_given(ids):
    new = RELABELLINGS[ids]
    pad, bos, eos, a, b, c = new
    name = dict(zip(CANONICAL, new))
    label = {pad: "PAD", bos: "BOS", eos: "EOS", a: "A", b: "B", c: "C"}
    cases = [
        ("greedy_decode", GREEDY_TABLES, [[A, B, EOS], [B, EOS, PAD]], "greedy_decode", {}),
        ("beam_search (beam 2)", STOP_TABLES, [[A, EOS, PAD, PAD], [A, B, C, EOS]], "beam_search",
         dict(beam_size=2, alpha=0.0)),
    ]
    for what, tables, canonical_want, decoder, kw in cases:
        want = [[name[t] for t in row] for row in canonical_want]
        out = decode(decoder, MarkovSeq2Seq(relabel(tables, new)), *sources(tables.size(0)), 10, ids=(bos, eos, pad),
                     **kw)["out"]
        if out.tolist() != want:
            words = lambda rows: [[label.get(t, t) for t in row] for row in rows]  # noqa: E731
            zero = [n for n, v in (("pad_id", pad), ("bos_id", bos), ("eos_id", eos)) if v == 0]
            note = ("the ids are the arguments, none is fixed at 0, 1 or 2"
                    + (f"; and 0 is a token id like any other ({', '.join(zero)} = 0 here), not 'no id'" if zero else ""))
            pytest.fail(
                f"{what} with pad_id={pad}, bos_id={bos}, eos_id={eos} (the model and the expected tokens renamed "
                f"to match): expected {want} = {words(want)}, got {out.tolist()} = {words(out.tolist())}. Every "
                f"row starts from bos_id, a row is finished once it emits eos_id, and a finished row gets pad_id; "
                f"{note}",
                pytrace=False,
            )


# --------------------------------------------- how the decoders call the model

# Each decoder's arguments besides the ids; max_len is 5.
DECODERS = {"greedy_decode": {}, "beam_search": dict(beam_size=2, alpha=0.6)}


def oracle(decoder: str, model: MarkovSeq2Seq, n: int) -> list[list[int]]:
    """What `decoder`, called as DECODERS says with max_len=5, gives for `model`'s n sources (each up to its EOS)."""
    if decoder == "greedy_decode":
        return [upto_eos(row) for row in oracle_greedy(model, n, 5).tolist()]
    return [oracle_beam(model, b, 5, **DECODERS[decoder]) for b in range(n)]


@pytest.mark.parametrize("start", ["train", "eval"])
@pytest.mark.parametrize("decoder", list(DECODERS))
def test_decoders_run_the_model_in_eval_mode_without_gradients_and_restore_its_mode(decoder, start):
    model = RecordingSeq2Seq(random_tables(2, 7, 5)).train(start == "train")
    got = decode(decoder, model, *sources(2), 5, **DECODERS[decoder])
    assert got["log"], f"{decoder} never called the model"
    for call in got["log"]:
        training = [n for n, t in call["modes"].items() if t]
        expect(not training, (
            f"{decoder} called model.{call['what']} while {training} were in training mode (the model came in "
            f"{start} mode): decoding runs the whole model in eval mode, every submodule included, so dropout is "
            f"off; setting the `training` attribute of the top module alone does not reach its submodules"
        ))
        expect(not call["grad"], (
            f"{decoder} called model.{call['what']} with gradients enabled: decoding builds no autograd graph "
            f"(the docstring: eval mode, without gradients)"
        ))
    after = {n for n, t in got["modes"].items() if t != (start == "train")}
    expect(not after, (
        f"the model came in {start} mode and {decoder} left {sorted(after)} in "
        f"{'eval' if start == 'train' else 'train'} mode: a decoder must leave the model in the mode it found it "
        f"in (validation decoding sits between training steps; a model left in eval mode trains without dropout, "
        f"one switched to train mode evaluates with it)"
    ))
    want, out = oracle(decoder, MarkovSeq2Seq(model.tables), 2), [upto_eos(row) for row in got["out"].tolist()]
    expect(out == want, (
        f"{decoder} on this model (it came in {start} mode) should give {want} (each row up to its EOS), got "
        f"{got['out'].tolist()}: the mode changes none of this model's logits, so it must not change the tokens "
        f"either. Look at {decoder} (bonus5_decoding.py)"
    ))


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_decoders_pass_each_row_its_own_source_mask_and_a_causal_target_mask(decoder):
    n, S = 3, 4
    src = torch.arange(n).unsqueeze(1).repeat(1, S)  # src[b, 0] = b picks table b
    src_mask = torch.tensor([[[s < S - b for s in range(S)]] for b in range(n)])  # source b: b padded positions
    tables = random_tables(n, 7, 11)
    tables[..., PAD] = NEG  # PAD never generated as a token: a live prefix holds no padding
    model = RecordingSeq2Seq(tables)
    got = decode(decoder, model, src, src_mask, 5, **DECODERS[decoder])
    for call in got["log"]:
        if call["what"] == "encode":
            rows = call["src"][:, 0]
            got_mask = call["src_mask"]
        else:
            rows = call["memory"][:, 0, 0].long()
            got_mask = call["src_mask"]
        R = rows.numel()
        want = src_mask[rows]
        try:
            seen = got_mask.broadcast_to(R, 1, S)
        except (RuntimeError, AttributeError):
            seen = None
        if seen is None or not torch.equal(seen, want):
            pytest.fail(
                f"{decoder} called model.{call['what']} on {R} rows with src_mask of shape "
                f"{None if got_mask is None else tuple(got_mask.shape)}: each row must get the padding mask of its "
                f"own source, (rows, 1, S) = ({R}, 1, {S}). When the rows are beams (each source repeated "
                f"beam_size times), the mask must be repeated the same way as the memory, or a row reads its "
                f"source with another source's padding (and a real model's attention cannot even broadcast it)",
                pytrace=False,
            )
        if call["what"] != "decode":
            continue
        tgt, tgt_mask = call["tgt"], call["tgt_mask"]
        T = tgt.size(1)
        live = ~(tgt == EOS).any(dim=1)  # finished rows' logits are never used
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        ok = isinstance(tgt_mask, torch.Tensor) and tgt_mask.dtype == torch.bool
        if ok:
            try:
                full = tgt_mask.broadcast_to(tgt.size(0), T, T)
                ok = bool((full[live] == causal).all())
            except RuntimeError:
                ok = False
        if not ok:
            pytest.fail(
                f"{decoder} called model.decode on a prefix of length {T} with tgt_mask "
                f"{tgt_mask if not isinstance(tgt_mask, torch.Tensor) else f'of shape {tuple(tgt_mask.shape)}, {tgt_mask.dtype}'}"
                f": the decoder must be called with a causal target mask, bool, (T, T) or (rows, T, T), True where "
                f"query t may read key s <= t. Without it the earlier positions read the later ones, which the "
                f"model never saw in training, and in a model of several layers that changes the last position's "
                f"logits too",
                pytrace=False,
            )
    want, out = oracle(decoder, MarkovSeq2Seq(tables), n), [upto_eos(row) for row in got["out"].tolist()]
    expect(out == want, (
        f"{decoder} on {n} sources with padding should give {want} (each row up to its EOS), got "
        f"{got['out'].tolist()}: this model's logits do not depend on the padding, so the tokens are those of "
        f"sources without it. Look at {decoder} (bonus5_decoding.py)"
    ))


# ---------------------------------------------------- bf16 logits: log-probs in float32

# A model whose decoder returns bf16 logits (bf16-exact values, NEG elsewhere). From BOS:
# A 0.625, B 0.0. After A: EOS -3.375, C and D -4.0; after B: EOS 0.0, C and D -2.875.
# In float32 (or float64), log P([A, EOS]) = -1.15650 and log P([B, EOS]) = -1.16061:
# [A, EOS] is the best, by 4.1e-3; float32 rounding in any order moves these sums by
# < 1e-6. log_softmax computed in bf16 rounds each log-prob to 8 significant bits (up to
# 2e-3 off here) and the sums come out reversed, [B, EOS] ahead by 3.4e-3, whether they
# are added in float32 or in bf16. Measured with torch's CPU bf16 log_softmax.
D = 6
BF16_TABLE = torch.full((7, 7), NEG)
BF16_TABLE[BOS, A], BF16_TABLE[BOS, B] = 0.625, 0.0
BF16_TABLE[A, EOS], BF16_TABLE[A, C], BF16_TABLE[A, D] = -3.375, -4.0, -4.0
BF16_TABLE[B, EOS], BF16_TABLE[B, C], BF16_TABLE[B, D] = 0.0, -2.875, -2.875
BF16_TABLE[EOS, A] = BF16_TABLE[PAD, A] = 0.0
BF16_TABLE = BF16_TABLE.bfloat16()


def test_beam_search_takes_log_probabilities_in_float32_from_bf16_logits():
    model = MarkovSeq2Seq(BF16_TABLE.unsqueeze(0))
    out = beam(model, *sources(1), max_len=2, beam_size=2, alpha=0.0)
    assert out.dtype == torch.int64, f"beam_search must return int64 token ids, got {out.dtype}"
    got = upto_eos(out[0].tolist())
    expect(got == [A, EOS], (
        f"with bf16 logits, beam search (beam 2, alpha 0) should return [A, EOS] = {[A, EOS]} (log P -1.15650 in "
        f"float32), not [B, EOS] (-1.16061); got {got}. "
        + ("[B, EOS] wins only when the log-probabilities are computed in bf16 and cast afterwards: bf16 keeps 8 "
           "significant bits, so each log-prob is off by up to ~2e-3 and close hypotheses swap places; the "
           "docstring's log-probabilities are float32 ones, and a cast after the fact does not give those back"
           if got == [B, EOS] else "Look at beam_search (bonus5_decoding.py)")
    ))
