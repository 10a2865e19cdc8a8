"""Bonus 1: the encoder-decoder, against `torch.nn.Transformer` layers as an independent oracle.

PyTorch's own `TransformerEncoder` / `TransformerDecoder` with `norm_first=True`, a
final LayerNorm, GELU(tanh) and no dropout compute exactly this model; the test draws
random weights for your modules and copies the same weights into them (q, k, v stacked
into `in_proj_weight`; tests/_bonus1_checks.py). Bonus 1 uses your step 2
`masked_attention_scores` and step 3 `MLP`: pass `-k step2` and `-k step3` first.

Your code runs only inside the probes of tests/_probes_bonus1.py (`probe`); the tests
draw the weights and inputs, and compare what comes back with their own answers.

Tolerance: atol 1e-5, rtol 1e-4 on float32 activations of size ~1-3. PyTorch's fused
attention sums in another order; the differences seen are ~1e-6. A wrong mask, a
missing residual or a misplaced LayerNorm changes outputs by > 1e-2.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import _probes_bonus1 as probes
from _bonus1_checks import PAD, linear, torch_logits, torch_memory, weights
from _support import assert_close, probe

ATOL, RTOL = 1e-5, 1e-4
HINT = "(bonus 1 reuses your step 2 masked_attention_scores and step 3 MLP: make sure those steps pass)"
MODEL = dict(src_vocab_size=17, tgt_vocab_size=19, max_len=16, n_layer=2, n_head=4, n_embd=32, dropout=0.1)


def model_weights(seed: int = 0) -> dict:
    """Random weights for the EncoderDecoder(MODEL) (non-trivial LayerNorm gains and biases, so
    a skipped one shows); the learner's model loads them in eval mode (dropout must be off)."""
    return weights("EncoderDecoder", MODEL, seed)


def run_model(state: dict, *calls: tuple) -> list:
    """The learner's EncoderDecoder(MODEL) with the weights `state`, in eval mode: one output
    per call `(method, *args)`, method "encode", "decode" or "forward"."""
    return probe(probes.model_calls, MODEL, state, [(method, args) for method, *args in calls])


def attention(cfg: dict, state: dict, *runs: tuple) -> list:
    """The learner's MultiHeadAttention(cfg) with the weights `state`, in eval mode, on each
    run `(x, context, mask)`."""
    return probe(probes.forward, "MultiHeadAttention", cfg, state, [(False, run) for run in runs])


def expected_attention(state: dict, heads: int, x: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Multi-head attention with the module's own Linear layers (the weights `state` it loaded),
    through PyTorch's scaled_dot_product_attention; `mask` (B, 1|T, S) or (T, S)."""
    B, T, C = x.shape
    q, k, v = (linear(state, name, t).view(B, -1, heads, C // heads).transpose(1, 2)
               for name, t in (("q", x), ("k", ctx), ("v", ctx)))
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.unsqueeze(1) if mask.dim() == 3 else mask)
    return linear(state, "proj", y.transpose(1, 2).reshape(B, T, C))


def padded(B: int, L: int, vocab: int, lengths: list[int], seed: int, first: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(3, vocab, (B, L), generator=g)
    if first is not None:
        x[:, 0] = first
    for b, n in enumerate(lengths):
        x[b, n:] = PAD
    return x


def masks(src: torch.Tensor, tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, S) source padding mask and (B, T, T) causal AND padding target mask, built here."""
    T = tgt_in.size(1)
    src_mask = (src != PAD).unsqueeze(1)
    tgt_mask = (tgt_in != PAD).unsqueeze(1) & torch.ones(T, T, dtype=torch.bool).tril()
    return src_mask, tgt_mask


def check_logits(got: torch.Tensor, state: dict, src: torch.Tensor, tgt_in: torch.Tensor, what: str) -> None:
    """`got` must be the logits nn.Transformer computes with the same weights, at the real target positions."""
    want = torch_logits(state, MODEL, torch_memory(state, MODEL, src), src, tgt_in)
    if got.shape == want.shape:  # else assert_close names both shapes
        real = (tgt_in != PAD).unsqueeze(-1).expand_as(want)
        got, want = got[real], want[real]
    assert_close(got, want, atol=ATOL, rtol=RTOL, what=what,
                 hint="expected the logits of torch.nn.Transformer's pre-norm layers holding the same weights: "
                      "test_encoder_matches_torch_transformer_encoder and test_decoder_matches_torch_transformer_"
                      "decoder say which part differs. " + HINT)


# ------------------------------------------------------------------------ attention


@given(B=st.integers(1, 3), T=st.integers(1, 6), S=st.integers(1, 7), heads=st.sampled_from([1, 2, 4]),
       per_query=st.booleans(), seed=st.integers(0, 10_000))
def test_attention_matches_scaled_dot_product_attention(B, T, S, heads, per_query, seed):
    cfg = dict(n_head=heads, n_embd=8 * heads, dropout=0.0)
    state = weights("MultiHeadAttention", cfg, seed)
    torch.manual_seed(seed)
    C = 8 * heads
    x, ctx = torch.randn(B, T, C), torch.randn(B, S, C)
    mask = torch.rand(B, T if per_query else 1, S) < 0.7
    mask[..., 0] = True  # every query keeps at least one key (an all-masked row is NaN by design)
    [got] = attention(cfg, state, (x, ctx, mask))
    with torch.no_grad():
        want = expected_attention(state, heads, x, ctx, mask)
    assert_close(got, want, atol=ATOL, rtol=RTOL, what=f"MultiHeadAttention, mask {tuple(mask.shape)}",
                 hint="expected queries from x, keys and values from context (S positions), a (B, 1|T, S) mask "
                      "applied alike to every head, each query's weights over the S keys summing to 1, the heads "
                      "re-joined in channel order, then proj. Look at MultiHeadAttention.forward "
                      "(bonus1_encoder_decoder.py); stuck? `nox -s hint -- bonus 1`. " + HINT)


def test_a_two_dimensional_mask_applies_to_the_whole_batch():
    """Decoding (bonus 5) passes step 2's (T, T) causal mask, shared by every row."""
    cfg = dict(n_head=2, n_embd=16, dropout=0.0)
    state = weights("MultiHeadAttention", cfg, 0)
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    got, want = attention(cfg, state, (x, x, causal), (x, x, causal.expand(3, 5, 5)))
    assert_close(got, want, atol=1e-6, rtol=0, what="attention with a (T, T) mask vs the same mask as (B, T, T)",
                 hint="a 2-D (T, S) mask is shared by every batch row and head and must act like the same mask "
                      "repeated per row; it already lines up with the (T, S) scores of each head, so only a 3-D "
                      "(B, 1|T, S) mask needs a head axis")
    with torch.no_grad():
        causal_attention = expected_attention(state, 2, x, x, causal)
    assert_close(got, causal_attention, atol=ATOL, rtol=RTOL, what="attention with a (T, T) causal mask",
                 hint="expected scaled_dot_product_attention of the module's own q, k, v under the mask; "
                      "test_attention_matches_scaled_dot_product_attention says more. " + HINT)


def test_cross_attention_can_have_a_different_length_from_its_queries():
    cfg = dict(n_head=2, n_embd=16, dropout=0.0)
    state = weights("MultiHeadAttention", cfg, 0)
    torch.manual_seed(0)
    x, ctx, mask = torch.randn(2, 3, 16), torch.randn(2, 9, 16), torch.ones(2, 1, 9, dtype=torch.bool)
    [out] = attention(cfg, state, (x, ctx, mask))
    assert out.shape == (2, 3, 16), (
        f"3 queries attending over 9 keys must give (B, 3, C) = (2, 3, 16), got {tuple(out.shape)}: the output "
        f"has the queries' length, while the keys and values have the context's length S = 9, not T = 3"
    )
    with torch.no_grad():
        want = expected_attention(state, 2, x, ctx, mask)
    assert_close(out, want, atol=ATOL, rtol=RTOL, what="3 queries attending over 9 keys",
                 hint="expected queries from x, keys and values from context; "
                      "test_attention_matches_scaled_dot_product_attention says more. " + HINT)


# ------------------------------------------------------------- encoder and decoder


def test_encoder_matches_torch_transformer_encoder():
    state = model_weights()
    src = padded(3, 7, 17, [7, 4, 1], seed=1)
    src_mask = (src != PAD).unsqueeze(1)
    [got] = run_model(state, ("encode", src, src_mask))
    want = torch_memory(state, MODEL, src)
    real = (src != PAD).unsqueeze(-1).expand_as(want)
    assert got.shape == want.shape, f"encode of a (3, 7) source should be (3, 7, 32), got {tuple(got.shape)}"
    assert_close(got[real], want[real], atol=ATOL, rtol=RTOL, what="encoder memory at the real source positions",
                 hint="expected pre-norm encoder layers (a LayerNorm before each sub-layer, whose output is added "
                      "to the stream), self-attention with the padding mask only (the encoder looks both ways), "
                      "and ln_enc after the last layer. Look at EncoderLayer.forward and EncoderDecoder.encode "
                      "(bonus1_encoder_decoder.py). " + HINT)


def test_decoder_matches_torch_transformer_decoder():
    state = model_weights()
    src = padded(3, 7, 17, [7, 4, 2], seed=2)
    tgt_in = padded(3, 6, 19, [6, 3, 1], seed=3, first=1)
    src_mask, tgt_mask = masks(src, tgt_in)
    memory = torch_memory(state, MODEL, src)
    [got] = run_model(state, ("decode", memory, src_mask, tgt_in, tgt_mask))
    want = torch_logits(state, MODEL, memory, src, tgt_in)
    assert got.shape == want.shape, (
        f"decode with a (3, 6) decoder input should give logits (3, 6, 19) over the target vocabulary, got "
        f"{tuple(got.shape)}: the last decoder layer's output goes through ln_dec and the generator"
    )
    real = (tgt_in != PAD).unsqueeze(-1).expand_as(want)
    assert_close(got[real], want[real], atol=ATOL, rtol=RTOL, what="decoder logits at the real target positions",
                 hint="expected three pre-norm sub-layers per decoder layer, each added to the stream: "
                      "self-attention under tgt_mask, cross-attention (queries from the decoder, keys and values "
                      "from the encoder's memory as it is, under src_mask), the MLP; then ln_dec and the generator. "
                      "Look at DecoderLayer.forward and EncoderDecoder.decode (bonus1_encoder_decoder.py). " + HINT)


def test_forward_is_decode_of_encode():
    state = model_weights()
    src = padded(2, 5, 17, [5, 3], seed=4)
    tgt_in = padded(2, 4, 19, [4, 2], seed=5, first=1)
    src_mask, tgt_mask = masks(src, tgt_in)
    _, want, got = run_model(state, ("encode", src, src_mask), ("decode", probes.MEMORY, src_mask, tgt_in, tgt_mask),
                             ("forward", src, tgt_in, src_mask, tgt_mask))
    assert_close(got, want, atol=0, rtol=0, what="forward(src, tgt_in, ...)",
                 hint="forward must be decode of encode's memory, with the same masks")
    check_logits(got, state, src, tgt_in, what="forward(src, tgt_in, ...) at the real target positions")
# ---------------------------------------------------------------- what attends to what


def test_decoder_cannot_see_future_targets():
    state = model_weights()
    src = padded(1, 6, 17, [6], seed=6)
    tgt_in = padded(1, 6, 19, [6], seed=7, first=1)
    src_mask, tgt_mask = masks(src, tgt_in)
    changed = tgt_in.clone()
    changed[0, 4:] = (changed[0, 4:] + 1 - 3) % 16 + 3  # other real tokens at positions 4, 5
    _, a, b = run_model(state, ("encode", src, src_mask), ("decode", probes.MEMORY, src_mask, tgt_in, tgt_mask),
                        ("decode", probes.MEMORY, src_mask, changed, masks(src, changed)[1]))
    diff = (a[0, :4] - b[0, :4]).abs().max().item()
    assert diff < 1e-6, (
        f"changing target tokens 4 and 5 changed the logits at positions 0-3 by {diff:.3g}: the decoder's "
        f"self-attention must use tgt_mask (causal), so position t never reads tokens after t"
    )
    check_logits(a, state, src, tgt_in, what="decode of encode's memory")


def test_decoder_reads_the_real_source_and_ignores_source_padding():
    state = model_weights()
    src = padded(1, 7, 17, [4], seed=8)
    tgt_in = padded(1, 5, 19, [5], seed=9, first=1)
    src_mask, tgt_mask = masks(src, tgt_in)
    pad_changed = src.clone()
    pad_changed[0, 4:] = 9  # different ids under the same mask: must not matter
    real_changed = src.clone()
    real_changed[0, 1] = 3 + (int(src[0, 1]) - 2) % 14
    base, same, other = run_model(state, *(("forward", s, tgt_in, src_mask, tgt_mask)
                                           for s in (src, pad_changed, real_changed)))
    assert (base - same).abs().max().item() < 1e-6, (
        "changing the tokens at masked (padded) source positions changed the logits: the encoder's self-attention "
        "and the decoder's cross-attention must both use src_mask"
    )
    assert (base - other).abs().max().item() > 1e-4, (
        "changing a real source token did not change the decoder's logits: the decoder must cross-attend to the "
        "encoder's memory, and encode must return it"
    )
    check_logits(base, state, src, tgt_in, what="forward(src, tgt_in, ...) with a padded source")


def test_encoder_looks_both_ways():
    state = model_weights()
    src = padded(1, 6, 17, [6], seed=10)
    changed = src.clone()
    changed[0, 5] = 3 + (int(src[0, 5]) - 2) % 14
    mask = torch.ones(1, 1, 6, dtype=torch.bool)
    a, b = run_model(state, ("encode", src, mask), ("encode", changed, mask))
    assert (a[0, 0] - b[0, 0]).abs().max().item() > 1e-4, (
        "changing the LAST source token did not change the encoder's output at position 0: the encoder is "
        "bidirectional, so its self-attention takes only the padding mask, not a causal one"
    )
    assert_close(a, torch_memory(state, MODEL, src), atol=ATOL, rtol=RTOL, what="encoder memory",
                 hint="expected the memory of torch.nn.TransformerEncoder's pre-norm layers holding the same weights; "
                      "test_encoder_matches_torch_transformer_encoder says more. " + HINT)
