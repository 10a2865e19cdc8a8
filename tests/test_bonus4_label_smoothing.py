"""Bonus 4: label smoothing, against an oracle built only from `F.cross_entropy`.

The oracle. The smoothed target q puts 1 - eps on the target t, eps / (V - 2) on every
other token except padding, and 0 on padding. Its cross-entropy with p = softmax(z) is
  CE(q, p) = (1 - eps) * CE_t + eps / (V - 2) * (sum_i CE_i - CE_t - CE_pad)
where CE_i = F.cross_entropy(z, i) and sum_i CE_i = V * F.cross_entropy(z, t,
label_smoothing=1.0) (smoothing 1 is the uniform target). The loss asked for is the KL
divergence KL(q || p) = CE(q, p) - H(q), H(q) = -(1 - eps) log(1 - eps) - eps log(eps / (V - 2)),
summed over real (non-pad) rows and divided by their number.

Tolerance: atol 1e-5, rtol 1e-4. Both sides are float32 sums of V log-probabilities
(V <= 60, values < ~10); re-association moves them by ~1e-6. The mistakes looked for
(mass on padding, eps / (V - 1), CE instead of KL, the wrong divisor) move the loss by
> 1e-3 for the vocabularies and smoothing values drawn.

The learner's code runs only inside the probes of tests/_probes_bonus4.py (in the worker
process, in a separated grading): the tests send the vocabulary, padding id, smoothing,
logits and targets, and get back the smoothed targets, the loss and the logits' gradient
as data. Every expectation is computed here, from the test's own inputs.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import _probes_bonus4 as P
from _support import assert_close, probe
from strategies import expect

ATOL, RTOL = 1e-5, 1e-4


def loss_of(V: int, pad_id: int, eps: float, logits: torch.Tensor, target: torch.Tensor) -> dict:
    """The learner's `LabelSmoothingLoss(V, pad_id=pad_id, smoothing=eps)(logits, target)`, as
    `P.loss` returns it: {"loss": the result (a tensor, a number, or None for anything else),
    "type": its type's name}."""
    return probe(P.loss, V, pad_id, eps, logits, target)


def a_tensor(returned: dict) -> torch.Tensor:
    """The loss `loss_of` returned, which must be a tensor (the tests go on to compare its values)."""
    expect(isinstance(returned["loss"], torch.Tensor),
           f"LabelSmoothingLoss.forward must return a tensor (a 0-dim float32 one), got {returned['type']}")
    return returned["loss"]


def oracle_loss(logits: torch.Tensor, target: torch.Tensor, pad_id: int, eps: float) -> torch.Tensor:
    """The KL label-smoothing loss per real token, from F.cross_entropy only (see the module docstring)."""
    V = logits.size(-1)
    z, t = logits.reshape(-1, V).double(), target.reshape(-1)
    real = t != pad_id
    z, t = z[real], t[real]
    ce_t = F.cross_entropy(z, t, reduction="none")
    ce_pad = F.cross_entropy(z, torch.full_like(t, pad_id), reduction="none")
    ce_sum = V * F.cross_entropy(z, t, label_smoothing=1.0, reduction="none")
    ce = (1 - eps) * ce_t + eps / (V - 2) * (ce_sum - ce_t - ce_pad)
    entropy = -(1 - eps) * math.log(1 - eps) - (eps * math.log(eps / (V - 2)) if eps > 0 else 0.0)
    return ((ce - entropy).sum() / real.sum()).float()


def test_smoothed_targets_on_a_hand_example():
    target = torch.tensor([2, 0, 4, 1])
    returned = probe(P.smoothed_targets, 5, 0, 0.3, target)  # LabelSmoothingLoss(5, pad_id=0, smoothing=0.3)
    got = returned["targets"]
    expect(isinstance(got, torch.Tensor),
           f"smoothed_targets must return a (N, V) float32 tensor (its docstring), got {returned['type']}")
    want = torch.tensor(
        [
            [0.0, 0.1, 0.7, 0.1, 0.1],  # 1 - 0.3 on the target, 0.3 / (5 - 2) elsewhere, 0 on padding
            [0.0, 0.0, 0.0, 0.0, 0.0],  # target is padding: the row is ignored
            [0.0, 0.1, 0.1, 0.1, 0.7],
            [0.0, 0.7, 0.1, 0.1, 0.1],
        ]
    )
    hint = ("expected row n: 1 - smoothing at target[n], the rest shared equally by the tokens that are neither "
            "the target nor padding, 0 in the padding column, and an all-zero row where target[n] is padding. Look "
            "at LabelSmoothingLoss.smoothed_targets (bonus4_label_smoothing.py); stuck? `nox -s hint -- bonus 4`")
    if got.shape == want.shape:
        if float(got[0, 0]) > 0:
            hint = "the padding column must get 0 mass: the model must never be taught to produce padding"
        elif float(got[1].sum()) > 0:
            hint = "a row whose target is padding must be all zeros: it is not a token to learn"
        elif math.isclose(float(got[0, 1]), 0.3 / 4, rel_tol=1e-4):
            hint = ("each other token got smoothing / (V - 1), as if only the target were left out of the sharing; "
                    "padding gets none of the mass, so the remaining tokens' shares must be larger and the row "
                    "sum to 1")
    assert_close(got.float(), want, atol=1e-6, rtol=0, what="smoothed_targets([2, 0, 4, 1]) with V=5, pad 0, smoothing 0.3",
                 hint=hint)
    expect(got.dtype == torch.float32, f"smoothed_targets must return float32 (its docstring), got {got.dtype}")


@given(V=st.integers(3, 60), eps=st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.7]), pad_id=st.integers(0, 59),
       B=st.integers(1, 3), T=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_loss_matches_the_cross_entropy_oracle(V, eps, pad_id, B, T, seed):
    pad_id = pad_id % V
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 2
    target = torch.randint(0, V, (B, T), generator=g)
    target[0, 0] = (pad_id + 1) % V  # at least one real token
    got = a_tensor(loss_of(V, pad_id, eps, logits, target))
    want = oracle_loss(logits, target, pad_id, eps)
    hint = ("expected KL(q || softmax(logits)) summed over the real (non-pad) targets and divided by their count. "
            "Look at LabelSmoothingLoss.forward (bonus4_label_smoothing.py)")
    if got.shape == want.shape and eps > 0:
        real = int((target != pad_id).sum())
        h = -(1 - eps) * math.log(1 - eps) - eps * math.log(eps / (V - 2))  # CE(q, p) = KL + H(q)
        if math.isclose(float(got), float(want) + h, rel_tol=1e-4, abs_tol=1e-5):
            hint = (f"it is the cross-entropy CE(q, p), which is larger than the KL divergence by the entropy of q "
                    f"({h:.4f} here): the loss asked for is KL(q || p)")
        elif math.isclose(float(got), float(want) * real / target.numel(), rel_tol=1e-4, abs_tol=1e-5):
            hint = "it is divided by every position; divide by the number of real (non-pad) targets"
        elif math.isclose(float(got), float(want) * real, rel_tol=1e-4, abs_tol=1e-5):
            hint = "it is the sum: divide by the number of real (non-pad) targets"
    assert_close(got.float().reshape(()), want, atol=ATOL, rtol=RTOL,
                 what=f"label-smoothing loss (V={V}, pad_id={pad_id}, smoothing={eps})", hint=hint)


def test_padding_positions_contribute_nothing():
    V, pad = 11, 0
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, V, generator=g)  # the probe makes them a leaf that requires grad
    target = torch.tensor([[4, 5, 6, 2, 0, 0], [7, 2, 0, 0, 0, 0]])
    ran = probe(P.loss_backward, V, pad, 0.1, logits, target)  # loss(logits, target).backward()
    loss, grad = ran["loss"], ran["grad"]
    expect(grad is not None, "no gradient reached the logits: the loss must be computed from them and stay in "
                             "the graph (LabelSmoothingLoss.forward, bonus4_label_smoothing.py)")
    padded = target == pad
    assert float(grad[padded].abs().max()) == 0.0, (
        "the loss has a gradient through the logits of padded positions: rows whose target is padding must "
        "contribute exactly nothing, to the value and to the gradient"
    )
    other = logits.clone()
    other[padded] = torch.randn(int(padded.sum()), V, generator=g) * 10
    assert loss_of(V, pad, 0.1, other, target)["loss"].item() == pytest.approx(loss.item(), abs=1e-6), (
        "changing the logits at padded positions changed the loss: padded rows must be ignored"
    )
    # The gradient came from the loss of these very logits: that loss, against the oracle.
    assert_close(loss.float().reshape(()), oracle_loss(logits, target, pad, 0.1), atol=ATOL, rtol=RTOL,
                 what=f"label-smoothing loss (V={V}, pad_id={pad}, smoothing=0.1) whose gradient this is",
                 hint="expected KL(q || softmax(logits)) summed over the real (non-pad) targets and divided by their "
                      "count. Look at LabelSmoothingLoss.forward (bonus4_label_smoothing.py)")


def test_the_pad_logit_is_always_pushed_down():
    """With zero target mass on padding, d loss / d pad-logit = p_pad / n > 0 at every real row."""
    V, pad = 9, 3
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 5, V, generator=g)  # the probe makes them a leaf that requires grad
    target = torch.tensor([[0, 1, 2, 4, 8]])
    grad = probe(P.loss_backward, V, pad, 0.2, logits, target)["grad"]  # loss(logits, target).backward()
    expect(grad is not None, "no gradient reached the logits: the loss must be computed from them and stay in "
                             "the graph (LabelSmoothingLoss.forward, bonus4_label_smoothing.py)")
    p_pad = logits.softmax(-1)[0, :, pad] / 5
    assert_close(grad[0, :, pad], p_pad, atol=1e-6, rtol=1e-4, what="gradient of the loss at the padding logit",
                 hint="the padding token must get zero target mass, so the gradient at its logit is p_pad divided "
                      "by the number of real targets (always positive: padding is always pushed down)")


def test_more_padding_does_not_change_the_per_token_loss():
    V, pad = 13, 0
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, V, generator=g)
    target = torch.randint(1, V, (2, 4), generator=g)
    base = float(loss_of(V, pad, 0.1, logits, target)["loss"])
    padded_logits = torch.cat([logits, torch.randn(2, 4, V, generator=g)], dim=1)
    padded_target = torch.cat([target, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    more = float(loss_of(V, pad, 0.1, padded_logits, padded_target)["loss"])
    assert more == pytest.approx(base, rel=1e-5), (
        f"the same tokens with 8 extra padded positions gave loss {more:.6f} instead of {base:.6f}: the loss is "
        f"normalised per REAL token (divide by the count of non-pad targets, not by all positions)"
    )
    # And the unpadded loss is the one of these logits.
    assert_close(torch.tensor(base), oracle_loss(logits, target, pad, 0.1), atol=ATOL, rtol=RTOL,
                 what=f"label-smoothing loss (V={V}, pad_id={pad}, smoothing=0.1) without padding",
                 hint="expected KL(q || softmax(logits)) summed over the real (non-pad) targets and divided by their "
                      "count. Look at LabelSmoothingLoss.forward (bonus4_label_smoothing.py)")


def test_without_smoothing_it_is_the_plain_cross_entropy():
    V, pad = 17, 0
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 5, V, generator=g)
    target = torch.randint(0, V, (3, 5), generator=g)
    target[0, 0] = 5
    got = a_tensor(loss_of(V, pad, 0.0, logits, target))
    want = F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), ignore_index=pad)
    assert_close(got.float().reshape(()), want, atol=ATOL, rtol=RTOL, what="loss with smoothing=0",
                 hint="with smoothing 0, q is one-hot and KL(q || p) equals the plain cross-entropy averaged over "
                      "the real (non-pad) targets")


# bf16 logits. The docstring: the loss is computed in float32 whatever the logits' dtype.
# Measured on these four cases (and 20 more) against the float64 oracle of the same
# bf16 values: correct float32 formulations (log_softmax of the float32 logits, or its
# dtype=torch.float32 argument, kl_div or xlogy or soft-target cross-entropy minus the
# entropy, float64 cast back) are within 1e-6 (float32 rounding of sums of <= 360
# terms of size < 10). A log_softmax taken in bf16 and cast to float32 afterwards is
# off by 1.4e-3 to 8.1e-3 here (1.1e-4 at least over all 24): bf16 keeps 8 significant
# bits of each log-probability. ATOL = 2e-5 sits 20x above the first, 70x below the second.
BF16_ATOL = 2e-5
BF16_CASES = [(11, 0.1, 0, (2, 3)), (37, 0.1, 5, (1, 4)), (60, 0.3, 0, (3, 2)), (7, 0.0, 0, (1, 3))]


@pytest.mark.parametrize("V, eps, pad_id, shape", BF16_CASES)
def test_loss_is_computed_in_float32_from_bf16_logits(V, eps, pad_id, shape):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(*shape, V, generator=g) * 3).bfloat16()
    target = torch.randint(0, V, shape, generator=g)
    target.view(-1)[0] = (pad_id + 1) % V  # at least one real token
    returned = loss_of(V, pad_id, eps, logits, target)
    got = returned["loss"]
    expect(isinstance(got, torch.Tensor) and got.dim() == 0 and got.dtype == torch.float32, (
        f"the loss of bf16 logits must be a 0-dim float32 tensor (the docstring: computed in float32 whatever the "
        f"logits' dtype); got "
        + (f"{got.dtype} of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else returned["type"])))
    want = oracle_loss(logits.float(), target, pad_id, eps)
    err = abs(float(got) - float(want))
    expect(err <= BF16_ATOL, (
        f"label-smoothing loss of bf16 logits (V={V}, pad_id={pad_id}, smoothing={eps}): expected {float(want):.6f} "
        f"(the loss of the same logits in float32), got {float(got):.6f}, off by {err:.2g} (tolerance {BF16_ATOL}). "
        f"An error of this size (1e-4 to 1e-2) is what a log-softmax taken in bf16 and cast to float32 afterwards "
        f"gives: the result has the right dtype, but each log-probability was already rounded to bf16's 8 "
        f"significant bits. The docstring asks for the computation itself in float32"))


def test_loss_of_float32_logits_is_a_0_dim_float32_tensor():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 3, 9, generator=g)
    target = torch.tensor([[4, 5, 0], [7, 0, 0]])
    returned = loss_of(9, 0, 0.1, logits, target)
    got = returned["loss"]
    expect(isinstance(got, torch.Tensor) and got.dim() == 0 and got.dtype == torch.float32, (
        f"LabelSmoothingLoss.forward must return a 0-dim float32 tensor (what loss.backward() and loss.item() "
        f"take, and what the docstring states); got "
        + (f"{got.dtype} of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else returned["type"])))
    # And it is the loss of these logits.
    assert_close(got, oracle_loss(logits, target, 0, 0.1), atol=ATOL, rtol=RTOL,
                 what="label-smoothing loss (V=9, pad_id=0, smoothing=0.1)",
                 hint="expected KL(q || softmax(logits)) summed over the real (non-pad) targets and divided by their "
                      "count. Look at LabelSmoothingLoss.forward (bonus4_label_smoothing.py)")
