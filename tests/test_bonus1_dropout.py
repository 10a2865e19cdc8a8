"""Bonus 1 in train mode: dropout where the Annotated Transformer puts it.

On the attention probabilities, and on each sub-layer's output before the residual
addition (the feed-forward's own dropouts are given in `FeedForward`); eval mode is
deterministic (the other bonus 1 tests run in eval mode). Graded by behaviour, for
any code with the same placement and any use of the RNG: a layer whose other
sub-layers output exactly 0 is x + that sub-layer's branch, so `layer(x) - x` shows
the branch entry by entry; a dropped branch entry is exactly 0.
"""
from __future__ import annotations

import pytest
import torch

from _support import not_implemented_guard, student
from strategies import expect

MODULE = "bonus1_encoder_decoder"
P = 0.5
C, H = 16, 2


def config(m):
    return m.Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=11, max_len=16, n_layer=1, n_head=H, n_embd=C,
                           dropout=P, bias=True)


def silence(*linears) -> None:
    """Make sub-layers output exactly 0: zero their output projections."""
    with torch.no_grad():
        for lin in linears:
            lin.weight.zero_()
            lin.bias.zero_()


def zero_fraction_check(branch: torch.Tensor, what: str, fix: str) -> None:
    frac = (branch == 0).double().mean().item()
    tol = 7 * (P * (1 - P) / branch.numel()) ** 0.5  # 7 standard errors of the fraction
    expect(abs(frac - P) <= tol, (
        f"in train mode (dropout={P}) {frac:.1%} of the {what} branch's entries are exactly 0, expected about "
        f"{P:.0%}: " + ("none are dropped — " if frac < tol else "dropped more than once, or with another p — ")
        + fix))


def test_bonus1_attention_probabilities_have_dropout_in_train_mode():
    """All values equal u and proj is the identity: eval gives u at every query; in
    train mode a query's output is u * (its kept probabilities / (1 - p)), a factor
    that varies from query to query only if the probabilities are dropped."""
    m = student(MODULE)
    torch.manual_seed(0)
    attn = m.MultiHeadAttention(config(m))
    u = 1.0 + torch.arange(C, dtype=torch.float32) / C
    with torch.no_grad():
        attn.v.weight.zero_()
        attn.v.bias.copy_(u)
        attn.proj.weight.copy_(torch.eye(C))
        attn.proj.bias.zero_()
    x = torch.randn(1, 5, C).expand(2048, -1, -1).contiguous()
    ctx = torch.randn(1, 7, C).expand(2048, -1, -1).contiguous()
    with torch.no_grad():
        attn.eval()
        ev = not_implemented_guard(attn, x[:1], ctx[:1], None)
        attn.train()
        tr = not_implemented_guard(attn, x, ctx, None)
    fix = "apply self.attn_drop to the softmax probabilities before multiplying by v"
    expect(torch.allclose(ev, u.expand_as(ev), atol=1e-5),
           "with every value equal to u and an identity projection the eval output should be u everywhere; "
           "fix the eval-mode attention tests first")
    factor = tr / u
    expect(factor.std().item() > 0.1, (
        f"in train mode (dropout={P}) the attention output is u times {factor.flatten().unique()[:4].tolist()}: "
        f"the attention probabilities are not dropped — {fix}"))
    mean, se = tr.mean(0), tr.std(0) / tr.size(0) ** 0.5
    expect(bool(((mean - ev[0]).abs() <= 6 * se + 1e-6).all()), (
        f"averaged over 2048 train-mode passes the attention output is off its eval output by up to "
        f"{(mean - ev[0]).abs().max().item():.3g}: {fix} (nn.Dropout rescales the kept ones by 1/(1-p))"))


def test_bonus1_encoder_layer_drops_each_sublayer_output():
    m = student(MODULE)
    torch.manual_seed(1)
    x = torch.randn(16, 8, C)
    mask = torch.ones(16, 1, 8, dtype=torch.bool)
    for name in ("self-attention", "feed-forward"):
        layer = m.EncoderLayer(config(m)).train()
        silence(layer.mlp.proj) if name == "self-attention" else silence(layer.self_attn.proj)
        with torch.no_grad():
            branch = not_implemented_guard(layer, x, mask) - x
        zero_fraction_check(branch, f"encoder layer's {name}",
                            "x = x + self.drop(self.self_attn(h, h, src_mask)); the feed-forward (FeedForward) "
                            "drops its own output, so x = x + self.mlp(self.ln_2(x))")


def test_bonus1_decoder_layer_drops_each_sublayer_output():
    m = student(MODULE)
    torch.manual_seed(2)
    y, memory = torch.randn(16, 6, C), torch.randn(16, 7, C)
    src_mask = torch.ones(16, 1, 7, dtype=torch.bool)
    tgt_mask = torch.ones(6, 6, dtype=torch.bool).tril().expand(16, 6, 6)
    for name in ("self-attention", "cross-attention", "feed-forward"):
        layer = m.DecoderLayer(config(m)).train()
        others = {"self-attention": (layer.cross_attn.proj, layer.mlp.proj),
                  "cross-attention": (layer.self_attn.proj, layer.mlp.proj),
                  "feed-forward": (layer.self_attn.proj, layer.cross_attn.proj)}[name]
        silence(*others)
        with torch.no_grad():
            branch = not_implemented_guard(layer, y, memory, src_mask, tgt_mask) - y
        zero_fraction_check(branch, f"decoder layer's {name}",
                            "y = y + self.drop(sublayer(...)) for the self- and the cross-attention; the "
                            "feed-forward drops its own output, so y = y + self.mlp(self.ln_3(y))")
