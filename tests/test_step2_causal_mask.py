"""Step 2 — the causal mask and masked, scaled attention scores. Run alone: `pytest -k step2`."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import _probes_step2 as P
from _support import assert_close, oracle, probe, recorded
from strategies import SEEDS, expect, name_the_mistake, one_thread, randn

pytestmark = pytest.mark.usefixtures(one_thread.__name__)  # tiny tensors: see strategies.one_thread
S2 = "step2_causal_mask"
# A masked score must give exactly zero softmax weight. -inf is the contract; in the
# fp32 tests any value this negative (-1e9, torch.finfo(dtype).min) underflows to the
# same 0 next to scores of size ~1, so they accept it: those tests are about where the
# mask goes. The contract's -inf itself is checked in half precision (the dtypes test
# below), where a large finite number overflows or stays finite.
MASKED = -1e4


@recorded
def reference_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference's masked, scaled scores for (B, H, T, D) q, k and a (T, T) bool mask."""
    return oracle(S2).masked_attention_scores(q, k, mask)


def lower_triangle(T: int) -> torch.Tensor:
    """(T, T) bool, True where j <= i: the causal mask, built independently of any solution."""
    i = torch.arange(T)
    return i[None, :] <= i[:, None]


def returned_tensor(got: dict, what: str) -> torch.Tensor:
    """The tensor a probe says the learner's `what` returned (see tests/_probes_step2.py); fails
    the test, naming what came back instead, where it is not a tensor."""
    expect(got["tensor"] is not None, f"{what} should return a torch.Tensor, got {got['type']}")
    return got["tensor"]


# --- causal_mask --------------------------------------------------------------------


@given(T=st.integers(1, 64))
@example(T=5)
def test_step2_causal_mask_is_lower_triangular_bool(T: int) -> None:
    m = returned_tensor(probe(P.causal_mask, T), f"causal_mask({T})")
    expect(tuple(m.shape) == (T, T), f"causal_mask({T}) should have shape ({T}, {T}), got {tuple(m.shape)}")
    expect(m.dtype == torch.bool, f"causal_mask({T}) should be a bool tensor (True = may attend), got {m.dtype}: "
                                  f"masked_fill and indexing need bool, and 0/1 floats are easy to invert by accident")
    expected = lower_triangle(T)
    if torch.equal(m, expected):
        return
    if torch.equal(m, expected.T):
        why = ("it is the upper triangle: the mask is transposed. Row i is the query, column j the key; "
               "query i may see keys j <= i, so every query sees the future here")
    elif torch.equal(m, expected & ~torch.eye(T, dtype=torch.bool)):
        why = "the diagonal is False: position i must be able to attend to itself (query 0 has no key left)"
    elif torch.equal(m, ~expected):
        why = "it is inverted: True must mean 'may attend' (j <= i), not 'masked'"
    else:
        why = "expected True exactly where column j <= row i (the lower triangle, diagonal included)"
    bad = tuple(int(x) for x in torch.nonzero(m != expected)[0])
    expect(False, f"causal_mask({T}) is wrong at (query, key) = {bad}, where it is {bool(m[bad])}: {why}. "
                  f"Look at causal_mask (step2_causal_mask.py)")


def test_step2_causal_mask_is_made_on_the_requested_device() -> None:
    # The "meta" device exists on every machine, so a mask that ignores `device` shows
    # here too (on a GPU it would fail inside attention with a device mismatch).
    got = probe(P.causal_mask_devices, 4, "meta")
    expect(got["device"] is not None, f"causal_mask(4, device='meta') should return a torch.Tensor, got {got['type']}")
    expect(got["device"] == "meta", f"causal_mask(4, device='meta') returned a tensor on {got['device']}: the mask "
                                    f"must be made on the device it is given, so it lands next to q and k "
                                    f"(on a GPU, a CPU mask fails inside attention)")
    # A meta tensor has no values: the mask made on the device "cpu" shows that `device` only moves it.
    m = returned_tensor(got["on_cpu"], "causal_mask(4, device='cpu')")
    expect(m.dtype == torch.bool and torch.equal(m, lower_triangle(4)),
           f"causal_mask(4, device='cpu') should be the (4, 4) bool lower triangle (True where key j <= query i), "
           f"got {m.dtype} of shape {tuple(m.shape)}: {m.tolist()}. Giving a device must change where the mask is "
           f"made, not what it holds. Look at causal_mask (step2_causal_mask.py)")


# --- masked_attention_scores ----------------------------------------------------------


qk_shapes = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 12), st.integers(1, 16))


@given(shape=qk_shapes, seed=SEEDS)
@example(shape=(2, 2, 5, 8), seed=0)
def test_step2_scores_match_reference(shape: tuple[int, int, int, int], seed: int) -> None:
    B, H, T, D = shape
    q, k = randn(B, H, T, D, seed=seed), randn(B, H, T, D, seed=seed + 1)
    mask = lower_triangle(T)
    got = probe(P.scores, q, k, mask)
    out = got["tensor"]
    expected = reference_scores(q, k, mask)
    expect(out is not None and tuple(out.shape) == (B, H, T, T),
           f"masked_attention_scores on q, k of shape {shape} should return (B, H, T, T) = {(B, H, T, T)}, got "
           f"{tuple(out.shape) if out is not None else got['type']}: one score for every "
           f"(query, key) pair of each batch row and head")
    raw = q @ k.transpose(-2, -1)
    allowed = mask.expand(B, H, T, T)
    expect(not torch.isinf(out[allowed]).any(),
           "some allowed positions (key j <= query i) are -inf: the mask was applied inverted. True means "
           "'may attend', so -inf belongs only where the mask is False")
    hint = name_the_mistake(out[allowed], {
        "the scores are the raw dot products, not scaled: they must be divided by sqrt(D), D the head size":
            raw[allowed],
        "the scores are divided by D instead of sqrt(D)": (raw / D)[allowed],
        "the scores are divided by sqrt(T) (the sequence length) instead of sqrt(D) (the head size)":
            (raw / math.sqrt(T))[allowed],
        "the queries and keys are swapped: entry [b, h, i, j] is key i against query j, the transposed scores; "
        "row i must be query i (q, the first argument) and column j key j":
            (k @ q.transpose(-2, -1) / math.sqrt(D))[allowed],
    }, default="expected the dot product of query i with key j divided by sqrt(D) (D = the head size) at every "
               "allowed position. Look at masked_attention_scores (step2_causal_mask.py); stuck? `nox -s hint -- 2`")
    # fp32 matmuls of <= 16 terms on CPU: differences are rounding, ~1e-6.
    assert_close(out[allowed], expected[allowed], atol=1e-5, rtol=1e-5,
                 what=f"the allowed (j <= i) scores for q, k of shape {shape}", hint=hint)
    masked = out[~allowed]
    worst = masked.max().item() if masked.numel() else float("-inf")
    expect(bool((masked <= MASKED).all()),
           f"positions with key j > query i (the future) should be -inf, got values up to {worst:.3g}: the future "
           f"is not masked, and only -inf makes the softmax give it exactly zero weight")


@given(T=st.integers(2, 10), seed=SEEDS)
def test_step2_scores_use_the_mask_they_are_given(T: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    # Any pattern (diagonal kept): the function must apply *its argument*, e.g. a padding mask.
    mask = (torch.rand(T, T, generator=g) < 0.5) | torch.eye(T, dtype=torch.bool)
    q, k = randn(1, 2, T, 4, seed=seed), randn(1, 2, T, 4, seed=seed + 1)
    out = returned_tensor(probe(P.scores, q, k, mask), "masked_attention_scores")
    blocked = out[..., ~mask]
    open_ = out[..., mask]
    expect(bool((blocked <= MASKED).all()) and not torch.isinf(open_).any(),
           "masked_attention_scores must fill exactly where the given `mask` is False: with a non-causal mask "
           "your scores were -inf in the wrong places. Use the `mask` argument; do not build your own inside")


@given(D=st.sampled_from([4, 16, 64]), T=st.integers(1, 6))
def test_step2_scores_are_scaled_by_one_over_sqrt_head_size(D: int, T: int) -> None:
    q = k = torch.ones(1, 1, T, D)
    out = returned_tensor(probe(P.scores, q, k, lower_triangle(T)), "masked_attention_scores")
    got = out[0, 0, 0, 0].item()
    want = D / math.sqrt(D)
    why = {float(D): "not scaled at all", 1.0: "divided by D instead of sqrt(D)",
           D / math.sqrt(T): "divided by sqrt(T) instead of sqrt(D)"}
    guess = next((w for v, w in why.items() if abs(got - v) < 1e-4 and abs(v - want) > 1e-4), "")
    if math.isinf(got):
        guess = "query 0 may attend to key 0, yet its score is -inf: the mask was applied inverted"
    # exact arithmetic on small integers in fp32.
    expect(abs(got - want) < 1e-4,
           f"with q = k = all-ones of head size D={D}, every allowed score is D / sqrt(D) = {want:g}, got {got:g}"
           + (f": {guess}" if guess else "") + ". Dividing by sqrt(D) keeps the scores' variance ~1 at init, so the "
           "softmax does not saturate")


@given(shape=qk_shapes, seed=SEEDS)
def test_step2_softmax_gives_the_future_exactly_zero_weight(shape: tuple[int, int, int, int], seed: int) -> None:
    B, H, T, D = shape
    q, k = randn(B, H, T, D, seed=seed, std=3.0), randn(B, H, T, D, seed=seed + 1, std=3.0)
    scores = returned_tensor(probe(P.causal_scores, q, k, T), f"masked_attention_scores(q, k, causal_mask({T}))")
    w = scores.softmax(dim=-1)
    expect(not torch.isnan(w).any(),
           "softmax of your scores has NaN: some query has no allowed key (a row all -inf). The diagonal must "
           "be allowed: position i attends to itself")
    future = w[..., ~lower_triangle(T)]
    worst = future.max().item() if future.numel() else 0.0
    expect(bool((future == 0).all()),
           f"after the softmax, a query gives weight {worst:.3g} to a key in its future (j > i): "
           f"the model could read the token it is asked to predict. Every score above the diagonal must be -inf "
           f"(causal_mask and masked_attention_scores, step2_causal_mask.py)")
    # each row is a probability distribution; fp32 sum of <= 12 terms.
    assert_close(w.sum(-1), torch.ones(B, H, T), atol=1e-5, rtol=0, what="the attention weights' row sums")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_step2_masked_scores_are_minus_inf_in_every_dtype(dtype: torch.dtype) -> None:
    """Mixed-precision training (fp16 autocast on T4/V100, bf16 on newer GPUs) hands
    this function half-precision q and k; the CPU multiplies them too."""
    T = 5
    q, k = randn(2, 2, T, 8, seed=5).to(dtype), randn(2, 2, T, 8, seed=6).to(dtype)
    mask = lower_triangle(T)
    name = str(dtype).removeprefix("torch.")
    why = ("a large negative number is not -inf in every dtype: "
           + ("float16's largest magnitude is 65504, so -1e9 cannot be stored (masked_fill raises, and fp16 "
              "autocast training crashes)" if dtype == torch.float16 else
              "in bfloat16, -1e9 is an ordinary finite number (-9.98e+08)")
           + "; torch.finfo(dtype).min is finite too. The contract is -inf, which exists in every float dtype. "
             "Look at masked_attention_scores (step2_causal_mask.py)")
    try:
        got = probe(P.scores, q, k, mask)
    except RuntimeError as e:  # the learner's RuntimeError, raised here in a separated grading too
        got = e
    # Fail outside the `except`, so the report is the message, not a chained traceback.
    expect(not isinstance(got, RuntimeError),
           f"masked_attention_scores raised on {name} q and k: {got}. The likely cause: {why}")
    out = got["tensor"]
    expect(out is not None and tuple(out.shape) == (2, 2, T, T),
           f"masked_attention_scores on {name} q, k of shape (2, 2, {T}, 8) should return (2, 2, {T}, {T}), got "
           f"{tuple(out.shape) if out is not None else got['type']}")
    expect(out.dtype == dtype,
           f"masked_attention_scores on {name} q and k returned {out.dtype}: the scores must keep q's dtype (under "
           f"autocast a float32 copy of every (B, H, T, T) score doubles attention's memory). Compute them from q "
           f"and k without converting them or the result")
    masked = out[..., ~mask]
    wrong = masked[masked != float("-inf")]
    expect(wrong.numel() == 0,
           f"with {name} q and k, {wrong.numel()} of the {masked.numel()} masked scores (key j > query i) are "
           f"{wrong[0].item():.4g}, not -inf: {why}" if wrong.numel() else "")
    bad = out[..., mask][~torch.isfinite(out[..., mask])]
    expect(bad.numel() == 0,
           f"with {name} q and k, {bad.numel()} allowed scores (key j <= query i) are not finite "
           f"({bad[0].item() if bad.numel() else ''}): only the masked positions may be -inf. Check the mask's "
           f"direction and that nothing overflows (divide by sqrt(D), do not multiply)")
