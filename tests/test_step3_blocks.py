"""Step 3 — attention, MLP, pre-norm blocks and TinyGPT. Run alone: `pytest -k step3`.

Your step 3 runs on top of the reference's steps 1, 2 and 4 here (`with_reference_deps`),
so an unfinished earlier step cannot fail these tests. Every comparison loads the same
random weights into your module and the reference's and runs both in eval mode. The
loss TinyGPT returns is checked against a stand-in for step 4's `next_token_loss` that
records what it was given, so it is graded before step 4 is written.

Your code runs only inside the probes of tests/_probes_step3.py (`probe`); the tests
draw the weights and inputs, and compare what comes back with their own answers.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st

import _probes_step3 as probes
from _support import assert_close, oracle, probe, recorded
from strategies import (
    SEEDS, TIED_PARAMETERS, _random_value, expect, gpt_configs, name_the_mistake, one_thread, randn,
    random_state_from_layout, token_batches,
)

pytestmark = pytest.mark.usefixtures(one_thread.__name__)  # tiny tensors: see strategies.one_thread
S1, S3 = "step1_embeddings", "step3_blocks"
# fp32 on CPU; the reference and a correct solution may order the sums differently
# (sdpa's fused kernel vs the explicit softmax), which moves results by ~1e-6.
ATOL, RTOL = 1e-5, 1e-4
IMPLS = ["manual", "sdpa"]


@recorded
def reference_output(kind: str, cfg: dict, state: dict, x: torch.Tensor) -> torch.Tensor:
    """The reference's `kind` ("MLP", "CausalSelfAttention", "Block", "TinyGPT") with
    weights `state`, in eval mode, applied to `x`; for TinyGPT, the logits."""
    ref = oracle(S3)
    module = getattr(ref, kind)(oracle(S1).GPTConfig(**cfg))
    module.load_state_dict(state)
    module.eval()
    with torch.no_grad():
        out = module(x)
    return out[0] if kind == "TinyGPT" else out


def random_state_by_name_from_layout(layout: dict, seed: int, std: float = 0.2, tied: dict[str, str] | None = None,
                                     owner: str = "the module") -> dict[str, torch.Tensor]:
    """`strategies.random_state_by_name`'s values for a module with this `module_layout`:
    every parameter name (tied ones listed under both names) gets a draw in that order,
    except the names in `tied`, which take the values of the name they map to. Which
    Parameter objects the module shares never matters."""
    tied = tied or {}
    g = torch.Generator().manual_seed(seed)
    layer_norms = set(layout["layer_norms"])
    names = {name for name, _, _ in layout["params"]}
    for name, source in tied.items():
        if name not in names or source not in names:
            raise ValueError(f"random_state_by_name: {owner} has no parameter {name!r} or {source!r} to tie; its "
                             f"names: {sorted(names)}")
    state: dict[str, torch.Tensor] = {}
    for name, shape, _ in layout["params"]:
        if name in tied or name in state:
            continue
        state[name] = _random_value(name, torch.Size(shape), g, std, layer_norms)
    for name, source in tied.items():
        state[name] = state[source]
    return {name: state[name] for name, _, _ in layout["params"]}


def weights(kind: str, cfg: dict, seed: int) -> dict:
    """Deterministic random weights for the student's `kind`, drawn here for the names and
    shapes of the module the student's code builds.

    The weights depend only on `cfg` and `seed` (names and shapes come from the given
    `__init__`; TinyGPT's head takes the token embedding's values by name), never on
    whose step 1 tied them: they key `reference_output`'s stored answers in the handout.
    """
    return random_state_by_name_from_layout(probe(probes.layout, kind, cfg), seed,
                                            tied=TIED_PARAMETERS.get(kind), owner=kind)


def test_step3_test_weights_depend_only_on_the_config_and_seed() -> None:
    """The random weights step 3's comparisons load depend on the config and the seed only
    (names and shapes from the given `__init__`), never on how step 1 tied the head: in the
    handout your own step 1 builds TinyGPT, and other weights would find no stored answer."""
    cfg = dict(vocab_size=13, block_size=6, n_layer=2, n_head=2, n_embd=8, dropout=0.1, bias=True, attn_impl="manual")
    ties = list(probes.TIE_VARIANTS)  # how a step 1 may have tied TinyGPT's head, right or wrong
    layouts = probe(probes.tinygpt_layouts_by_tie, cfg, ties)
    expect(len(layouts) == len(ties), f"expected a layout for each of {ties}, got {len(layouts)}")
    states = {}
    for what, layout in zip(ties, layouts):
        states[what] = random_state_by_name_from_layout(layout, 3, tied=TIED_PARAMETERS["TinyGPT"], owner="TinyGPT")
        if what == "tied":  # the values correct code has always been graded on
            by_identity = random_state_from_layout(layout, 3)
            expect(by_identity.keys() == states[what].keys()
                   and all(torch.equal(by_identity[k], states[what][k]) for k in by_identity),
                   "random_state_by_name differs from random_state on a tied TinyGPT (tests/strategies.py)")
    want = states["tied"]
    for what, state in states.items():
        expect(state.keys() == want.keys() and all(torch.equal(state[k], want[k]) for k in want), (
            f"the test's random weights for a TinyGPT whose head is {what} differ from those of a tied one "
            f"(parameters {sorted(set(state) ^ set(want)) or 'with other values'}): TinyGPT's parameter names or "
            f"shapes are not those of the given __init__. Keep TinyGPT.__init__ (step3_blocks.py) as given"))


def activations(cfg: dict, seed: int, batch: int, T: int) -> torch.Tensor:
    return randn(batch, T, cfg["n_embd"], seed=seed)


def linear(state: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """The given `nn.Linear` called `name` (`qkv`, `proj`, `fc`), with its weights from `state`, on x."""
    return F.linear(x, state[f"{name}.weight"], state.get(f"{name}.bias"))


def attention_variant(state: dict, n_head: int, x: torch.Tensor, *, causal: bool = True,
                      split: str = "right", rejoin: str = "right", swap_qk: bool = False) -> torch.Tensor:
    """Attention computed by the test with the module's own Linear layers (the weights
    `state` it loaded), optionally with one classic mistake, so a failure can say which
    mistake it looks like."""
    B, T, C = x.shape
    H = n_head
    q, k, v = linear(state, "qkv", x).split(C, dim=2)
    if swap_qk:  # the queries used as keys and the keys as queries: transposed scores
        q, k = k, q
    if split == "right":
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
    else:  # reshaped straight to (B, H, T, D): mixes positions and channels
        q, k, v = (t.reshape(B, H, T, C // H) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    y = y.transpose(1, 2).reshape(B, T, C) if rejoin == "right" else y.reshape(B, T, C)
    return linear(state, "proj", y)


# --- eval mode is deterministic ------------------------------------------------------------
#
# First in the file: the comparisons below run in eval mode, and a dropout that still
# acts there makes them fail with a message about the wrong thing.

EVAL_CFG = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.5, bias=True)
EVAL_WHERE = {
    "MLP": "MLP.forward",
    "CausalSelfAttention": "the {impl} path of CausalSelfAttention.forward",
    "Block": "Block.forward, and the attention and MLP it calls",
    "TinyGPT": "TinyGPT.forward, and the modules it calls",
}


@pytest.mark.parametrize("kind", list(EVAL_WHERE))
def test_step3_eval_mode_is_deterministic(kind: str) -> None:
    """In eval mode dropout is off: the same input gives the same output every time,
    whatever the random state (dropout=0.5 here, so an active dropout cannot hide)."""
    impls = ["manual"] if kind == "MLP" else IMPLS
    for impl in impls:
        cfg = {**EVAL_CFG, "attn_impl": impl}
        state = weights(kind, cfg, seed=7)
        if kind == "TinyGPT":
            x = torch.randint(0, cfg["vocab_size"], (2, 8), generator=torch.Generator().manual_seed(7))
        else:
            x = activations(cfg, 7, 2, 8)
        # In eval mode, with a different random state (torch.manual_seed(0), then 1) for each call.
        outs = probe(probes.outputs, kind, cfg, state, [(x, False, rng) for rng in (0, 1)])
        a, b = (out[0] if kind == "TinyGPT" and isinstance(out, tuple) else out for out in outs)
        expect(isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape,
               f"{kind} ({impl} attention) should return a tensor of the same shape on every call, got "
               f"{type(a).__name__} and {type(b).__name__}")
        same = (a == b) | (a.isnan() & b.isnan())  # a NaN in the same place both times is deterministic too
        diff = (a - b).abs()[~same].max().item() if not bool(same.all()) else 0.0
        expect(bool(same.all()), (
            f"{kind} ({impl} attention, dropout={EVAL_CFG['dropout']}) in eval mode gave two different outputs for "
            f"the same input (max difference {diff:.3g}): dropout is active in eval mode. The nn.Dropout modules "
            f"switch themselves off in eval mode; a dropout probability handed to a function (F.dropout, "
            f"F.scaled_dot_product_attention's dropout_p) does not, so it must depend on `self.training`. "
            f"Look at {EVAL_WHERE[kind].format(impl=impl)} (step3_blocks.py)"))
        # No comparison with the reference here: the tests below make it, each naming its mistake (a
        # wrong value failing this first test would hide their hints behind a generic message).


# --- MLP ------------------------------------------------------------------------------


@given(cfg=gpt_configs(), seed=SEEDS, T=st.integers(1, 8))
def test_step3_mlp_matches_reference(cfg: dict, seed: int, T: int) -> None:
    state = weights("MLP", cfg, seed)
    x = activations(cfg, seed, 2, T)
    out = probe(probes.forward, "MLP", cfg, state, x)
    with torch.no_grad():
        fc = linear(state, "fc", x)  # the given self.fc, with the weights loaded into it
        hint = name_the_mistake(out, {
            "the activation is missing: the two Linear layers were applied back to back": linear(state, "proj", fc),
            "ReLU instead of GPT-2's tanh-approximate GELU (the given self.act)": linear(state, "proj", F.relu(fc)),
            "the exact GELU instead of GPT-2's tanh approximation (the given self.act)":
                linear(state, "proj", F.gelu(fc)),
        }, default="expected the given layers in the docstring's order: expand to 4C, GPT-2's GELU, project back "
                   "to C, dropout. Look at MLP.forward (step3_blocks.py); stuck? `nox -s hint -- 3`")
    assert_close(out, reference_output("MLP", cfg, state, x), atol=ATOL, rtol=RTOL,
                 what=f"MLP({cfg}) on x of shape {tuple(x.shape)}", hint=hint)


# --- CausalSelfAttention ---------------------------------------------------------------


def _check_attention(cfg: dict, seed: int, T: int, extra: str) -> None:
    state = weights("CausalSelfAttention", cfg, seed)
    x = activations(cfg, seed, 2, T)
    out = probe(probes.forward, "CausalSelfAttention", cfg, state, x)
    H = cfg["n_head"]
    with torch.no_grad():
        hint = name_the_mistake(out, {
            f"attention is not causal ({cfg['attn_impl']} path): every position also attends to the future":
                attention_variant(state, H, x, causal=False),
            "the heads are split wrongly: the (B, T, C) tensor was reshaped straight to (B, H, T, D), which mixes "
            "positions into heads; head h must own channels h*D .. (h+1)*D - 1 of every position":
                attention_variant(state, H, x, split="wrong"),
            "the heads are re-joined wrongly: the (B, H, T, D) output was flattened straight to (B, T, C), which "
            "mixes positions; each position's heads must go back side by side in channel order":
                attention_variant(state, H, x, rejoin="wrong"),
            "the queries and keys are swapped (in the split of qkv's output, or in the call that scores them): "
            "query i is scored against key j, and qkv's first C output features are the queries, the next C "
            "the keys": attention_variant(state, H, x, swap_qk=True),
        }, default="expected each head to attend causally over its own D channels (scaled scores, each query's "
                   "weights over the keys summing to 1), the heads put back side by side, then proj. " + extra
                   + " Look at CausalSelfAttention.forward (step3_blocks.py); stuck? `nox -s hint -- 3`")
    assert_close(out, reference_output("CausalSelfAttention", cfg, state, x), atol=ATOL, rtol=RTOL,
                 what=f"CausalSelfAttention({cfg}) on x of shape {tuple(x.shape)}", hint=hint)


@given(cfg=gpt_configs(max_heads=1), seed=SEEDS, T=st.integers(1, 10))
def test_step3_attention_matches_reference_with_one_head(cfg: dict, seed: int, T: int) -> None:
    _check_attention(cfg, seed, T, "With one head there is no split to get wrong: check which of qkv's 3C "
                                   "output features are the queries, keys and values (in that order), the "
                                   "causal mask, and that the softmax runs over the keys.")


@given(cfg=gpt_configs(min_heads=2), seed=SEEDS, T=st.integers(2, 10))
@example(cfg=dict(vocab_size=11, block_size=8, n_layer=1, n_head=3, n_embd=12, dropout=0.1, bias=True,
                  attn_impl="manual"), seed=0, T=6)
def test_step3_attention_matches_reference_with_several_heads(cfg: dict, seed: int, T: int) -> None:
    _check_attention(cfg, seed, T, "If the one-head test passes, look at how C is split into heads (head h "
                                   "owns channels h*D .. (h+1)*D - 1 at every position) and joined back.")


# --- Block -------------------------------------------------------------------------------


@given(cfg=gpt_configs(), seed=SEEDS, T=st.integers(1, 8))
def test_step3_block_matches_reference(cfg: dict, seed: int, T: int) -> None:
    state = weights("Block", cfg, seed)
    x = activations(cfg, seed, 2, T)
    # The student's Block on x, and what its own sub-layers give when wired with a classic mistake.
    out, wrong = probe(probes.block_and_its_variants, cfg, state, x)
    mistakes = {
        "no attention residual": "the residual around attention is missing: the attention output replaced the "
                                 "stream instead of being added to it",
        "no MLP residual": "the residual around the MLP is missing: the MLP output replaced the stream instead of "
                           "being added to it",
        "no residuals": "both residual additions are missing: each sub-layer's output replaced the stream",
        "post-norm": "post-norm (LayerNorm after the addition): GPT-2 normalises *before* each sub-layer",
    }
    hint = name_the_mistake(out, {mistakes[k]: v for k, v in wrong.items()},
                            default="expected pre-norm: attention reads ln_1 of the stream, the "
                             "MLP reads ln_2 of it, and each output is added to the stream. Look at Block.forward "
                             "(step3_blocks.py); if the MLP or attention tests fail too, fix those first.")
    assert_close(out, reference_output("Block", cfg, state, x), atol=ATOL, rtol=RTOL,
                 what=f"Block({cfg}) on x of shape {tuple(x.shape)}", hint=hint)


@given(cfg=gpt_configs(max_layers=1), seed=SEEDS)
def test_step3_block_with_zeroed_sublayers_is_the_identity(cfg: dict, seed: int) -> None:
    state = {name: torch.zeros_like(w) if name.startswith(("attn.proj.", "mlp.proj.")) else w
             for name, w in weights("Block", cfg, seed).items()}  # each sub-layer now outputs exactly 0
    x = activations(cfg, seed, 2, cfg["block_size"])
    out = probe(probes.forward, "Block", cfg, state, x)
    why = ("the output is all zeros: both residual additions are missing" if torch.all(out == 0) else
           "a residual addition is missing, or something is applied to x outside the sub-layers")
    # x + 0 + 0 is exactly x in floating point.
    expect(isinstance(out, torch.Tensor) and out.shape == x.shape and torch.equal(out, x),
           f"a Block whose attention and MLP output zeros must return its input unchanged (each sub-layer's output "
           f"is added to the stream, so zeros leave x as it is); {why}. Look at Block.forward (step3_blocks.py)")


# --- TinyGPT ---------------------------------------------------------------------------


@given(cfg=gpt_configs(), seed=SEEDS, data=st.data())
def test_step3_tinygpt_logits_match_reference(cfg: dict, seed: int, data: st.DataObject) -> None:
    state = weights("TinyGPT", cfg, seed)
    idx = data.draw(token_batches(cfg["vocab_size"], cfg["block_size"]), label="idx")
    # The student's TinyGPT on idx, and the logits its own modules give when wired with a classic mistake.
    out, wrong = probe(probes.tinygpt_and_its_variants, cfg, state, idx)
    expect(isinstance(out, tuple) and len(out) == 2,
           f"TinyGPT.forward should return a tuple (logits, loss), got {type(out).__name__}")
    logits, loss = out
    expect(loss is None, f"TinyGPT.forward without labels should return loss None, got {loss!r}")
    mistakes = {
        "no ln_f": "ln_f is not applied: the last block's output went straight to the output layer",
        "first block only": "only the first block is used: run every block in order",
    }
    hint = name_the_mistake(logits, {mistakes[k]: v for k, v in wrong.items()},
                            default="expected embed -> every block in order -> ln_f -> lm_head. "
                             "Look at TinyGPT.forward (step3_blocks.py); if the Block tests fail too, fix those "
                             "first.")
    assert_close(logits, reference_output("TinyGPT", cfg, state, idx), atol=ATOL, rtol=RTOL,
                 what=f"TinyGPT({cfg}) logits for ids of shape {tuple(idx.shape)}", hint=hint)


@given(cfg=gpt_configs(), seed=SEEDS, data=st.data())
def test_step3_future_tokens_never_change_past_logits(cfg: dict, seed: int, data: st.DataObject) -> None:
    state = weights("TinyGPT", cfg, seed)
    idx = data.draw(token_batches(cfg["vocab_size"], cfg["block_size"], min_len=2), label="idx")
    T = idx.shape[1]
    t = data.draw(st.integers(1, T - 1), label="changed position")
    changed = idx.clone()
    changed[:, t] = (idx[:, t] + 1) % cfg["vocab_size"]
    (before, _), (after, _) = probe(probes.outputs, "TinyGPT", cfg, state, [(idx, False, None), (changed, False, None)])
    # Positions < t compute exactly the same numbers either way; 1e-6 allows for
    # a kernel that blocks its sums differently for different inputs.
    diff = (before[:, :t] - after[:, :t]).abs().amax(dim=(0, 2))
    bad = [p for p in range(t) if diff[p] > 1e-6]
    expect(not bad,
           f"the logits at position {bad[0] if bad else 0} changed (by {diff.max().item():.3g}) when token {t} "
           f"changed ({cfg['attn_impl']} attention): a position can see the future. Check which triangle is "
           f"masked, that the mask is applied, and that the sdpa path is causal too "
           f"(CausalSelfAttention.forward, step3_blocks.py)")
    assert_close(before, reference_output("TinyGPT", cfg, state, idx), atol=ATOL, rtol=RTOL,
                 what=f"TinyGPT({cfg}) logits for ids of shape {tuple(idx.shape)}",
                 hint="test_step3_tinygpt_logits_match_reference names the mistake.")


# --- TinyGPT's loss: step 4's function of these logits and these labels -----------------
#
# Graded without step 4: a test-owned stand-in takes the place of `next_token_loss` in
# the student's step-3 module (as `with_reference_deps` swaps names) and records what it
# was given, so a correct step 3 passes while step 4 is still a stub, in the handout too.
# The stand-in (`LossStandIn` in tests/_probes_step3.py) returns `stand_in_loss(logits,
# labels)`, a 0-dim value made from both arguments.

IGNORE_INDEX = -100  # next_token_loss's default (step4_loss.IGNORE_INDEX)


def labels_unlike_the_ids(idx: torch.Tensor, vocab_size: int, seed: int) -> torch.Tensor:
    """(B, T) labels that differ from the ids: other tokens, and -100 (padding) at the
    first position and at random others, as a padded batch's labels do."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, vocab_size, idx.shape, generator=g)
    labels[torch.rand(idx.shape, generator=g) < 0.3] = IGNORE_INDEX
    labels[:, 0] = IGNORE_INDEX  # so the labels are never the ids (an id is >= 0)
    return labels


@given(cfg=gpt_configs(), seed=SEEDS, data=st.data())
def test_step3_tinygpt_loss_is_next_token_loss_of_its_logits_and_labels(cfg: dict, seed: int,
                                                                         data: st.DataObject) -> None:
    state = weights("TinyGPT", cfg, seed)
    idx = data.draw(token_batches(cfg["vocab_size"], cfg["block_size"], min_len=2), label="idx")
    labels = labels_unlike_the_ids(idx, cfg["vocab_size"], seed)
    where = "Look at TinyGPT.forward (step3_blocks.py)"
    # With autograd on (as in training): the loss must stay connected to the model.
    seen = probe(probes.tinygpt_loss_with_labels, cfg, state, idx, labels)
    out = seen["out"]
    expect(isinstance(out, tuple) and len(out) == 2,
           f"TinyGPT.forward(input_ids, labels) should return a tuple (logits, loss), got {type(out).__name__}")
    logits, loss = out
    calls, results = seen["calls"], seen["results"]
    expect(len(calls) == 1, (
        f"TinyGPT.forward(input_ids, labels) called next_token_loss {len(calls)} times, expected once: the loss is "
        f"step 4's next_token_loss (imported at the top of step3_blocks.py) of the logits and the labels"
        + (", not a cross-entropy computed here" if not calls else "") + f". {where}"))
    got = calls[0]
    shown = f"ids of shape {tuple(idx.shape)}, labels with -100 (padding) at position 0 and elsewhere"
    g_logits, g_labels = got["logits"], got["labels"]
    expect(isinstance(g_logits, torch.Tensor) and isinstance(logits, torch.Tensor), (
        f"TinyGPT.forward should pass a tensor of logits to next_token_loss and return the logits as a tensor; "
        f"got {type(g_logits).__name__} and {type(logits).__name__}. {where}"))
    if g_logits.shape != logits.shape or not torch.equal(g_logits, logits.detach()):
        if g_logits.shape == logits[:, :-1].shape and torch.equal(g_logits, logits.detach()[:, :-1]):
            why = ("the logits were shifted (the last position dropped) before the call, but next_token_loss does "
                   "the shift itself: the loss is shifted twice")
        else:
            why = "they are not the logits that forward returns"
        pytest.fail(f"TinyGPT.forward ({shown}) passed logits of shape {tuple(g_logits.shape)} to next_token_loss "
                    f"and returned logits of shape {tuple(logits.shape)}: {why}. The loss is next_token_loss of the "
                    f"very logits forward returns. {where}", pytrace=False)
    if not (isinstance(g_labels, torch.Tensor) and g_labels.shape == labels.shape and torch.equal(g_labels, labels)):
        if isinstance(g_labels, torch.Tensor) and g_labels.shape == idx.shape and torch.equal(g_labels, idx):
            why = ("next_token_loss got the input ids instead of the labels: they differ whenever padding is "
                   "marked -100 in the labels (or the labels are other tokens), as here")
        elif (isinstance(g_labels, torch.Tensor) and g_labels.shape == labels[:, 1:].shape
              and torch.equal(g_labels, labels[:, 1:])):
            why = "the labels were shifted before the call, but next_token_loss does the shift itself"
        else:
            why = "next_token_loss got other labels than the ones given"
        pytest.fail(f"TinyGPT.forward ({shown}): {why}. The loss is next_token_loss of the logits and the labels "
                    f"argument, as given. {where}", pytrace=False)
    expect(got["ignore_index"] == IGNORE_INDEX, (
        f"TinyGPT.forward passed ignore_index={got['ignore_index']!r} to next_token_loss: the labels mark padding "
        f"with next_token_loss's default, -100, so a pair labelled -100 would count and a real token "
        f"{got['ignore_index']!r} would not. {where}"))
    expect(got["logits_require_grad"], (
        "TinyGPT.forward passed logits that are cut off from the model's parameters (detached, or made under "
        "torch.no_grad()) to next_token_loss: loss.backward() would then train nothing. " + where))
    expect(isinstance(loss, torch.Tensor), (
        f"TinyGPT.forward returned a loss of type {type(loss).__name__}, expected the 0-dim tensor next_token_loss "
        f"returned: training calls loss.backward() on it, which a Python number does not have. {where}"))
    expect(loss.shape == () and torch.equal(loss.detach(), results[0].detach()), (
        f"TinyGPT.forward returned the loss {loss.detach().reshape(-1)[:3].tolist()} (shape {tuple(loss.shape)}), "
        f"but next_token_loss returned {results[0].item():.6g}: the loss forward returns is next_token_loss's "
        f"result itself, unchanged. {where}"))
    expect(seen["loss_requires_grad"], (
        "the loss TinyGPT.forward returned is not connected to the model's parameters (detached, or computed "
        "under torch.no_grad()): loss.backward() would train nothing. " + where))
    # The values: the reference's logits, and the stand-in's loss of them and of these labels.
    expected_logits = reference_output("TinyGPT", cfg, state, idx)
    assert_close(logits, expected_logits, atol=ATOL, rtol=RTOL,
                 what=f"TinyGPT({cfg}) logits for ids of shape {tuple(idx.shape)}, with labels",
                 hint="test_step3_tinygpt_logits_match_reference names the mistake.")
    assert_close(loss, probes.stand_in_loss(expected_logits, labels), atol=ATOL, rtol=RTOL,
                 what=f"the loss TinyGPT.forward returned ({shown})",
                 hint=f"expected next_token_loss of the logits and the labels, as given. {where}")
    # Without labels: no loss, and next_token_loss is not called.
    seen = probe(probes.tinygpt_loss_without_labels, cfg, state, idx)
    out = seen["out"]
    expect(isinstance(out, tuple) and len(out) == 2 and out[1] is None,
           f"TinyGPT.forward(input_ids) without labels should return (logits, None), got "
           f"{type(out).__name__ if not isinstance(out, tuple) else f'(..., {out[1]!r})'}. {where}")
    expect(not seen["calls"],
           f"TinyGPT.forward(input_ids) without labels called next_token_loss {seen['calls']} time(s): without "
           f"labels there is nothing to score, so no loss is computed. {where}")


# --- train mode: where dropout acts ------------------------------------------------------
#
# Graded by behaviour, for any code with the same placement and any use of the RNG: in
# float64, a Block whose MLP outputs exactly 0 is x + attention branch, so
# `block(x) - x` shows the attention's train-mode output entry by entry.

P = 0.5


def train_block(cfg: dict, seed: int) -> tuple[dict, dict]:
    """(config, weights) of a Block with dropout P and random weights whose MLP outputs
    exactly 0; `attention_branch` runs the student's Block with them in float64."""
    cfg = {**cfg, "dropout": P, "bias": True}
    state = weights("Block", cfg, seed)
    state["mlp.proj.weight"] = torch.zeros_like(state["mlp.proj.weight"])
    state["mlp.proj.bias"] = torch.zeros_like(state["mlp.proj.bias"])
    return cfg, state


def attention_branch(cfg: dict, state: dict, x: torch.Tensor, train: bool, seed: int = 0) -> torch.Tensor:
    """block(x) - x for the student's Block (`train_block`) in float64, in train mode or
    eval mode, with torch.manual_seed(seed) just before the call."""
    (out,) = probe(probes.outputs, "Block", cfg, state, [(x, train, seed)], double=True)
    return out - x


def check_eval_branch(cfg: dict, state: dict, x: torch.Tensor, ev: torch.Tensor) -> None:
    """The eval-mode block(x) - x is the reference's (which runs in float32)."""
    assert_close((ev + x).float(), reference_output("Block", cfg, state, x.float()), atol=ATOL, rtol=RTOL,
                 what=f"Block({cfg}) in eval mode (float64, its MLP outputting 0) on x of shape {tuple(x.shape)}",
                 hint="The tests that compare each module with the reference in eval mode name the mistake.")


ATTN_CFG = dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)


@pytest.mark.parametrize("impl", IMPLS)
def test_step3_attention_output_has_residual_dropout_in_train_mode(impl: str) -> None:
    cfg, state = train_block({**ATTN_CFG, "attn_impl": impl}, seed=1)
    x = randn(16, 8, 16, seed=1).double()
    ev, tr = attention_branch(cfg, state, x, False), attention_branch(cfg, state, x, True)
    expect(not torch.equal(tr, ev), (
        f"the attention's output in train mode ({impl} attention, dropout={P}) equals its eval-mode output: no "
        f"dropout acts in training: neither the attention's output (its residual dropout, `resid_drop`) nor its "
        f"weights go through dropout. Look at CausalSelfAttention.forward (step3_blocks.py); `nox -s hint -- 3` "
        f"walks you to it"))
    frac = (tr == 0).double().mean().item()
    tol = 7 * (P * (1 - P) / tr.numel()) ** 0.5
    expect(abs(frac - P) <= tol, (
        f"in train mode ({impl} attention, dropout={P}) {frac:.1%} of the attention's output entries are exactly 0, "
        f"expected about {P:.0%}: the residual dropout belongs on the attention's final output, after the "
        f"projection, so that it zeroes whole output entries. "
        + ("No entry is zeroed: it is missing, or applied before the projection (which mixes the zeros away). "
           if frac < tol else "")
        + "Look at the end of CausalSelfAttention.forward (step3_blocks.py); `nox -s hint -- 3` walks you to it"))
    check_eval_branch(cfg, state, x, ev)


@pytest.mark.parametrize("impl", IMPLS)
def test_step3_attention_weights_have_dropout_in_train_mode(impl: str) -> None:
    """Every value vector is the same u and the projection is the identity, so in eval
    mode the output is u everywhere (the weights of a row sum to 1). In train mode, a
    kept output entry is u * (sum of the kept weights / (1-p)) / (1-p): this factor varies
    from row to row only if the attention weights themselves were dropped."""
    cfg, state = train_block({**ATTN_CFG, "attn_impl": impl}, seed=2)
    C = cfg["n_embd"]
    u = 1.0 + torch.arange(C, dtype=torch.float64) / C
    qkv_weight, qkv_bias = state["attn.qkv.weight"].clone(), state["attn.qkv.bias"].clone()
    qkv_weight[2 * C:] = 0  # v = u for every position, whatever the input
    qkv_bias[2 * C:] = u  # (exact in float32 too)
    state.update({"attn.qkv.weight": qkv_weight, "attn.qkv.bias": qkv_bias,
                  "attn.proj.weight": torch.eye(C), "attn.proj.bias": torch.zeros(C)})
    x = randn(16, 8, C, seed=2).double()
    ev = attention_branch(cfg, state, x, False)
    expect(torch.allclose(ev, u.expand_as(ev), atol=1e-9), (
        "with every value vector equal to u and an identity projection, the eval-mode attention output should be "
        "u at every position (softmax weights sum to 1); fix the attention tests above first"))
    tr = attention_branch(cfg, state, x, True)
    kept = tr != 0
    ratio = (tr / u)[kept]
    where = (f"in train mode ({impl} attention, dropout={P}) with all values equal, the kept output entries are "
             f"u times")
    fix = ("the attention weights (the softmax's output, before they multiply v) must go through dropout: "
           + ("`attn_drop` on the manual path" if impl == "manual" else
              "on the sdpa path the fused kernel drops them itself when given a dropout probability in train "
              "mode (and 0 in eval mode)")
           + ". Look at CausalSelfAttention.forward (step3_blocks.py); `nox -s hint -- 3` walks you to it")
    if ratio.numel() and torch.allclose(ratio, torch.full_like(ratio, 1 / (1 - P))):
        pytest.fail(f"{where} exactly 1/(1-p) everywhere: only the residual dropout acted, the attention weights "
                    f"were not dropped: {fix}", pytrace=False)
    if ratio.numel() and torch.allclose(ratio, torch.full_like(ratio, 1 / (1 - P) ** 2)):
        pytest.fail(f"{where} exactly 1/(1-p)² everywhere: dropout was applied to the attention's output "
                    f"(weights @ v) entry by entry, not to the attention weights: {fix}", pytrace=False)
    expect(ratio.numel() > 0 and ratio.std().item() > 0.1, (
        f"{where} {ratio.unique()[:6].tolist()}...: the factor should vary from row to row (each row keeps a "
        f"random subset of its attention weights): {fix}"))


@pytest.mark.parametrize("impl", IMPLS)
def test_step3_attention_in_train_mode_is_the_eval_output_on_average(impl: str) -> None:
    """Inverted dropout keeps the expectation: averaged over many independent masks (the
    same sequence repeated over the batch), train mode gives the eval output."""
    cfg, state = train_block({**ATTN_CFG, "attn_impl": impl}, seed=3)
    x = randn(1, 6, 16, seed=3).double().expand(4096, -1, -1).contiguous()
    ev = attention_branch(cfg, state, x[:1], False)[0]
    tr = attention_branch(cfg, state, x, True)
    mean, se = tr.mean(0), tr.std(0) / tr.size(0) ** 0.5
    bad = (mean - ev).abs() > 6 * se + 1e-9  # 6 standard errors: never by chance
    expect(not bool(bad.any()), (
        f"averaged over 4096 train-mode passes ({impl} attention, dropout={P}), the attention output differs from "
        f"the eval output by up to {(mean - ev).abs().max().item():.3g} ({int(bad.sum())} of {bad.numel()} entries "
        f"beyond 6 standard errors): dropout must divide what it keeps by 1 - p (nn.Dropout does) and act only on "
        f"the attention weights and the projected output, not on the scores before the softmax"))
    check_eval_branch(cfg, state, x[:1], ev[None])


def test_step3_mlp_dropout_is_active_in_train_mode_and_unbiased() -> None:
    cfg = dict(ATTN_CFG, dropout=P, bias=True, attn_impl="manual")
    state = weights("MLP", cfg, seed=4)
    x = randn(1, 6, 16, seed=4).double().expand(4096, -1, -1).contiguous()
    # The student's MLP in float64: once in eval mode, then in train mode after torch.manual_seed(0).
    ev, tr = probe(probes.outputs, "MLP", cfg, state, [(x[:1], False, None), (x, True, 0)], double=True)
    ev = ev[0]
    expect(not torch.equal(tr[0], ev), (
        f"the MLP in train mode (dropout={P}) gives its eval-mode output: no dropout acts, the MLP's output is "
        f"not passed through its dropout (`drop`). Look at MLP.forward (step3_blocks.py); `nox -s hint -- 3` "
        f"walks you to it"))
    mean, se = tr.mean(0), tr.std(0) / tr.size(0) ** 0.5
    bad = (mean - ev).abs() > 6 * se + 1e-9
    expect(not bool(bad.any()), (
        f"averaged over 4096 train-mode passes the MLP output differs from its eval output by up to "
        f"{(mean - ev).abs().max().item():.3g}: dropout belongs on the MLP's output (after self.proj), with "
        f"nn.Dropout's 1/(1-p) rescaling — not on its input"))
    assert_close(ev.float(), reference_output("MLP", cfg, state, x[:1].float())[0], atol=ATOL, rtol=RTOL,
                 what=f"MLP({cfg}) in eval mode (float64) on x of shape {tuple(x[:1].shape)}",
                 hint="test_step3_mlp_matches_reference names the mistake.")
