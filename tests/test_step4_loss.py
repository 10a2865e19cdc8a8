"""Step 4 — the next-token loss. Run alone: `pytest -k step4`."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st

import _probes_step4 as P
from _support import assert_close, oracle, probe, recorded
from strategies import SEEDS, expect, name_the_mistake, one_thread, randn

pytestmark = pytest.mark.usefixtures(one_thread.__name__)  # tiny tensors: see strategies.one_thread

S4 = "step4_loss"
# fp32 cross-entropy over <= 30 pairs on CPU: the reference and a correct solution
# differ only by summation order (~1e-7).
ATOL, RTOL = 1e-5, 1e-5


@recorded
def reference_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    return oracle(S4).next_token_loss(logits, labels, ignore_index=ignore_index)


def by_hand(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> float:
    """The definition, one pair at a time: position t is scored on token t+1."""
    logp = logits.double().log_softmax(-1)
    total, n = 0.0, 0
    B, T = labels.shape
    for b in range(B):
        for t in range(T - 1):
            y = int(labels[b, t + 1])
            if y != ignore_index:
                total -= logp[b, t, y].item()
                n += 1
    return total / n


@st.composite
def loss_inputs(draw) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(B, T, V) logits, (B, T) labels with some ignore_index positions, ignore_index.

    ignore_index is -100 (PyTorch's default), -1, or 0 (a real token id used as pad):
    the last two show whether it is actually passed to cross_entropy.
    """
    B, T, V = draw(st.integers(1, 3)), draw(st.integers(2, 10)), draw(st.integers(2, 50))
    ignore_index = draw(st.sampled_from([-100, -1, 0]))
    seed = draw(SEEDS)
    g = torch.Generator().manual_seed(seed)
    logits = randn(B, T, V, seed=seed, std=2.0)
    low = 1 if ignore_index == 0 else 0  # with pad id 0, real tokens are 1..V-1
    labels = torch.randint(low, V, (B, T), generator=g) if V > low else torch.ones(B, T, dtype=torch.long)
    pad = torch.rand(B, T, generator=g) < draw(st.sampled_from([0.0, 0.3, 0.6]))
    labels[pad] = ignore_index
    labels[0, 1] = low  # at least one real pair, so the mean is defined
    return logits, labels, ignore_index


def _loss(logits, labels, ignore_index, requires_grad: bool = False) -> dict:
    """The student's loss and what it returned (`P.next_token_loss`: "loss", "type", "repr",
    "requires_grad", "graph"); a crash on ignored labels is reported as the mistake it is."""
    try:
        return probe(P.next_token_loss, logits, labels, ignore_index=ignore_index, requires_grad=requires_grad)
    except (RuntimeError, IndexError) as e:
        message = f"{type(e).__name__}: {e}"
    expect(False, f"next_token_loss crashed on labels that contain ignore_index={ignore_index}: {message}. "
                  f"Pairs whose label is ignore_index must be skipped, and the value to skip is the one passed "
                  f"in (here {ignore_index}, not PyTorch's default -100). Look at next_token_loss (step4_loss.py)")


@given(inputs=loss_inputs())
@example(inputs=(randn(2, 5, 7, seed=1), torch.tensor([[1, 2, 0, 3, 0], [4, 0, 0, 5, 6]]), 0))
def test_step4_loss_matches_reference(inputs: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    logits, labels, ig = inputs
    returned = _loss(logits, labels, ig)
    out = returned["loss"]
    expect(isinstance(out, torch.Tensor) and out.dim() == 0,
           f"next_token_loss should return a 0-dim tensor (the mean), got "
           f"{tuple(out.shape) if isinstance(out, torch.Tensor) else returned['type']}")
    V = logits.shape[-1]
    flat = lambda lg, lb, **kw: F.cross_entropy(lg.reshape(-1, V), lb.reshape(-1), **kw)  # noqa: E731
    shifted_lg, shifted_lb = logits[:, :-1], labels[:, 1:]
    candidates = {
        "the loss is not shifted: the logits at t were scored against token t, not t+1, which trains the "
        "model to copy its input": flat(logits, labels, ignore_index=ig),
        "the shift goes the wrong way: the logits at t+1 were scored against token t; position t predicts "
        "token t+1": flat(logits[:, 1:], labels[:, :-1], ignore_index=ig),
        "the loss is the sum over the real pairs, not their mean": flat(shifted_lg, shifted_lb, ignore_index=ig,
                                                                      reduction="sum"),
        "the sum was divided by all B*(T-1) pairs, padding included; the mean is over the pairs that count":
            flat(shifted_lg, shifted_lb, ignore_index=ig, reduction="sum") / shifted_lb.numel(),
    }
    if ig >= 0:
        candidates[f"pairs whose label is ignore_index={ig} were counted as real tokens"] = (
            flat(shifted_lg, shifted_lb))
    hint = name_the_mistake(out.detach().reshape(()), candidates,
                            default="expected the mean cross-entropy of position t's logits against label t+1, over "
                                    "the pairs whose label is not ignore_index. Look at next_token_loss "
                                    "(step4_loss.py); stuck? `nox -s hint -- 4`")
    assert_close(out.detach().float(), reference_loss(logits, labels, ig), atol=ATOL, rtol=RTOL,
                 what=f"the loss for logits {tuple(logits.shape)}, ignore_index={ig}", hint=hint)


def test_step4_loss_is_shifted_compared_with_a_hand_computation() -> None:
    labels = torch.tensor([[3, 1, 4, 1, 0, 2]])
    V = 5
    # A perfect next-token predictor: the logits at t put +10 on labels[t+1]; the last
    # position (no next token) predicts something arbitrary.
    logits = torch.zeros(1, 6, V)
    for t in range(5):
        logits[0, t, labels[0, t + 1]] = 10.0
    loss = probe(P.next_token_loss, logits, labels)["loss"].item()  # ignore_index left at its default
    expected = by_hand(logits, labels, -100)  # ~1.8e-4: every pair is right with margin 10
    copy_model = torch.zeros(1, 6, V)
    copy_model[0, torch.arange(6), labels[0]] = 10.0  # predicts the *current* token
    copy_loss = probe(P.next_token_loss, copy_model, labels)["loss"].item()
    # hand computation in float64 vs fp32 cross_entropy.
    expect(abs(loss - expected) < 1e-4 and copy_loss > 5,
           f"a model whose logits at t pick labels[t+1] should have loss ≈ {expected:.1e}, got {loss:.3g}; "
           f"a model that copies its current token should have a large loss, got {copy_loss:.3g}. "
           + ("Your loss rewards copying the input: the logits at t are scored against token t, not t+1."
              if copy_loss < 1 else "Check the shift: position t's logits are scored against label t+1 "
              "(next_token_loss, step4_loss.py)."))


@given(inputs=loss_inputs(), extra=st.integers(1, 4))
def test_step4_padding_does_not_change_the_loss(inputs: tuple[torch.Tensor, torch.Tensor, int], extra: int) -> None:
    """Appending ignored positions (padding) leaves the mean over real tokens unchanged."""
    logits, labels, ig = inputs
    B, T, V = logits.shape
    padded_logits = torch.cat([logits, randn(B, extra, V, seed=extra, std=5.0)], dim=1)
    padded_labels = torch.cat([labels, torch.full((B, extra), ig)], dim=1)
    plain = _loss(logits, labels, ig)["loss"]
    padded = _loss(padded_logits, padded_labels, ig)["loss"]
    # same pairs, same fp32 terms; only the number of skipped entries differs.
    assert_close(padded.detach(), plain.detach(), atol=ATOL, rtol=RTOL,
                 what=f"the loss with {extra} padding positions (label {ig}) appended, compared with the loss without them,",
                 hint="positions labelled ignore_index must not count: the mean is over the real pairs only, "
                      "not over B*(T-1)")
    # And the unpadded loss is the one of these logits (float64 by hand vs fp32 over <= 27 pairs).
    got, want = plain.item(), by_hand(logits, labels, ig)
    expect(abs(got - want) < 1e-4 * max(1.0, abs(want)),
           f"the loss for logits {tuple(logits.shape)}, ignore_index={ig} is {got:.6f}, expected {want:.6f}: the "
           f"mean cross-entropy of position t's logits against label t+1 over the pairs whose label is not "
           f"ignore_index (next_token_loss, step4_loss.py; test_step4_loss_matches_reference names likely mistakes)")


def test_step4_uniform_logits_give_ln_vocab() -> None:
    V = 37
    labels = torch.randint(0, V, (2, 6), generator=torch.Generator().manual_seed(0))
    loss = probe(P.next_token_loss, torch.zeros(2, 6, V), labels)["loss"]
    # log-softmax of equal logits is exactly -ln V in fp32 (up to one rounding).
    expect(abs(loss.item() - math.log(V)) < 1e-5,
           f"with all-zero logits every word has probability 1/V, so the loss must be ln({V}) = {math.log(V):.5f}; "
           f"got {loss.item():.5f}"
           + (f": that is {loss.item() / math.log(V):.0f} pairs' worth, a sum instead of a mean"
              if loss.item() > 1.5 * math.log(V) else
              ": the loss should be the mean negative log-probability, normalised over the V words"))


def test_step4_gradient_skips_the_last_position_and_ignored_pairs() -> None:
    V = 11
    logits = randn(2, 7, V, seed=3)
    labels = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(3))
    labels[1, 4] = -100  # so logits[1, 3] has no target
    # next_token_loss(logits, labels).backward(), the logits a leaf that requires grad.
    ran = probe(P.next_token_loss_backward, logits, labels)
    grad = ran["grad"]
    expect(grad is not None, "no gradient reached the logits: the loss must be computed from them and "
                             "stay in the graph (next_token_loss, step4_loss.py)")
    per_position = grad.abs().sum(-1)
    expect(bool((per_position[:, -1] == 0).all()),
           "the logits at the last position got a gradient, but there is no token after it to predict: "
           "the loss is not shifted")
    expect(per_position[1, 3].item() == 0,
           "the logits at position 3 got a gradient although their target labels[:, 4] is ignore_index: "
           "ignored pairs must drop out of the loss")
    expect(bool((per_position[0, :-1] > 0).all()),
           "some positions with a real next token got no gradient: every pair (t, t+1) must count")
    # The gradient came from the loss of these very logits: that loss, against the definition.
    got, want = ran["loss"].item(), by_hand(logits, labels, -100)
    expect(abs(got - want) < 1e-4 * max(1.0, abs(want)),  # float64 by hand vs fp32 over 11 pairs
           f"the loss whose gradient this is came out {got:.6f}, expected {want:.6f}: the mean cross-entropy of "
           f"position t's logits against label t+1 over the pairs whose label is not -100 (next_token_loss, "
           f"step4_loss.py)")


def test_step4_bf16_logits_give_a_float32_loss() -> None:
    logits = randn(2, 5, 64, seed=4).bfloat16()
    labels = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(4))
    loss = probe(P.next_token_loss, logits, labels)["loss"]
    expect(loss.dtype == torch.float32,
           f"with bf16 logits (mixed-precision training) the loss should be float32, got {loss.dtype}: the "
           f"loss must be computed in float32 whatever the logits' dtype, since a bf16 log-softmax over 50k words "
           f"loses precision")
    # And it is the loss of these logits, within 1e-2: bf16's rounding (~1e-3) is the next test's to name.
    got, want = loss.item(), by_hand(logits, labels, -100)
    expect(abs(got - want) < 1e-2 * max(1.0, abs(want)),
           f"with bf16 logits the loss is {got:.6f}, expected {want:.6f}: the mean cross-entropy, computed in "
           f"float32, of position t's logits against label t+1 (next_token_loss, step4_loss.py)")


# bf16 logits, one pair per call (B=1, T=2), V=1000, logits ~ N(0, 3²): the loss is the
# pair's -log p, ~7-11. Measured on these 8 cases (tests/mutants step4 bf16 entries):
# every float32 formulation (cross_entropy or log_softmax + gather / nll_loss or
# logsumexp on the float32 copy, sliced or shifted) is within 8e-8 (relative) of the
# float64 value of the same bf16 numbers; a computation in bf16 converted to float32
# afterwards (cross_entropy, or log_softmax, on the bf16 logits, then .float()) keeps
# bf16's 8-bit mantissa: off by 2.7e-4 to 3.1e-3 (relative) in every case. 1e-5 sits
# 125x above the first and 27x below the second.
BF16_RTOL = 1e-5


def test_step4_bf16_logits_loss_is_computed_in_float32() -> None:
    V = 1000
    logits = randn(8, 2, V, seed=14, std=3.0).bfloat16()
    labels = torch.randint(0, V, (8, 2), generator=torch.Generator().manual_seed(14))
    for b in range(8):
        lg, lb = logits[b:b + 1], labels[b:b + 1]
        returned = probe(P.next_token_loss, lg, lb)
        out = returned["loss"]
        expect(isinstance(out, torch.Tensor) and out.dim() == 0 and out.dtype == torch.float32,
               f"next_token_loss of bf16 logits should return a 0-dim float32 tensor, got "
               f"{out.dtype if isinstance(out, torch.Tensor) else returned['type']}"
               f"{'' if not isinstance(out, torch.Tensor) else f' of shape {tuple(out.shape)}'}")
        want = by_hand(lg, lb, -100)  # float64 of the very bf16 values
        got = out.item()
        rel = abs(got - want) / abs(want)
        expect(rel <= BF16_RTOL, (
            f"with bf16 logits (one pair, V={V}) the loss is {got:.7f}, expected {want:.7f} (relative difference "
            f"{rel:.1e}, tolerance {BF16_RTOL:.0e}): the float32 result carries bf16's rounding, so the "
            f"log-softmax or the cross-entropy was computed on the bf16 logits and only the result was made "
            f"float32. bf16 keeps ~3 significant digits; the docstring asks for the loss computed in float32 "
            f"whatever the logits' dtype. Look at next_token_loss (step4_loss.py)"))


@pytest.mark.parametrize("labels_shape", [(2, 7), (2, 6, 1), (3, 6)])
def test_step4_mismatched_shapes_raise_valueerror(labels_shape: tuple[int, ...]) -> None:
    logits, labels = torch.zeros(2, 6, 10), torch.zeros(labels_shape, dtype=torch.long)
    try:
        probe(P.next_token_loss, logits, labels)
    except ValueError as e:  # the learner's exception, raised here as the builtin class it derives from
        expect("6" in str(e) and str(labels_shape[0]) in str(e),
               f"the ValueError should show both shapes, logits {tuple(logits.shape)} and labels {labels_shape}; "
               f"got: {e}")
        return
    except Exception as e:  # noqa: BLE001 - the point is to report which error came instead
        got = f"raised {type(e).__name__}: {e}"
    else:
        got = "returned a loss"
    expect(False, f"next_token_loss with logits (2, 6, 10) and labels {labels_shape} {got}. Check that logits are "
                  f"(B, T, V) and labels (B, T) first and raise ValueError naming both shapes: a mismatch means "
                  f"the batch was built wrong, and a silent broadcast or a cryptic error hides it")


# --- real tokens always count; a batch with nothing to count --------------------------


@pytest.mark.parametrize(("V", "token", "what"), [
    (50257, 50256, "GPT-2's end-of-text id 50256"),
    (50257, 0, "token id 0 ('!' in GPT-2)"),
    (13, 12, "the last id of the vocabulary, V - 1"),
])
def test_step4_every_real_token_counts_end_of_text_included(V: int, token: int, what: str) -> None:
    """Only `ignore_index` marks a pair that does not count: any id in [0, V) is a real
    token. Dropping end-of-text from the loss (the seed lab's pad = EOS pitfall) means
    the model never learns where a document ends."""
    g = torch.Generator().manual_seed(token)
    logits = randn(2, 6, V, seed=token, std=2.0)
    labels = torch.randint(0, V, (2, 6), generator=g)
    labels[:, 1::2] = token  # three pairs per row have this label
    labels[1, 2] = -100  # and one pair that really is padding
    returned = _loss(logits, labels, -100)
    out = returned["loss"]
    want = by_hand(logits, labels, -100)
    without = by_hand(logits, labels.masked_fill(labels == token, -100), -100)
    expect(isinstance(out, torch.Tensor) and out.dim() == 0 and math.isfinite(out.item()),
           f"next_token_loss should return a finite 0-dim tensor, got {returned['repr']}")
    got = out.item()
    hint = (f"that is the loss without the pairs whose label is {token} ({what}): only labels equal to "
            f"ignore_index may be skipped — do not filter out end-of-text, id 0 or any other real token"
            if abs(got - without) < 1e-4 else
            "check that the mean is over every pair whose label is not ignore_index")
    # float64 by hand vs fp32 cross-entropy over 9 pairs.
    expect(abs(got - want) < 1e-4 * max(1.0, abs(want)),
           f"with V={V} and labels containing {what}, the loss is {got:.6f}, expected {want:.6f} (every pair "
           f"except the one labelled ignore_index=-100 counts); {hint}")


@pytest.mark.parametrize(("labels", "ignore_index"), [
    ([[-100, -100, -100, -100], [-100, -100, -100, -100]], -100),
    ([[7, -100, -100, -100], [3, -100, -100, -100]], -100),  # only first labels: they are never predicted
    ([[0, 0, 0], [0, 0, 0]], 0),
    ([[5], [2]], -100),  # T = 1: no pair at all
])
def test_step4_a_batch_with_nothing_to_count_gives_zero_not_nan(labels: list, ignore_index: int) -> None:
    """A batch of pure padding must not poison training: 0.0, a function of the logits
    (backward runs and gives zero gradients), float32, never NaN."""
    labels = torch.tensor(labels)
    B, T = labels.shape
    logits = randn(B, T, 11, seed=T)  # the probes make them a leaf that requires grad
    returned = _loss(logits, labels, ignore_index, requires_grad=True)
    out = returned["loss"]
    shown = f"next_token_loss(logits {tuple(logits.shape)}, labels {labels.tolist()}, ignore_index={ignore_index})"
    expect(isinstance(out, torch.Tensor) and out.dim() == 0,
           f"{shown} should return a 0-dim tensor, got {returned['repr']}")
    value = out.item()
    expect(not math.isnan(value),
           f"{shown} is NaN: no pair counts, and a mean over zero pairs is 0/0 (what reduction='mean' gives). "
           f"Such a batch must give 0.0 (the docstring's decided edge case): look at how next_token_loss "
           f"divides (step4_loss.py); `nox -s hint -- 4` walks you to it")
    expect(value == 0.0, f"{shown} returned {value}, expected 0.0: no pair counts (every shifted label is "
                         f"ignore_index), so nothing contributes to the loss")
    expect(out.dtype == torch.float32, f"{shown} has dtype {out.dtype}, expected float32")
    expect(returned["requires_grad"] and returned["graph"],
           f"{shown} returned a constant with no graph (e.g. torch.tensor(0.0)): the training loop calls "
           f"loss.backward() on it and crashes. The 0.0 must be computed from the logits, so it stays in the "
           f"graph; `nox -s hint -- 4` walks you to it")
    grad = probe(P.next_token_loss_backward, logits, labels, ignore_index=ignore_index)["grad"]  # out.backward()
    expect(grad is not None,
           f"after backward() on {shown}, the logits got no gradient: the 0.0 must be computed from the logits "
           f"(a fresh tensor with requires_grad=True is not connected to the model)")
    expect(bool(torch.isfinite(grad).all()) and bool((grad == 0).all()),
           f"after backward() on {shown}, the logits' gradient should be all zeros (nothing counts); got "
           f"{'NaN or inf values' if not bool(torch.isfinite(grad).all()) else f'values up to {grad.abs().max().item():.3g}'}")
