"""Bonus 1: the encoder-decoder, against `torch.nn.Transformer` layers as an independent oracle.

PyTorch's own `TransformerEncoder` / `TransformerDecoder` with `norm_first=True`, a
final LayerNorm, GELU(tanh) and no dropout compute exactly this model; the student's
weights are copied into them (q, k, v stacked into `in_proj_weight`). Bonus 1 uses
your step 2 `masked_attention_scores` and step 3 `MLP`: pass `-k step2` and `-k step3` first.

Tolerance: atol 1e-5, rtol 1e-4 on float32 activations of size ~1-3. PyTorch's fused
attention sums in another order; the differences seen are ~1e-6. A wrong mask, a
missing residual or a misplaced LayerNorm changes outputs by > 1e-2.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from _support import assert_close, not_implemented_guard, student

MODULE = "bonus1_encoder_decoder"
ATOL, RTOL = 1e-5, 1e-4
PAD = 0
HINT = "(bonus 1 reuses your step 2 masked_attention_scores and step 3 MLP: make sure those steps pass)"


def make_model(seed: int = 0, **kw):
    m = student(MODULE)
    cfg = dict(src_vocab_size=17, tgt_vocab_size=19, max_len=16, n_layer=2, n_head=4, n_embd=32, dropout=0.1)
    cfg.update(kw)
    torch.manual_seed(seed)
    model = m.EncoderDecoder(m.Seq2SeqConfig(**cfg)).eval()  # eval: dropout must be off
    with torch.no_grad():  # non-trivial LayerNorm gains and biases, so a skipped one shows
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


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


def copy_attention(ours, theirs: nn.MultiheadAttention) -> None:
    theirs.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.k.weight, ours.v.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.k.bias, ours.v.bias]))
    theirs.out_proj.weight.copy_(ours.proj.weight)
    theirs.out_proj.bias.copy_(ours.proj.bias)


def copy_norm(ours: nn.LayerNorm, theirs: nn.LayerNorm) -> None:
    theirs.weight.copy_(ours.weight)
    theirs.bias.copy_(ours.bias)


def copy_mlp(ours, layer) -> None:
    layer.linear1.weight.copy_(ours.fc.weight)
    layer.linear1.bias.copy_(ours.fc.bias)
    layer.linear2.weight.copy_(ours.proj.weight)
    layer.linear2.bias.copy_(ours.proj.bias)


def torch_layers(model) -> tuple[nn.TransformerEncoder, nn.TransformerDecoder]:
    """nn.Transformer stacks holding a copy of the model's weights."""
    cfg = model.config
    common = dict(d_model=cfg.n_embd, nhead=cfg.n_head, dim_feedforward=4 * cfg.n_embd, dropout=0.0,
                  activation=lambda x: F.gelu(x, approximate="tanh"), batch_first=True, norm_first=True)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(**common), cfg.n_layer, norm=nn.LayerNorm(cfg.n_embd),
                                enable_nested_tensor=False).eval()
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(**common), cfg.n_layer, norm=nn.LayerNorm(cfg.n_embd)).eval()
    with torch.no_grad():
        for ours, theirs in zip(model.encoder, enc.layers):
            copy_attention(ours.self_attn, theirs.self_attn)
            copy_norm(ours.ln_1, theirs.norm1)
            copy_norm(ours.ln_2, theirs.norm2)
            copy_mlp(ours.mlp, theirs)
        copy_norm(model.ln_enc, enc.norm)
        for ours, theirs in zip(model.decoder, dec.layers):
            copy_attention(ours.self_attn, theirs.self_attn)
            copy_attention(ours.cross_attn, theirs.multihead_attn)
            copy_norm(ours.ln_1, theirs.norm1)
            copy_norm(ours.ln_2, theirs.norm2)
            copy_norm(ours.ln_3, theirs.norm3)
            copy_mlp(ours.mlp, theirs)
        copy_norm(model.ln_dec, dec.norm)
    return enc, dec


# ------------------------------------------------------------------------ attention


@given(B=st.integers(1, 3), T=st.integers(1, 6), S=st.integers(1, 7), heads=st.sampled_from([1, 2, 4]),
       per_query=st.booleans(), seed=st.integers(0, 10_000))
def test_attention_matches_scaled_dot_product_attention(B, T, S, heads, per_query, seed):
    m = student(MODULE)
    torch.manual_seed(seed)
    attn = m.MultiHeadAttention(m.Seq2SeqConfig(n_head=heads, n_embd=8 * heads, dropout=0.0)).eval()
    C = 8 * heads
    x, ctx = torch.randn(B, T, C), torch.randn(B, S, C)
    mask = torch.rand(B, T if per_query else 1, S) < 0.7
    mask[..., 0] = True  # every query keeps at least one key (an all-masked row is NaN by design)
    with torch.no_grad():
        got = not_implemented_guard(attn, x, ctx, mask)
        q, k, v = (lin(t).view(B, -1, heads, C // heads).transpose(1, 2)
                   for lin, t in ((attn.q, x), (attn.k, ctx), (attn.v, ctx)))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.unsqueeze(1))
        want = attn.proj(y.transpose(1, 2).reshape(B, T, C))
    assert_close(got, want, atol=ATOL, rtol=RTOL, what=f"MultiHeadAttention, mask {tuple(mask.shape)}",
                 hint="expected queries from x, keys and values from context (S positions), a (B, 1|T, S) mask "
                      "applied alike to every head, each query's weights over the S keys summing to 1, the heads "
                      "re-joined in channel order, then proj. Look at MultiHeadAttention.forward "
                      "(bonus1_encoder_decoder.py); stuck? `nox -s hint -- bonus 1`. " + HINT)


def test_a_two_dimensional_mask_applies_to_the_whole_batch():
    """Decoding (bonus 5) passes step 2's (T, T) causal mask, shared by every row."""
    m = student(MODULE)
    torch.manual_seed(0)
    attn = m.MultiHeadAttention(m.Seq2SeqConfig(n_head=2, n_embd=16, dropout=0.0)).eval()
    x = torch.randn(3, 5, 16)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    with torch.no_grad():
        got = not_implemented_guard(attn, x, x, causal)
        want = attn(x, x, causal.expand(3, 5, 5))
    assert_close(got, want, atol=1e-6, rtol=0, what="attention with a (T, T) mask vs the same mask as (B, T, T)",
                 hint="a 2-D (T, S) mask is shared by every batch row and head and must act like the same mask "
                      "repeated per row; it already lines up with the (T, S) scores of each head, so only a 3-D "
                      "(B, 1|T, S) mask needs a head axis")


def test_cross_attention_can_have_a_different_length_from_its_queries():
    m = student(MODULE)
    attn = m.MultiHeadAttention(m.Seq2SeqConfig(n_head=2, n_embd=16, dropout=0.0)).eval()
    with torch.no_grad():
        out = not_implemented_guard(attn, torch.randn(2, 3, 16), torch.randn(2, 9, 16), torch.ones(2, 1, 9, dtype=torch.bool))
    assert out.shape == (2, 3, 16), (
        f"3 queries attending over 9 keys must give (B, 3, C) = (2, 3, 16), got {tuple(out.shape)}: the output "
        f"has the queries' length, while the keys and values have the context's length S = 9, not T = 3"
    )


# ------------------------------------------------------------- encoder and decoder


def test_encoder_matches_torch_transformer_encoder():
    model = make_model()
    src = padded(3, 7, 17, [7, 4, 1], seed=1)
    src_mask = (src != PAD).unsqueeze(1)
    enc, _ = torch_layers(model)
    with torch.no_grad():
        got = not_implemented_guard(model.encode, src, src_mask)
        want = enc(model.src_embed(src), src_key_padding_mask=src == PAD)
    real = (src != PAD).unsqueeze(-1).expand_as(want)
    assert got.shape == want.shape, f"encode of a (3, 7) source should be (3, 7, 32), got {tuple(got.shape)}"
    assert_close(got[real], want[real], atol=ATOL, rtol=RTOL, what="encoder memory at the real source positions",
                 hint="expected pre-norm encoder layers (a LayerNorm before each sub-layer, whose output is added "
                      "to the stream), self-attention with the padding mask only (the encoder looks both ways), "
                      "and ln_enc after the last layer. Look at EncoderLayer.forward and EncoderDecoder.encode "
                      "(bonus1_encoder_decoder.py). " + HINT)


def test_decoder_matches_torch_transformer_decoder():
    model = make_model()
    src = padded(3, 7, 17, [7, 4, 2], seed=2)
    tgt_in = padded(3, 6, 19, [6, 3, 1], seed=3, first=1)
    src_mask, tgt_mask = masks(src, tgt_in)
    enc, dec = torch_layers(model)
    T = tgt_in.size(1)
    with torch.no_grad():
        memory = enc(model.src_embed(src), src_key_padding_mask=src == PAD)
        got = not_implemented_guard(model.decode, memory, src_mask, tgt_in, tgt_mask)
        hidden = dec(model.tgt_embed(tgt_in), memory, tgt_mask=~torch.ones(T, T, dtype=torch.bool).tril(),
                     tgt_key_padding_mask=tgt_in == PAD, memory_key_padding_mask=src == PAD)
        want = model.generator(hidden)
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
    model = make_model()
    src = padded(2, 5, 17, [5, 3], seed=4)
    tgt_in = padded(2, 4, 19, [4, 2], seed=5, first=1)
    src_mask, tgt_mask = masks(src, tgt_in)
    with torch.no_grad():
        want = not_implemented_guard(model.decode, not_implemented_guard(model.encode, src, src_mask), src_mask, tgt_in, tgt_mask)
        got = model(src, tgt_in, src_mask, tgt_mask)
    assert_close(got, want, atol=0, rtol=0, what="forward(src, tgt_in, ...)",
                 hint="forward must be decode of encode's memory, with the same masks")


# ---------------------------------------------------------------- what attends to what


def test_decoder_cannot_see_future_targets():
    model = make_model()
    src = padded(1, 6, 17, [6], seed=6)
    tgt_in = padded(1, 6, 19, [6], seed=7, first=1)
    src_mask, tgt_mask = masks(src, tgt_in)
    changed = tgt_in.clone()
    changed[0, 4:] = (changed[0, 4:] + 1 - 3) % 16 + 3  # other real tokens at positions 4, 5
    with torch.no_grad():
        memory = not_implemented_guard(model.encode, src, src_mask)
        a = not_implemented_guard(model.decode, memory, src_mask, tgt_in, tgt_mask)
        b = model.decode(memory, src_mask, changed, masks(src, changed)[1])
    diff = (a[0, :4] - b[0, :4]).abs().max().item()
    assert diff < 1e-6, (
        f"changing target tokens 4 and 5 changed the logits at positions 0-3 by {diff:.3g}: the decoder's "
        f"self-attention must use tgt_mask (causal), so position t never reads tokens after t"
    )


def test_decoder_reads_the_real_source_and_ignores_source_padding():
    model = make_model()
    src = padded(1, 7, 17, [4], seed=8)
    tgt_in = padded(1, 5, 19, [5], seed=9, first=1)
    src_mask, tgt_mask = masks(src, tgt_in)
    with torch.no_grad():
        base = not_implemented_guard(model, src, tgt_in, src_mask, tgt_mask)
        pad_changed = src.clone()
        pad_changed[0, 4:] = 9  # different ids under the same mask: must not matter
        same = model(pad_changed, tgt_in, src_mask, tgt_mask)
        real_changed = src.clone()
        real_changed[0, 1] = 3 + (int(src[0, 1]) - 2) % 14
        other = model(real_changed, tgt_in, src_mask, tgt_mask)
    assert (base - same).abs().max().item() < 1e-6, (
        "changing the tokens at masked (padded) source positions changed the logits: the encoder's self-attention "
        "and the decoder's cross-attention must both use src_mask"
    )
    assert (base - other).abs().max().item() > 1e-4, (
        "changing a real source token did not change the decoder's logits: the decoder must cross-attend to the "
        "encoder's memory, and encode must return it"
    )


def test_encoder_looks_both_ways():
    model = make_model()
    src = padded(1, 6, 17, [6], seed=10)
    changed = src.clone()
    changed[0, 5] = 3 + (int(src[0, 5]) - 2) % 14
    mask = torch.ones(1, 1, 6, dtype=torch.bool)
    with torch.no_grad():
        a = not_implemented_guard(model.encode, src, mask)
        b = model.encode(changed, mask)
    assert (a[0, 0] - b[0, 0]).abs().max().item() > 1e-4, (
        "changing the LAST source token did not change the encoder's output at position 0: the encoder is "
        "bidirectional, so its self-attention takes only the padding mask, not a causal one"
    )
