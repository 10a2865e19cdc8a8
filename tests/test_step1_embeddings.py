"""Step 1 — embeddings, GPT-2 init and weight tying. Run alone: `pytest -k step1`.

Everything here uses step-1 code only: the init and tying tests build the model's
parameter layout out of plain nn.Linear / nn.LayerNorm and the student's Embeddings
(`_probes_step1.gpt_skeleton`), so an unfinished step 3 cannot fail step 1. The learner's
code runs only inside the probes of tests/_probes_step1.py (`_support.probe`).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import _probes_step1 as P
from _support import assert_close, oracle, probe, recorded
from strategies import (
    SEEDS, dropout_mistake, expect, gpt_configs, name_the_mistake, one_thread, random_state_from_layout, token_batches,
)

pytestmark = pytest.mark.usefixtures(one_thread.__name__)  # tiny tensors: see strategies.one_thread
S1 = "step1_embeddings"


@recorded
def reference_embeddings(cfg: dict, state: dict, idx: torch.Tensor) -> torch.Tensor:
    """The reference Embeddings (eval mode) with the weights `state`, applied to `idx`."""
    ref = oracle(S1)
    emb = ref.Embeddings(ref.GPTConfig(**cfg))
    emb.load_state_dict(state)
    emb.eval()
    with torch.no_grad():
        return emb(idx)


# --- Embeddings.forward -----------------------------------------------------------


@given(cfg=gpt_configs(), seed=SEEDS, data=st.data())
def test_step1_embeddings_match_reference(cfg: dict, seed: int, data: st.DataObject) -> None:
    idx = data.draw(token_batches(cfg["vocab_size"], cfg["block_size"]), label="idx")
    # The weights are drawn here, for the names and shapes the learner's module has.
    state = random_state_from_layout(probe(P.embeddings_layout, cfg), seed, std=1.0)
    out = probe(P.embeddings_eval, cfg, state, idx)
    expected = reference_embeddings(cfg, state, idx)
    tok, pos = state["token.weight"][idx], state["position.weight"][: idx.shape[1]]
    hint = name_the_mistake(out, {
        "the output is the token vectors alone: no position vector was added, so word order is invisible": tok,
        "the output is the position vectors alone: the token vectors were not added": pos.expand_as(tok),
        "positions are counted from the end or reversed: position t must use row t of self.position":
            tok + pos.flip(0),
    }, default="Expected each token's vector plus its position's vector (a sum, so C stays n_embd), with "
               "dropout that is off in eval mode. Look at Embeddings.forward (step1_embeddings.py); "
               "stuck? `nox -s hint -- 1`")
    # Exact same gather + add in fp32 on CPU: only summation order could differ.
    assert_close(out, expected, atol=1e-6, rtol=1e-6,
                 what=f"Embeddings({cfg}) on ids of shape {tuple(idx.shape)}", hint=hint)


def test_step1_sequence_longer_than_block_size_raises_valueerror() -> None:
    cfg = dict(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.0)
    state = random_state_from_layout(probe(P.embeddings_layout, cfg), 0, std=1.0)
    idx = torch.zeros(2, 9, dtype=torch.long)
    try:
        probe(P.embeddings_eval, cfg, state, idx)
    except ValueError as e:
        expect("block_size" in str(e) or "8" in str(e), (
            f"the ValueError for 9 tokens with block_size=8 should say what is wrong: name block_size (the "
            f"limit, 8) so the user knows to crop the input; got: {e}"
        ))
    except Exception as e:  # noqa: BLE001 - the point is to report which error came instead
        pytest.fail(
            f"Embeddings.forward on 9 tokens with block_size=8 raised {type(e).__name__}: {e}. Expected a "
            f"ValueError, raised before any lookup, that says the input is longer than block_size and must be "
            f"cropped: an IndexError from deep inside nn.Embedding tells a user nothing.",
            pytrace=False,
        )
    else:
        pytest.fail("Embeddings.forward accepted 9 tokens with block_size=8 and returned without error: expected "
                    "a ValueError, because there is no position embedding past block_size - 1 "
                    "(Embeddings.forward, step1_embeddings.py)", pytrace=False)
    # The longest input allowed, block_size tokens, is accepted and summed as usual.
    idx = torch.arange(16).reshape(2, 8)
    try:
        out = probe(P.embeddings_eval, cfg, state, idx)
    except ValueError as e:
        pytest.fail(f"Embeddings.forward refused 8 tokens with block_size=8 ({e}): a sequence of exactly "
                    f"block_size tokens has a position embedding for every token; only longer ones are refused "
                    f"(Embeddings.forward, step1_embeddings.py)", pytrace=False)
    assert_close(out, state["token.weight"][idx] + state["position.weight"][:8], atol=1e-6, rtol=1e-6,
                 what=f"Embeddings({cfg}) on 8 tokens, the longest input allowed",
                 hint="Expected each token's vector plus its position's vector. Look at Embeddings.forward "
                      "(step1_embeddings.py)")


@pytest.mark.parametrize(("n_embd", "n_head"), [(10, 3), (192, 5)])
def test_step1_config_rejects_n_embd_not_divisible_by_n_head(n_embd: int, n_head: int) -> None:
    with pytest.raises(ValueError, match="divisible") as info:
        probe(P.config_fields, dict(n_embd=n_embd, n_head=n_head))
    expect(str(n_embd) in str(info.value) and str(n_head) in str(info.value), (
        f"the error should name both numbers so the user can fix them; got: {info.value}"
    ))


# --- init_weights -----------------------------------------------------------------

# Each std is estimated from >= 4096 samples: the estimate's relative standard error is
# about 1/sqrt(2N) <= 1.1%, so a 10% tolerance is ~9 standard errors (never flaky),
# while the mistakes it must catch are off by a factor >= 2.8.
STD_RTOL = 0.10


def _check_std(name: str, w: torch.Tensor, expected: float, n_layer: int) -> None:
    got = w.detach().double().std().item()
    mean = w.detach().double().mean().item()
    if abs(got - expected) <= STD_RTOL * expected and abs(mean) <= 5 * expected / math.sqrt(w.numel()):
        return
    if abs(got - 1.0) < 0.1:
        why = "std ≈ 1 is PyTorch's default N(0, 1) nn.Embedding init: this embedding was not re-initialised"
    elif w.dim() == 2 and abs(got - 1 / math.sqrt(3 * w.shape[1])) < 0.1 * got:
        why = ("this is PyTorch's default nn.Linear init (uniform, std 1/sqrt(3*fan_in)): this Linear was not "
               "re-initialised")
    elif got < 1e-8:
        why = "the tensor is constant: it was not drawn from a normal distribution at all"
    elif name.endswith(".proj.weight") and abs(got - 0.02) < 0.1 * 0.02:
        why = (f"this is the plain 0.02: residual projections (names ending in '.proj') get a std smaller by a "
               f"factor sqrt(2 * n_layer), here {expected:.5f}, because each block adds two of them to the "
               f"residual stream")
    elif not name.endswith(".proj.weight") and abs(got - 0.02 / math.sqrt(2 * n_layer)) < 0.1 * expected:
        why = "this is the residual projections' smaller std, but only the modules named '*.proj' get it"
    else:
        why = ("GPT-2 init draws every Linear and Embedding weight from a normal distribution with mean 0 and "
               "std 0.02, and the '*.proj' ones with a std smaller by sqrt(2 * n_layer); stuck? `nox -s hint -- 1`")
    pytest.fail(f"after init_weights, {name} has mean {mean:.4g} and std {got:.5f}; expected mean 0 and "
                f"std {expected:.5f} (±{STD_RTOL:.0%}). Look at init_weights (step1_embeddings.py): {why}",
                pytrace=False)


def _skeleton_layer_names(n_layer: int) -> set[str]:
    """The Linear and LayerNorm layers of TinyGPT's layout (`_probes_step1.gpt_skeleton`): the
    probes report on the model after init_weights, and every one of these must be there."""
    per_block = ("ln_1", "ln_2", "attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    return {f"blocks.{i}.{part}" for i in range(n_layer) for part in per_block} | {"ln_f", "lm_head"}


def _expect_whole_skeleton(layers: list[dict], n_layer: int) -> None:
    missing = sorted(_skeleton_layer_names(n_layer) - {layer["name"] for layer in layers})
    kinds = {layer["kind"] for layer in layers}
    expect(not missing and "Embedding" in kinds, (
        f"the layers that came back after init_weights are not TinyGPT's (missing {missing[:5]}, kinds "
        f"{sorted(kinds)}): the test's model did not come back whole, so init_weights cannot be checked"))


def test_step1_init_weights_follows_gpt2_statistics() -> None:
    cfg = dict(vocab_size=2000, block_size=128, n_layer=4, n_head=4, n_embd=64, dropout=0.0)
    # LayerNorms start at 0.5 (weight and bias), so leaving them alone shows
    layers = probe(P.init_weights_on_skeleton, cfg, 0.5)
    _expect_whole_skeleton(layers, cfg["n_layer"])
    resid_std = 0.02 / math.sqrt(2 * cfg["n_layer"])
    for layer in layers:
        name, kind, weight, bias = layer["name"], layer["kind"], layer["weight"], layer["bias"]
        if kind in ("Linear", "Embedding"):
            _check_std(f"{name}.weight", weight, resid_std if name.endswith(".proj") else 0.02, cfg["n_layer"])
        if kind == "Linear" and bias is not None:
            expect(bool(torch.all(bias == 0)), f"after init_weights, {name}.bias should be all zeros (GPT-2 "
                   f"init), got values up to {bias.abs().max().item():.3g}: this bias was left as PyTorch made it")
        if kind == "LayerNorm":
            expect(bool(torch.all(weight == 1) and torch.all(bias == 0)), (
                f"after init_weights, LayerNorm {name} should have weight 1 and bias 0 (it starts as the identity "
                f"up to normalisation); got weight mean {weight.mean().item():.3g}, bias mean {bias.mean().item():.3g}"
            ))


def test_step1_init_weights_handles_a_model_without_biases() -> None:
    """GPTConfig(bias=False): no Linear and no LayerNorm has a bias (it is None), which
    the docstring allows for ("either may be absent when bias=False")."""
    cfg = dict(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=False)
    try:  # LayerNorm weights start at 0.5, so a LayerNorm left alone shows
        layers = probe(P.init_weights_on_skeleton, cfg, 0.5)
    except (AttributeError, TypeError, RuntimeError) as e:
        problem, layers = f"{type(e).__name__}: {e}", []
    else:
        problem = ""
    expect(not problem, (
        f"init_weights crashed on a model built with bias=False ({problem}): there its Linear and LayerNorm "
        f"layers have bias None, and a missing bias has nothing to initialise. Look at init_weights "
        f"(step1_embeddings.py)"))
    _expect_whole_skeleton(layers, cfg["n_layer"])
    for layer in layers:
        if layer["kind"] == "LayerNorm":
            name, weight, bias = layer["name"], layer["weight"], layer["bias"]
            expect(bias is None and bool(torch.all(weight == 1)), (
                f"after init_weights on a bias=False model, LayerNorm {name} should have weight 1 and no bias; "
                f"got weight mean {weight.mean().item():.3g} and bias {bias!r}"))


# --- tie_weights ------------------------------------------------------------------

# The lab's model, GPTConfig()'s defaults: V=50257, T=256, 6 layers, 6 heads, C=192, with biases.
LAB_MODEL = dict(vocab_size=50257, block_size=256, n_layer=6, n_head=6, n_embd=192, bias=True)


def test_step1_tie_weights_shares_one_parameter() -> None:
    g = torch.Generator().manual_seed(0)
    emb_weight, head_weight = torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g)
    tied = probe(P.tie_weights_on, emb_weight, head_weight)
    if tied["same_parameter"]:
        # Either direction of tying is right; the shared matrix keeps one side's values.
        shared = tied["head_weight"]
        expect(torch.equal(shared, emb_weight) or torch.equal(shared, head_weight), (
            "after tie_weights, lm_head and the token embedding are one Parameter, but it holds neither the "
            "embedding's values nor the output layer's: tying shares a matrix, it does not change its values. Look "
            "at tie_weights (step1_embeddings.py)"))
        return
    if tied["same_memory"]:
        why = ("lm_head.weight shares memory with the token embedding but is a different nn.Parameter object "
               "(a new nn.Parameter around the same data?): the optimizer updates the matrix twice and "
               "count_parameters counts it twice")
    elif (tied["head_weight"].shape == tied["embedding_weight"].shape
          and torch.equal(tied["head_weight"], tied["embedding_weight"])):
        why = ("lm_head.weight is a copy of the embedding, not the same Parameter: the two matrices drift apart "
               "at the first optimizer step")
    else:
        why = "lm_head.weight is not tied to the token embedding at all: the two hold different values"
    pytest.fail(f"after tie_weights, {why}. They must be one Parameter object. Look at tie_weights "
                f"(step1_embeddings.py)", pytrace=False)


def test_step1_tied_weights_get_one_gradient_from_both_uses() -> None:
    # Both layers start with the same values, so the shared gradient is the same whichever way they are tied.
    weight = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    idx = torch.tensor([[1, 2, 3]])
    got = probe(P.tied_gradient, weight, idx)
    expect(got["one_grad"], (
        "the embedding and the output layer should have one shared .grad (it sums the gradients of both uses); "
        + ("the output layer got no gradient at all" if not got["head_has_grad"] else
           "they got two separate .grad tensors, so they are two Parameters, not one")
        + ". Look at tie_weights (step1_embeddings.py)"
    ))
    w = weight.clone().requires_grad_()
    (w[idx] @ w.T).sum().backward()  # head(emb(idx)).sum() with one matrix w for both uses
    assert_close(got["head_grad"], w.grad, atol=1e-5, rtol=1e-5,
                 what="the shared .grad after head(emb(idx)).sum().backward()",
                 hint="It should be the sum of the gradients of both uses, the lookup and the output layer. Look "
                      "at tie_weights (step1_embeddings.py)")


def test_step1_lab_model_has_12_4M_parameters_once_tied() -> None:
    cfg = LAB_MODEL
    V, C, L = cfg["vocab_size"], cfg["n_embd"], cfg["n_layer"]
    # token + position embeddings, per block 12C² weights + 13C biases/norms, final norm; head tied.
    tied = V * C + cfg["block_size"] * C + L * (12 * C * C + 13 * C) + 2 * C
    got = probe(P.tied_parameter_count, cfg)
    expect(got == tied, (
        f"the lab model should have {tied:,} distinct parameters once tied, got {got:,}"
        + (f": that is {got - tied:,} = V*C too many — lm_head and the token embedding are still two "
           f"matrices (untied or tied by copying)" if got - tied == V * C else "")
    ))


# --- init + tying together: the first loss ----------------------------------------


def test_step1_initial_loss_of_tied_head_is_about_ln_vocab() -> None:
    """At init the loss must be ≈ ln V: the model is unsure about every word.

    The logits are lm_head(ln_f(x)); ln_f's output has unit variance per feature
    whatever the blocks added, so the logit scale (hence the first loss) is set by the
    tied head's init alone. We skip the blocks (step 3) and score the embeddings
    through ln_f and the tied head: std-0.02 weights give logits of std ~0.02*sqrt(C)
    ≈ 0.3 and a loss ≈ ln V; N(0, 1) gives logits of std ~sqrt(C) ≈ 14, the own token's
    ~C/sqrt(2), and a loss of ~130.
    """
    cfg = dict(LAB_MODEL, dropout=0.0)  # the lab's model: this test is about V = 50257
    V = cfg["vocab_size"]
    idx = torch.randint(0, V, (2, 64), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)  # init_weights draws from the global RNG
    logits = probe(P.tied_logits_at_init, cfg, idx)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), idx[:, 1:].reshape(-1)).item()
    ln_v = math.log(V)
    # 0.5 nats: a correct init gives ln V + ~0.05 (logit variance / 2); N(0, 1) gives 50+.
    expect(abs(loss - ln_v) < 0.5, (
        f"the initial loss of the tied output layer is {loss:.2f}, expected ≈ ln({V}) = {ln_v:.2f} "
        f"(±0.5): at init the model should spread its bets evenly. "
        + ("A loss this high means huge logits: the tied token embedding kept PyTorch's N(0, 1) init "
           "instead of std 0.02 (init_weights)." if loss > ln_v + 5 else
           "Check init_weights (std 0.02) and tie_weights (step1_embeddings.py).")
    ))


# --- train mode: dropout on the embedding output ----------------------------------


def test_step1_embeddings_apply_dropout_to_their_output_in_train_mode() -> None:
    """Train mode: Dropout(config.dropout) on token + position; eval mode: none.

    Checked by behaviour, whatever the code looks like: about p of the output entries
    are exactly 0 and the others are the eval output / (1 - p).
    """
    p = 0.5
    cfg = dict(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=64, dropout=p)
    state = random_state_from_layout(probe(P.embeddings_layout, cfg), 0, std=1.0)
    idx = torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(0))
    outs = probe(P.embeddings_train_and_eval, cfg, state, idx)  # eval, then train twice
    ev, tr, again = outs["eval"], outs["train"], outs["again"]
    problem = dropout_mistake(tr, ev, p, "Embeddings' output",
                              "Return self.drop(self.token(idx) + self.position(pos)): dropout on the sum.")
    expect(problem is None, problem or "")
    expect(not torch.equal(tr, again),
           "two train-mode calls zeroed exactly the same entries: dropout must draw a new mask every call "
           "(use self.drop, an nn.Dropout)")
    assert_close(ev, state["token.weight"][idx] + state["position.weight"][:16], atol=1e-6, rtol=1e-6,
                 what=f"Embeddings({cfg}) in eval mode",
                 hint="Expected each token's vector plus its position's vector, with no dropout in eval mode. "
                      "Look at Embeddings.forward (step1_embeddings.py)")
