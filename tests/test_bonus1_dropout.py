"""Bonus 1 in train mode: dropout where the Annotated Transformer puts it.

On the attention probabilities, and on each sub-layer's output before the residual
addition (the feed-forward's own dropouts are given in `FeedForward`); eval mode is
deterministic (the other bonus 1 tests run in eval mode). Graded by behaviour, for
any code with the same placement and any use of the RNG: a layer whose other
sub-layers output exactly 0 is x + that sub-layer's branch, so `layer(x) - x` shows
the branch entry by entry; a dropped branch entry is exactly 0.

Your code runs only inside the probes of tests/_probes_bonus1.py (`probe`): the tests
draw the weights (the other sub-layers silenced there) and the inputs, and check the
branches that come back; in eval mode each layer must also give what PyTorch's own
pre-norm layer gives with the same weights.
"""
from __future__ import annotations

import pytest
import torch

import _probes_bonus1 as probes
from _bonus1_checks import torch_decoder_layer, torch_encoder_layer, weights
from _support import assert_close, probe
from strategies import expect

P = 0.5
C, H = 16, 2
CONFIG = dict(src_vocab_size=11, tgt_vocab_size=11, max_len=16, n_layer=1, n_head=H, n_embd=C, dropout=P, bias=True)


def silence(state: dict, *linears: str) -> dict:
    """The weights `state` with these sub-layers made to output exactly 0: their output projections zeroed."""
    state = dict(state)
    for name in linears:
        state[f"{name}.weight"] = torch.zeros_like(state[f"{name}.weight"])
        state[f"{name}.bias"] = torch.zeros_like(state[f"{name}.bias"])
    return state


def zero_fraction_check(branch: torch.Tensor, what: str, fix: str) -> None:
    frac = (branch == 0).double().mean().item()
    tol = 7 * (P * (1 - P) / branch.numel()) ** 0.5  # 7 standard errors of the fraction
    expect(abs(frac - P) <= tol, (
        f"in train mode (dropout={P}) {frac:.1%} of the {what} branch's entries are exactly 0, expected about "
        f"{P:.0%}: " + ("none are dropped — " if frac < tol else "dropped more than once, or with another p — ")
        + fix))


def eval_check(got: torch.Tensor, want: torch.Tensor, what: str, see: str) -> None:
    """In eval mode the layer must give what PyTorch's own pre-norm layer gives with the same weights."""
    assert_close(got, want, atol=1e-5, rtol=1e-4, what=f"the {what} in eval mode", hint=(
        "with dropout off the layer should give what torch.nn's pre-norm layer with the same weights gives. "
        f"This is not about dropout: the eval-mode tests of test_bonus1_encoder_decoder.py ({see}) say what "
        "differs (a mask, a residual, a LayerNorm, where keys and values come from); fix those first"))


def test_bonus1_attention_probabilities_have_dropout_in_train_mode():
    """All values equal u and proj is the identity: eval gives u at every query; in
    train mode a query's output is u * (its kept probabilities / (1 - p)), a factor
    that varies from query to query only if the probabilities are dropped."""
    u = 1.0 + torch.arange(C, dtype=torch.float32) / C
    state = weights("MultiHeadAttention", CONFIG, 0)
    state.update({"v.weight": torch.zeros(C, C), "v.bias": u, "proj.weight": torch.eye(C), "proj.bias": torch.zeros(C)})
    torch.manual_seed(0)
    x = torch.randn(1, 5, C).expand(2048, -1, -1).contiguous()
    ctx = torch.randn(1, 7, C).expand(2048, -1, -1).contiguous()
    ev, tr = probe(probes.forward, "MultiHeadAttention", CONFIG, state,
                   [(False, (x[:1], ctx[:1], None)), (True, (x, ctx, None))])
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
    torch.manual_seed(1)
    x = torch.randn(16, 8, C)
    mask = torch.ones(16, 1, 8, dtype=torch.bool)
    for seed, name in enumerate(("self-attention", "feed-forward")):
        state = weights("EncoderLayer", CONFIG, seed)
        state = silence(state, "mlp.proj") if name == "self-attention" else silence(state, "self_attn.proj")
        train, ev = probe(probes.forward, "EncoderLayer", CONFIG, state, [(True, (x, mask)), (False, (x, mask))])
        branch = train - x
        zero_fraction_check(branch, f"encoder layer's {name}",
                            "x = x + self.drop(self.self_attn(h, h, src_mask)); the feed-forward (FeedForward) "
                            "drops its own output, so x = x + self.mlp(self.ln_2(x))")
        with torch.no_grad():
            want = torch_encoder_layer(state, CONFIG)(x)
        eval_check(ev, want, f"encoder layer with only its {name} on",
                   see="test_encoder_matches_torch_transformer_encoder, test_encoder_looks_both_ways")


def test_bonus1_decoder_layer_drops_each_sublayer_output():
    torch.manual_seed(2)
    y, memory = torch.randn(16, 6, C), torch.randn(16, 7, C)
    src_mask = torch.ones(16, 1, 7, dtype=torch.bool)
    tgt_mask = torch.ones(6, 6, dtype=torch.bool).tril().expand(16, 6, 6)
    for seed, name in enumerate(("self-attention", "cross-attention", "feed-forward")):
        others = {"self-attention": ("cross_attn.proj", "mlp.proj"),
                  "cross-attention": ("self_attn.proj", "mlp.proj"),
                  "feed-forward": ("self_attn.proj", "cross_attn.proj")}[name]
        state = silence(weights("DecoderLayer", CONFIG, seed), *others)
        args = (y, memory, src_mask, tgt_mask)
        train, ev = probe(probes.forward, "DecoderLayer", CONFIG, state, [(True, args), (False, args)])
        branch = train - y
        zero_fraction_check(branch, f"decoder layer's {name}",
                            "y = y + self.drop(sublayer(...)) for the self- and the cross-attention; the "
                            "feed-forward drops its own output, so y = y + self.mlp(self.ln_3(y))")
        with torch.no_grad():
            want = torch_decoder_layer(state, CONFIG)(y, memory, tgt_mask=~torch.ones(6, 6, dtype=torch.bool).tril())
        eval_check(ev, want, f"decoder layer with only its {name} on",
                   see="test_decoder_matches_torch_transformer_decoder, test_decoder_cannot_see_future_targets, "
                       "test_decoder_reads_the_real_source_and_ignores_source_padding")
