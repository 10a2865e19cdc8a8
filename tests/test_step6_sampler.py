"""Step 6: sampling with temperature and top-k, a cropped context, generation.

Statistical tests draw ~20k samples with a fixed seed and compare the frequencies
with the distribution the sampler should have, by total variation distance (TV,
half the L1 distance). For 20k draws over a handful of tokens the sampling noise
in TV is about 0.005; the tolerance 0.02 is four times that, while the mistakes
these tests look for (temperature multiplied, top-k off by one) move TV by > 0.1.

The learner's code runs in the probes of tests/_probes_step6.py (see `_support.probe`):
the tests make the logits, prompts and models' tables, and check what comes back.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import _probes_step6 as P
from _step6_checks import TableModel, run_generate, sample, value
from _support import probe
from strategies import expect

DRAWS = 20_000
TV_TOL = 0.02
LOGITS = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5, 1.5])


def call(name: str, *args, **kwargs):
    """The learner's step-6 function `name` on these arguments (in the worker, in a separated grading)."""
    return value(probe(P.call, name, *args, **kwargs))


def draw(logits: torch.Tensor, n: int = DRAWS, seed: int = 0, **kw) -> torch.Tensor:
    """n draws from one row of logits, as frequencies over the vocabulary."""
    batch = logits.expand(n, -1).contiguous()
    g = torch.Generator().manual_seed(seed)
    out = sample(batch, generator=g, **kw)
    assert out.shape == (n, 1) and out.dtype == torch.long, (
        f"sample_next on ({n}, {logits.numel()}) logits should return ({n}, 1) int64 ids, got "
        f"{tuple(out.shape)} {out.dtype}"
    )
    return torch.bincount(out.flatten(), minlength=logits.numel()).double() / n


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * (p.double() - q.double()).abs().sum().item()


# -------------------------------------------------------------------- temperature


@given(temperature=st.floats(0.25, 4.0), seed=st.integers(0, 2**31 - 1))
def test_temperature_divides_the_logits(temperature, seed):
    freq = draw(LOGITS, seed=seed, temperature=temperature)
    want = (LOGITS / temperature).softmax(-1)
    d = tv(freq, want)
    if d > TV_TOL:
        multiplied = tv(freq, (LOGITS * temperature).softmax(-1))
        hint = (
            "they match softmax(logits * T): the temperature multiplied the logits, but it must divide them, so "
            "that T < 1 sharpens the distribution" if multiplied < TV_TOL else
            "each row must be drawn at random from the softmax of its temperature-scaled logits. Look at "
            "sample_next (step6_sampler.py); stuck? `nox -s hint -- 6`"
        )
        pytest.fail(
            f"at temperature {temperature:.3g} the sampled frequencies {freq.numpy().round(3)} are off "
            f"softmax(logits / T) = {want.numpy().round(3)} by total variation {d:.3f} > {TV_TOL}: {hint}",
            pytrace=False,
        )


def test_low_temperature_sharpens_and_high_temperature_flattens():
    cold = draw(LOGITS, temperature=0.5)
    hot = draw(LOGITS, temperature=2.0)
    best = int(LOGITS.argmax())
    assert cold[best] > hot[best] + 0.2, (
        f"the most likely token was drawn {cold[best]:.2f} of the time at T=0.5 and {hot[best]:.2f} at T=2: a lower "
        f"temperature must make it more likely"
        + (" (here it did the opposite: is the temperature multiplying the logits?)" if cold[best] < hot[best] else "")
    )


@given(seed=st.integers(0, 10_000), V=st.integers(2, 300))
def test_temperature_zero_is_greedy_without_dividing_by_zero(seed, V):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(64, V, generator=g) * 3
    logits[0, : V // 2] = float("-inf")  # a row with banned tokens: greedy must still pick its best allowed one
    best = logits.argmax(-1, keepdim=True)
    greedy = sample(logits, temperature=0.0, generator=g)
    if not (isinstance(greedy, torch.Tensor) and torch.equal(greedy, best)):
        got = (f"shape {tuple(greedy.shape)}, first ids {greedy.flatten()[:5].tolist()}"
               if isinstance(greedy, torch.Tensor) else repr(greedy))
        pytest.fail(
            f"sample_next(logits of shape (64, {V}), temperature=0.0) should be greedy: each row's id of its largest "
            f"logit, shape (B, 1) = (64, 1), every time, without dividing by zero (logits / 0 gives inf and NaN); "
            f"got {got} where the argmax is {best.flatten()[:5].tolist()}. Look at sample_next (step6_sampler.py)",
            pytrace=False)


@given(seed=st.integers(0, 10_000), V=st.integers(2, 300))
def test_temperature_towards_zero_tends_to_argmax(seed, V):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(64, V, generator=g) * 3
    best = logits.argmax(-1, keepdim=True)
    # Make the best logit clearly best, so T = 1e-3 puts all but ~e^-100 of the mass on it.
    logits.scatter_(1, best, logits.max(-1, keepdim=True).values + 0.1)
    cold = sample(logits, temperature=1e-3, generator=g)
    assert torch.equal(cold, best), (
        f"at temperature 1e-3 {int((cold != best).sum())} of 64 rows did not pick their argmax: dividing by a tiny "
        f"temperature should leave all the probability on the largest logit"
    )


BAD_ARGUMENTS = {  # id: (the bad argument, why sample_next must reject it)
    "temperature=-0.5": (dict(temperature=-0.5), "a negative temperature has no meaning: dividing by it turns the "
                                                 "distribution upside down, making the least likely token the most "
                                                 "likely"),
    "top_k=0": (dict(top_k=0), "top_k=0 would leave no token to draw (top_k=None, not 0, means no top-k)"),
    "top_k=-3": (dict(top_k=-3), "a negative top_k leaves no token to draw"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_temperature_or_top_k_is_a_value_error(case):
    kw, why = BAD_ARGUMENTS[case]
    what = f"sample_next(logits of shape (1, {LOGITS.numel()}), {case})"
    where = ("The docstring's contract: temperature < 0 or top_k < 1 raise ValueError, checked before the "
             "arguments are used. Look at sample_next (step6_sampler.py)")
    try:
        out = call("sample_next", LOGITS[None], **kw)
    except ValueError:
        return
    except Exception as e:  # noqa: BLE001 - the learner's error, reported as a diagnosis
        pytest.fail(f"{what} raised {type(e).__name__}: {e}, expected a ValueError that names the bad argument: "
                    f"{why}. {where}", pytrace=False)
    pytest.fail(f"{what} returned {out.tolist() if isinstance(out, torch.Tensor) else out!r} instead of raising "
                f"ValueError: {why}. {where}", pytrace=False)


# -------------------------------------------------------------------------- top-k


@given(seed=st.integers(0, 10_000), V=st.integers(2, 300), k=st.integers(1, 300), temperature=st.floats(0.5, 5.0))
def test_top_k_never_samples_outside_the_k_best(seed, V, k, temperature):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(256, V, generator=g)
    out = sample(logits, temperature=temperature, top_k=k, generator=g)
    allowed = logits.topk(min(k, V), dim=-1).indices
    ok = (allowed == out).any(-1)
    if not bool(ok.all()):
        row = int((~ok).nonzero()[0])
        rank = int((logits[row] > logits[row, out[row, 0]]).sum())
        pytest.fail(
            f"with top_k={k} (V={V}), row {row} drew token {int(out[row, 0])}, which is number {rank + 1} by logit: "
            f"only the {k} largest logits may be drawn: every token below the k-th largest must be impossible "
            f"before the draw, and exactly k survive (not k±1). Look at sample_next (step6_sampler.py)",
            pytrace=False,
        )


def test_top_k_keeps_the_kth_token_and_renormalises():
    logits = torch.tensor([3.0, 2.9, 2.8, 0.0, -1.0, 2.0])
    freq = draw(logits, top_k=3)
    want = torch.zeros(6, dtype=torch.float64)
    want[:3] = logits[:3].double().softmax(-1)
    d = tv(freq, want)
    assert d <= TV_TOL, (
        f"with top_k=3 the frequencies {freq.numpy().round(3)} should match the softmax over the 3 best logits "
        f"{want.numpy().round(3)} (TV {d:.3f} > {TV_TOL}): the k-th best token must stay drawable (k, not k-1) "
        f"and the others must be impossible (k, not k+1)"
    )


def test_top_k_of_one_is_greedy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(128, 10, generator=g)
    out = sample(logits, top_k=1, generator=g)
    best = logits.argmax(-1, keepdim=True)
    if not torch.equal(out, best):
        got = (f"{int((out != best).sum())} of 128 rows drew another token" if out.shape == best.shape else
               f"got shape {tuple(out.shape)}, expected (128, 1)")
        pytest.fail(f"sample_next(logits of shape (128, 10), top_k=1) must always draw each row's argmax: {got}. "
                    f"Look at sample_next (step6_sampler.py)", pytrace=False)


@pytest.mark.parametrize("top_k", [len(LOGITS), len(LOGITS) + 1, 100], ids=["top_k=V", "top_k=V+1", "top_k=100"])
def test_top_k_at_or_above_the_vocabulary_size_keeps_every_token(top_k):
    freq = draw(LOGITS, top_k=top_k)
    want = LOGITS.softmax(-1)
    d = tv(freq, want)
    expect(d <= TV_TOL, (
        f"with top_k={top_k} >= the vocabulary size V={len(LOGITS)} nothing is filtered: the frequencies "
        f"{freq.numpy().round(3)} should match softmax(logits) = {want.numpy().round(3)} (TV {d:.3f} > {TV_TOL}). "
        f"Look at sample_next (step6_sampler.py)"
    ))


@pytest.mark.parametrize("top_k", [1, 2, 3], ids=lambda k: f"top_k={k}")
def test_top_k_keeps_every_token_tied_with_the_kth(top_k):
    """Ties at the k-th largest logit stay in (the docstring's contract): here tokens 1, 2
    and 3 tie for second place, so top_k=2 and top_k=3 both keep all four best tokens."""
    logits = torch.tensor([2.0, 1.0, 1.0, 1.0, -1.0, 0.0]) if top_k > 1 else torch.tensor([1.0, 1.0, 1.0, -1.0, 0.0])
    kth = logits.topk(top_k).values[-1]
    want = torch.where(logits >= kth, logits, float("-inf")).double().softmax(-1)
    freq = draw(logits, top_k=top_k)
    d = tv(freq, want)
    expect(d <= TV_TOL, (
        f"with top_k={top_k} on logits {logits.tolist()} the k-th largest logit is {kth:g} and "
        f"{int((logits == kth).sum())} tokens share it: every token tied with the k-th largest stays drawable "
        f"(only logits strictly below it are removed), so the frequencies {freq.numpy().round(3)} should match "
        f"{want.numpy().round(3)} (TV {d:.3f} > {TV_TOL}). Look at sample_next (step6_sampler.py)"
    ))


# ------------------------------------------------------------------- crop_context


@given(B=st.integers(1, 4), T=st.integers(1, 80), block=st.integers(1, 40))
def test_crop_context_keeps_the_last_block_size_tokens(B, T, block):
    idx = torch.arange(B * T).view(B, T)
    out = call("crop_context", idx, block)
    want = idx[:, -block:] if T > block else idx
    assert out.shape == want.shape and torch.equal(out, want), (
        f"crop_context of a (B={B}, T={T}) context with block_size={block} should be the LAST "
        f"{min(T, block)} tokens, shape {tuple(want.shape)}; got shape {tuple(out.shape)}"
        + (f", first ids {out[0, :3].tolist()} instead of {want[0, :3].tolist()}" if out.shape == want.shape else "")
    )


# ----------------------------------------------------------------------- generate


def table(V: int, seed: int) -> torch.Tensor:
    return torch.randn(V, V, generator=torch.Generator().manual_seed(seed)) * 2


@given(B=st.integers(1, 3), T0=st.integers(1, 20), new=st.integers(0, 20), block=st.integers(1, 10),
       seed=st.integers(0, 1000))
def test_generate_keeps_the_prompt_adds_max_new_tokens_and_crops_the_context(B, T0, new, block, seed):
    V = 37
    model = TableModel(table(V, seed), block_size=block).train()
    prompt = torch.randint(0, V, (B, T0), generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    out = run_generate(model, prompt.clone(), new, temperature=1.0, generator=g)
    assert out.shape == (B, T0 + new), (
        f"generate with a (B={B}, T0={T0}) prompt and max_new_tokens={new} should return (B, T0 + {new}) = "
        f"{(B, T0 + new)}, got {tuple(out.shape)}: return the whole sequence, prompt included"
        + (" (it looks cropped to block_size — crop only what you feed the model)" if out.size(1) == block else "")
    )
    assert torch.equal(out[:, :T0], prompt), "the returned ids do not start with the prompt: keep the full history"
    assert len(model.calls) == new, f"the model was called {len(model.calls)} times for {new} new tokens, expected once per token"
    longest = max((n for n, _ in model.calls), default=0)
    assert longest <= block, (f"the model was fed {longest} tokens, more than block_size={block}: it must only "
                              f"ever see the last block_size tokens (crop_context)")
    assert all(not training for _, training in model.calls), ("generate ran the model in train mode: generation "
                                                              "runs in eval mode, with dropout off")
    assert model.training, ("generate left a model that came in train mode in eval mode: it must give the model "
                            "back in the mode it came in")


def test_greedy_generate_samples_from_the_last_position():
    V = 23
    tab = table(V, 7)
    model = TableModel(tab, block_size=4)
    prompt = torch.tensor([[3, 14, 15, 9, 2, 6]])
    out = run_generate(model, prompt, 8, temperature=0.0)
    want = prompt[0].tolist()
    for _ in range(8):
        want.append(int(tab[want[-1]].argmax()))
    assert out[0].tolist() == want, (
        f"greedy generation should follow the logits of the LAST position each time, the one that predicts "
        f"the next token; expected {want}, got {out[0].tolist()} (generate, step6_sampler.py)"
    )


def test_generate_is_reproducible_with_a_seeded_generator():
    tab = table(41, 3)
    model = TableModel(tab, block_size=8)
    prompt = torch.tensor([[1, 2, 3]])
    runs = [run_generate(model, prompt, 30, temperature=1.0, top_k=10,
                 generator=torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1]), ("two generations with generators seeded alike differ: every draw must "
                                           "come from the `generator` given to generate")
    assert not torch.equal(runs[0], runs[2]), "different seeds gave the same 30 tokens: is the generator used at all?"
    for run in (runs[0], runs[2]):  # what was drawn: the prompt kept, each new token among the 10 best after the last
        expect(run.shape == (1, 33) and torch.equal(run[:, :3], prompt), (
            f"generate with a (1, 3) prompt and max_new_tokens=30 should return the prompt followed by 30 tokens, "
            f"shape (1, 33); got {tuple(run.shape)}: {run.tolist()}. Look at generate (step6_sampler.py)"))
        ids = run[0].tolist()
        outside = [t for t in range(3, 33) if ids[t] not in tab[ids[t - 1]].topk(10).indices.tolist()]
        if outside:
            t = outside[0]
            pytest.fail(
                f"generate(..., top_k=10) drew token {ids[t]} at position {t}, after token {ids[t - 1]}, which is not "
                f"among the 10 most likely there: {ids}. Every step samples the model's prediction for the position "
                f"after the last one, with the top_k given to generate. Look at generate (step6_sampler.py)",
                pytrace=False)


def test_generate_stops_once_every_row_has_produced_eos():
    V, eos = 10, 9
    tab = torch.full((V, V), -20.0)
    tab[:, eos] = 20.0  # every token is followed by EOS (probability ~1 - e^-40)
    model = TableModel(tab, block_size=8)
    prompt = torch.tensor([[1, 2], [3, 4]])
    out = run_generate(model, prompt, 10, eos_id=eos, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3) and (out[:, -1] == eos).all(), (
        f"every row produced eos_id={eos} on the first new token, so generation should stop there: expected "
        f"shape (2, 3) ending in {eos}, got {out.tolist()}"
    )
    out = run_generate(model, prompt, 5, eos_id=None, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 7), f"with eos_id=None generate must produce all 5 new tokens, got shape {tuple(out.shape)}"


# ------------------------------------------- generate: a batch whose rows end at different times

EOS = 9
# Next token after each token, with probability 1 - ~1e-25 at any temperature up to 1:
# 1 -> EOS at once; 2 -> 3 -> 4 -> EOS (three steps later); 5 -> 6 -> 7 -> 8 -> 5 never ends;
# after EOS the table continues with 5, so a row that is not padded after its EOS shows it.
CHAIN = {0: 1, 1: EOS, 2: 3, 3: 4, 4: EOS, 5: 6, 6: 7, 7: 8, 8: 5, EOS: 5}


def relabel(eos: int):
    """Token ids with the end token moved to `eos` (9 or 0): tokens 9 and `eos` swap places.

    The same chains with eos_id=0: an id of 0 is as valid an end token as any other, and
    code that tests `if eos_id:` treats it as no end token at all."""
    return lambda t: {EOS: eos, eos: EOS}.get(t, t)


def chain_model(eos: int = EOS) -> TableModel:
    r = relabel(eos)
    tab = torch.full((10, 10), -30.0)
    for a, b in CHAIN.items():
        tab[r(a), r(b)] = 30.0
    return TableModel(tab, block_size=8)


def continue_chain(row: list[int], n: int, eos: int = EOS, stop: bool = True) -> list[int]:
    """What `generate` must return for one row: follow the chain; after an end token, only
    end tokens (`stop=False`: what it gives when the end token is ignored)."""
    r = relabel(eos)
    out = list(row)
    for _ in range(n):
        out.append(eos if stop and eos in out[len(row):] else r(CHAIN[r(out[-1])]))
    return out


@pytest.mark.parametrize("eos", [EOS, 0], ids=["eos_id=9", "eos_id=0"])
@pytest.mark.parametrize("temperature", [1.0, 0.0])
@pytest.mark.parametrize(("prompts", "max_new", "steps"), [
    ([[0, 1], [0, 2]], 10, 3),  # row 0 ends after 1 step, row 1 after 3: stop at 3
    ([[0, 2], [0, 1]], 10, 3),
    ([[0, 1], [0, 5]], 6, 6),  # row 1 never ends: all 6 steps, row 0 padded with EOS
    ([[0, 1], [0, 2]], 2, 2),  # max_new_tokens comes first
    ([[0, 2]], 10, 3),
])
def test_generate_stops_when_every_row_has_finished_and_pads_finished_rows_with_eos(
        temperature, prompts, max_new, steps, eos):
    prompts = [[relabel(eos)(t) for t in row] for row in prompts]
    prompt = torch.tensor(prompts)
    out = run_generate(chain_model(eos), prompt, max_new, temperature=temperature, eos_id=eos,
                       generator=torch.Generator().manual_seed(0))
    want = torch.tensor([continue_chain(r, steps, eos) for r in prompts])
    if out.shape == want.shape and torch.equal(out, want):
        return
    B, T0 = prompt.shape
    ends = [continue_chain(r, max_new, eos)[T0:] for r in prompts]
    first_end = min((e.index(eos) + 1 for e in ends if eos in e), default=None)
    ignored = torch.tensor([continue_chain(r, max_new, eos, stop=False) for r in prompts])
    got = out.tolist()
    if eos == 0 and out.shape == ignored.shape and torch.equal(out, ignored):
        why = ("generate behaved as if no eos_id had been given (no padding after a row's end token, no early "
               "stop): eos_id=0 was taken for 'no end token', as a test of its truth value does. 0 is a valid "
               "token id; only None means no end token")
    elif out.dim() == 2 and out.size(1) == T0 + (first_end or -1) and steps != first_end:
        why = ("generation stopped when the first row finished, while other rows were still going: it must go "
               "on until every row has produced eos_id (or max_new_tokens steps are done)")
    elif out.dim() == 2 and out.shape[0] == B and out.size(1) == T0 + steps + 1 and torch.equal(out[:, :-1], want):
        why = "one step too many: generation went on after the step on which the last row finished"
    elif out.dim() == 2 and out.size(1) < T0 + steps and torch.equal(out, want[:, : out.size(1)]):
        why = ("the sequence is cut short: the tokens of the step on which the last row finished were not "
               "appended, so that row's eos_id is lost")
    elif out.shape == want.shape:
        why = ("a row kept sampling after its eos_id: once a row has produced eos_id, every later position of "
               "that row must be eos_id too (it is finished; it only pads until the other rows end)")
    else:
        why = "expected (B, T0 + n) with n the number of steps taken"
    chain = {relabel(eos)(a): relabel(eos)(b) for a, b in CHAIN.items()}
    pytest.fail(
        f"generate(prompt={prompts}, max_new_tokens={max_new}, eos_id={eos}, temperature={temperature}) on a model "
        f"whose continuations are fixed ({chain}) should return {want.tolist()}, got {got}: {why}",
        pytrace=False,
    )


# ------------------------------------------------------ generate: the model's mode afterwards


@pytest.mark.parametrize("eos", [None, EOS], ids=["no eos_id", "every row ends early"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_generate_gives_the_model_back_in_the_mode_it_came_in(mode, eos):
    """Generation runs in eval mode; afterwards the model is in the mode it came in, on
    every way out of generate: after max_new_tokens steps, and after the early stop when
    every row has finished (rows [0, 1] and [0, 2] end after 1 and 3 of 10 steps)."""
    model = chain_model().train(mode == "train")
    out = run_generate(model, torch.tensor([[0, 1], [0, 2]]), 10, temperature=0.0, eos_id=eos)
    expect(model.calls and all(not training for _, training in model.calls), (
        f"generate ran the model in train mode ({sum(t for _, t in model.calls)} of {len(model.calls)} forward "
        f"passes): generation runs in eval mode, with dropout off. Look at generate (step6_sampler.py)"))
    early = eos is not None and out.dim() == 2 and out.size(1) < 2 + 10
    expect(model.training == (mode == "train"), (
        f"generate(..., eos_id={eos}) got a model in {mode} mode and left it in "
        f"{'train' if model.training else 'eval'} mode: it must give the model back in the mode it came in"
        + (" — not always in train mode (a model in eval mode, as for sampling after training, must stay in it)"
           if mode == "eval" else "")
        + (f" — here generation stopped early ({out.size(1) - 2} of 10 steps) because every row had finished, "
           f"and the mode was not restored on that way out" if early and mode == "train" else "")
        + ". Look at generate (step6_sampler.py)"))
    # What it generated: greedy on the fixed chain, every row's continuation is known.
    want = torch.tensor([continue_chain(r, 10 if eos is None else 3, stop=eos is not None) for r in ([0, 1], [0, 2])])
    expect(out.shape == want.shape and torch.equal(out, want), (
        f"greedy generate(prompt=[[0, 1], [0, 2]], max_new_tokens=10, eos_id={eos}) on a model whose continuations "
        f"are fixed ({CHAIN}) should return {want.tolist()}, got {out.tolist()}. Look at generate "
        f"(step6_sampler.py)"))
