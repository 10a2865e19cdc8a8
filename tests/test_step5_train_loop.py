"""Step 5: chunking, AdamW parameter groups, LR schedule, train_step, evaluate.

The model here is `_tiny_lm.TinyLM`, not the learner's TinyGPT: step 5 is about the
loop, and an unfinished step 1-4 must not fail it.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from _step5_checks import chunk_problem, evaluate_result, loss_problem, train_step_result
from _support import assert_close, not_implemented_guard, oracle, recorded, student
from _tiny_lm import TinyLM
from strategies import expect

MODULE = "step5_train_loop"


def s5():
    return student(MODULE)


def call(name: str, *args, **kwargs):
    return not_implemented_guard(getattr(s5(), name), *args, **kwargs)


def train_step(*args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The learner's train_step, its return contract checked before a test reads the values."""
    return train_step_result(call("train_step", *args, **kwargs))


def evaluate(model, chunks, *args, **kwargs) -> dict:
    """The learner's evaluate, its return contract (a dict of Python floats) checked first."""
    shown = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    return evaluate_result(call("evaluate", model, chunks, *args, **kwargs),
                           f"evaluate(model, ({len(chunks)}, {chunks.size(1)}) chunks, {shown})")


# ---------------------------------------------------------------- join_documents


@given(
    docs=st.lists(st.lists(st.integers(0, 300), max_size=12), max_size=8),
    eos=st.one_of(st.just(0), st.integers(301, 400)),
)
@example(docs=[[5, 6, 7], [], [8]], eos=0)  # GPT-2's <|endoftext|> is 50256, but an id of 0 is as valid
def test_join_documents_puts_eos_after_every_document(docs, eos):
    out = call("join_documents", docs, eos)
    expected = [t for d in docs for t in (*d, eos)]
    arr = np.asarray(out)
    assert arr.dtype == np.int64, f"join_documents returned dtype {arr.dtype}; expected int64 token ids"
    zero = (" An eos_id of 0 is a token id like any other: it was treated as 'no end token', as a test of its "
            "truth value does." if eos == 0 and arr.size == sum(map(len, docs)) else "")
    assert arr.ndim == 1 and arr.tolist() == expected, (
        f"join_documents({docs}, eos_id={eos}) returned {arr.tolist()}, expected {expected}: every document "
        f"(even an empty one, and the last one) is followed by exactly one eos_id, in order.{zero}"
    )


# ------------------------------------------------------------------ chunk_tokens


@given(n=st.integers(1, 5000), block=st.integers(1, 64), kind=st.sampled_from(["list", "numpy", "tensor"]))
def test_chunk_tokens_keeps_order_and_loses_less_than_one_block(n, block, kind):
    if n < block:
        n = block + n  # at least one block; shorter corpora have their own test
    stream = torch.arange(n, dtype=torch.long) * 7 % 50257
    given_stream = {"list": stream.tolist(), "numpy": stream.numpy(), "tensor": stream}[kind]
    out = call("chunk_tokens", given_stream, block)
    problem = chunk_problem(stream, block, out)
    expect(problem is None, f"({kind} stream) {problem}")


def test_chunk_tokens_drops_only_the_final_partial_block_of_a_long_stream():
    """The seed lab's bug at its real scale: a tail lost per 1,000-token piece."""
    stream = np.arange(12_345, dtype=np.int64)
    out = call("chunk_tokens", stream, 128)
    problem = chunk_problem(torch.from_numpy(stream), 128, out)
    expect(problem is None, problem)


@pytest.mark.parametrize("n,block", [(0, 8), (5, 8), (127, 128)])
def test_chunk_tokens_on_a_corpus_shorter_than_one_block_says_so(n, block):
    with pytest.raises(ValueError) as e:
        call("chunk_tokens", list(range(n)), block)
    msg = str(e.value)
    assert str(block) in msg and str(n) in msg, (
        f"a {n}-token corpus cannot fill one block of {block}: the ValueError should name both numbers "
        f"and say what to change (a larger corpus or a smaller block_size); got {msg!r}"
    )


# ----------------------------------------------------------- configure_optimizer


def test_configure_optimizer_decays_matrices_only_and_lists_every_parameter_once():
    model = TinyLM()
    opt = call("configure_optimizer", model, 1e-3, 0.1)
    assert isinstance(opt, torch.optim.AdamW), f"expected torch.optim.AdamW, got {type(opt).__name__}"
    seen: dict[int, float] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            assert id(p) not in seen, (
                "a parameter appears twice in the optimizer (the tied embedding / lm_head matrix?): a Parameter "
                "shared by two modules must be listed once, or AdamW updates it twice per step"
            )
            seen[id(p)] = group["weight_decay"]
    names = {id(p): n for n, p in model.named_parameters()}
    missing = [names[i] for i in names if i not in seen]
    assert not missing, f"parameters missing from the optimizer, so they are never trained: {missing}"
    for n, p in model.named_parameters():
        want = 0.1 if p.dim() >= 2 else 0.0
        assert seen[id(p)] == pytest.approx(want), (
            f"{n} (shape {tuple(p.shape)}) has weight_decay {seen[id(p)]}, expected {want}: decay only "
            f"parameters with dim >= 2 (matrices, embeddings); biases and LayerNorm gains get 0.0"
        )
    for group in opt.param_groups:
        assert group["lr"] == pytest.approx(1e-3), f"param group lr is {group['lr']}, expected the given lr 1e-3"


def test_configure_optimizer_uses_the_given_betas():
    opt = call("configure_optimizer", TinyLM(), 3e-4, 0.01, betas=(0.8, 0.9))
    assert tuple(opt.param_groups[0]["betas"]) == (0.8, 0.9), (
        f"betas are {opt.param_groups[0]['betas']}, expected (0.8, 0.9): the betas given to configure_optimizer "
        f"must reach the optimizer"
    )


# ------------------------------------------------------------------------ lr_at


@recorded
def reference_lr(step: int, max_lr: float, warmup: int, total: int, min_lr: float) -> float:
    return oracle(MODULE).lr_at(step, max_lr, warmup, total, min_lr)


schedules = st.tuples(
    st.floats(1e-5, 1e-2), st.integers(1, 50), st.integers(1, 400), st.floats(0.0, 0.5)
).map(lambda t: (t[0], t[1], t[1] + t[2], t[0] * t[3]))  # (max_lr, warmup, total > warmup, min_lr <= max_lr)


TYPE_SCHEDULES = [  # (max_lr, warmup_steps, total_steps, min_lr): a plain run, then the docstring's edge cases
    (1e-3, 10, 100, 1e-4), (1e-3, 0, 10, 1e-4), (1e-3, 5, 5, 1e-4), (1e-3, 5, 3, 0.0), (3e-4, 0, 0, 3e-5)]


def test_lr_at_returns_a_python_float():
    """The docstring's contract: a Python float, in every phase (warm-up, decay, past the
    end) and edge case. A 0-dim tensor (from torch.cos, say) is not one; numpy's float64,
    a subclass of float, is."""
    for max_lr, warmup, total, min_lr in TYPE_SCHEDULES:
        for step in sorted({0, max(warmup - 1, 0), warmup, (warmup + total) // 2, total, total + 7}):
            got = call("lr_at", step, max_lr, warmup, total, min_lr)
            phase = ("warm-up" if step < warmup else "past the end" if step >= total else "cosine decay")
            what = (f"a tensor of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else
                    f"a {type(got).__name__} ({got!r})")
            expect(isinstance(got, float), (
                f"lr_at({step}, max_lr={max_lr:g}, warmup_steps={warmup}, total_steps={total}, min_lr={min_lr:g}) "
                f"returned {what}, in the {phase}: the docstring's contract is a Python float. The loop writes it "
                f"into the optimizer's parameter groups and logs it, where a tensor is not a number (json refuses "
                f"it). Look at lr_at (step5_train_loop.py)"))


@given(schedules)
def test_lr_at_hits_its_endpoints(schedule):
    max_lr, warmup, total, min_lr = schedule
    lr = lambda s: call("lr_at", s, max_lr, warmup, total, min_lr)  # noqa: E731
    # rel 1e-9: plain float arithmetic, only rounding differs between correct formulas.
    assert lr(0) == pytest.approx(max_lr / warmup, rel=1e-9), (
        f"lr_at(0) = {lr(0):.6g}, expected max_lr / warmup_steps = {max_lr / warmup:.6g}: the warm-up rises in "
        f"equal steps from the first update on, so the first step is not wasted at lr 0 "
        f"(lr_at, step5_train_loop.py)"
    )
    assert lr(warmup - 1) == pytest.approx(max_lr, rel=1e-9), (
        f"lr_at(warmup_steps - 1 = {warmup - 1}) = {lr(warmup - 1):.6g}, expected the peak max_lr = {max_lr:.6g}"
    )
    for s in (total, total + 1, total + 100):
        assert lr(s) == pytest.approx(min_lr, rel=1e-9, abs=1e-15), (
            f"lr_at({s}) with total_steps={total} is {lr(s):.6g}, expected min_lr = {min_lr:.6g}: the cosine "
            f"reaches min_lr at total_steps and stays there (does your schedule decay at all?)"
        )


@given(schedules)
def test_lr_at_warms_up_then_decays_monotonically(schedule):
    max_lr, warmup, total, min_lr = schedule
    lrs = [call("lr_at", s, max_lr, warmup, total, min_lr) for s in range(total + 1)]
    tol = 1e-12 * max_lr  # float rounding only
    for s in range(1, total + 1):
        if s < warmup:
            assert lrs[s] > lrs[s - 1], f"during warmup the lr must rise: lr_at({s - 1})={lrs[s - 1]:.6g}, lr_at({s})={lrs[s]:.6g}"
        else:
            assert lrs[s] <= lrs[s - 1] + tol, (
                f"after warmup the lr must never rise: lr_at({s - 1})={lrs[s - 1]:.6g} < lr_at({s})={lrs[s]:.6g}"
            )
        low = 0.0 if s < warmup else min_lr - tol  # warmup starts below min_lr
        assert low <= lrs[s] <= max_lr + tol, f"lr_at({s}) = {lrs[s]:.6g} is outside [{low:.6g}, max_lr={max_lr:.6g}]"


@given(schedules, st.floats(0.0, 1.0))
def test_lr_at_matches_the_reference_cosine(schedule, frac):
    max_lr, warmup, total, min_lr = schedule
    step = int(frac * (total + 5))
    got = call("lr_at", step, max_lr, warmup, total, min_lr)
    want = reference_lr(step, max_lr, warmup, total, min_lr)
    progress = (step - warmup) / (total - warmup)
    from_zero = min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * min(step / total, 1.0)))
    mistake = (" Your value is what a cosine that counts its progress from step 0 gives: the decay must start "
               "where the warm-up ends." if step >= warmup and math.isclose(got, from_zero, rel_tol=1e-9)
               and not math.isclose(from_zero, want, rel_tol=1e-9) else "")
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15), (
        f"lr_at({step}, max_lr={max_lr:.3g}, warmup={warmup}, total={total}, min_lr={min_lr:.3g}) = {got:.6g}, "
        f"expected {want:.6g}. After warm-up the lr follows half a cosine from max_lr, where the warm-up ends, "
        f"down to min_lr at total_steps; this step is "
        + (f"{progress:.1%} of the way through that decay." if 0 <= progress <= 1 else
           ("still in the warm-up." if progress < 0 else "past total_steps."))
        + mistake + " Look at lr_at (step5_train_loop.py); stuck? `nox -s hint -- 5`"
    )


def lr_by_contract(step: int, max_lr: float, warmup: int, total: int, min_lr: float) -> float:
    """lr_at's docstring, edge cases included: warm-up first, then past-the-end, then the cosine."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


EDGE_SCHEDULES = {  # id: (warmup_steps, total_steps, what the docstring says about it)
    "no-warmup": (0, 10, "warmup_steps == 0 means no warm-up: the cosine starts at max_lr at step 0 and reaches "
                         "min_lr at total_steps"),
    "no-warmup-no-decay": (0, 0, "warmup_steps == total_steps == 0: no warm-up and no decay, so every step is "
                                 "past the end, at min_lr"),
    "total-equals-warmup": (5, 5, "total_steps == warmup_steps leaves no room for a decay: the warm-up rises to "
                                  "max_lr at step warmup_steps - 1, then the lr is min_lr from step warmup_steps on"),
    "total-inside-warmup": (5, 3, "total_steps < warmup_steps: the warm-up still runs in full (steps 0 .. "
                                  "warmup_steps - 1), then the lr is min_lr from step warmup_steps on"),
}


@pytest.mark.parametrize("case", EDGE_SCHEDULES)
def test_lr_at_handles_no_warmup_and_no_room_to_decay(case):
    warmup, total, rule = EDGE_SCHEDULES[case]
    max_lr, min_lr = 1e-3, 1e-4
    for step in range(max(warmup, total) + 3):
        what = f"lr_at({step}, max_lr={max_lr:g}, warmup_steps={warmup}, total_steps={total}, min_lr={min_lr:g})"
        try:
            got = call("lr_at", step, max_lr, warmup, total, min_lr)
        except Exception as e:  # noqa: BLE001 - the learner's error, reported as a diagnosis
            pytest.fail(f"{what} raised {type(e).__name__}: {e}. {rule}. Look at lr_at (step5_train_loop.py)",
                        pytrace=False)
        want = lr_by_contract(step, max_lr, warmup, total, min_lr)
        # rel 1e-9: plain float arithmetic, only rounding differs between correct formulas.
        expect(got == pytest.approx(want, rel=1e-9, abs=1e-15), (
            f"{what} = {got:.6g}, expected {want:.6g}: {rule} (the docstring's edge cases). Look at lr_at "
            f"(step5_train_loop.py)"))


# ------------------------------------------------------------------- train_step


class SpyOptimizer(torch.optim.Optimizer):
    """Wraps a real optimizer; records the gradients as they are when step() runs."""

    def __init__(self, inner: torch.optim.Optimizer, model: torch.nn.Module) -> None:
        self.inner, self.model = inner, model
        self.grad_norms: list[float] = []
        self.grads: list[list[torch.Tensor | None]] = []
        self.zero_grad_calls = 0

    @property
    def param_groups(self):
        return self.inner.param_groups

    @property
    def state(self):
        return self.inner.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.zero_grad_calls += 1
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        grads = [None if p.grad is None else p.grad.detach().clone() for p in self.model.parameters()]
        self.grads.append(grads)
        self.grad_norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads if g is not None])).item())
        return self.inner.step(closure)


def batch(seed: int, B: int = 4, T: int = 16, V: int = 97) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@recorded
def reference_train_step(seed: int, max_norm: float) -> dict:
    """Loss, pre-clip norm and the parameters after one reference step with AdamW."""
    torch.manual_seed(seed)
    model = TinyLM(seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    loss, norm = oracle(MODULE).train_step(model, batch(seed), opt, max_norm)
    return {"loss": loss, "norm": norm, "params": dict(model.state_dict())}


@given(seed=st.integers(0, 10_000), max_norm=st.sampled_from([1e-3, 0.05, 1.0, 1e6]))
def test_train_step_clips_before_the_optimizer_step(seed, max_norm):
    torch.manual_seed(seed)
    model = TinyLM(seed=seed)
    before = copy.deepcopy(model)
    spy = SpyOptimizer(torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0), model)
    loss, norm = train_step(model, batch(seed), spy, max_norm)
    # The loss first: a loss of the wrong pairs changes the gradients, their norm and the update
    # too, and must be reported as what it is, not as a clipping mistake.
    problem = loss_problem(before, batch(seed), loss)
    expect(problem is None, problem)
    assert len(spy.grad_norms) == 1, f"optimizer.step() was called {len(spy.grad_norms)} times, expected once"
    seen = spy.grad_norms[0]
    # 1e-4 relative: clip_grad_norm_ scales by max_norm / (norm + 1e-6), plus fp32 rounding.
    assert seen <= max_norm * (1 + 1e-4), (
        f"when optimizer.step() ran, the total gradient norm was {seen:.4g} > max_grad_norm={max_norm}: the "
        f"gradients were not clipped before the optimizer used them (clipping after the step changes nothing "
        f"it used)"
    )
    want = reference_train_step(seed, max_norm)
    assert_close(norm.detach().reshape(()).float(), want["norm"].float(), atol=1e-6, rtol=1e-5,
                 what="the returned gradient norm",
                 hint="expected the total gradient norm from before clipping, not the clipped one")
    # fp32 on CPU, same operations in the same order: only rounding differs.
    assert_close(loss.detach().reshape(()), want["loss"], atol=1e-6, rtol=1e-5, what="the returned loss",
                 hint="expected the model's loss on this batch (the inputs are their own labels), before the "
                      "update")
    for name, p in model.state_dict().items():
        assert_close(p, want["params"][name], atol=1e-6, rtol=1e-5, what=f"parameter {name} after one step",
                     hint="expected exactly one AdamW update from this batch's fresh, clipped gradients. Look at "
                          "train_step (step5_train_loop.py); stuck? `nox -s hint -- 5`")


def test_train_step_zeroes_old_gradients():
    model = TinyLM(seed=1)
    # lr 0: parameters never move, so both calls must see exactly the same gradients.
    spy = SpyOptimizer(torch.optim.SGD(model.parameters(), lr=0.0), model)
    x = batch(1)
    _, n1 = call("train_step", model, x, spy, 1e9)
    _, n2 = call("train_step", model, x, spy, 1e9)
    assert spy.grad_norms[1] == pytest.approx(spy.grad_norms[0], rel=1e-5), (
        f"the same batch on unchanged weights gave gradient norm {spy.grad_norms[0]:.4g} the first time and "
        f"{spy.grad_norms[1]:.4g} the second: the second step's gradients still hold the first's, and each "
        f"step must start from fresh gradients"
    )
    assert float(n2) == pytest.approx(float(n1), rel=1e-5), "the returned norm changed between identical steps"


def test_train_step_returns_detached_scalars_and_puts_the_model_in_train_mode():
    model = TinyLM(seed=2, dropout=0.5).eval()
    out = call("train_step", model, batch(2), torch.optim.SGD(model.parameters(), lr=0.0), 1.0)
    assert model.training, ("train_step left a model that came in eval mode in eval mode: training must run in "
                            "train mode (dropout is part of training)")
    train_step_result(out)  # (loss, grad_norm): 0-dim tensors, detached


class AutocastSpy(TinyLM):
    """TinyLM that records, at every forward, whether CPU autocast is on and its dtype."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.seen: list[torch.dtype | None] = []

    def forward(self, input_ids, labels=None):
        on = torch.is_autocast_enabled(input_ids.device.type)
        self.seen.append(torch.get_autocast_dtype(input_ids.device.type) if on else None)
        return super().forward(input_ids, labels)


def _autocast_message(fn: str, want, seen) -> str:
    if want is None:
        return (f"{fn}(..., autocast_dtype=None) ran the forward under autocast ({seen}): None means full precision, "
                f"no autocast at all. Look at {fn} (step5_train_loop.py)")
    if not seen or all(d is None for d in seen):
        why = ("the forward ran without autocast: autocast_dtype was ignored, or autocast was set up for another "
               "device type than the inputs' (a hard-coded 'cuda' does nothing for these CPU inputs), so a GPU run "
               "silently loses bf16 and its speed")
    else:
        why = ("autocast ran with another dtype than the one asked for: the device's default (bf16 on CPU, fp16 on "
               "CUDA) instead of autocast_dtype")
    return (f"{fn}(..., autocast_dtype={want}) should run the model's forward under autocast with {want}; saw {seen}: "
            f"{why}. Look at {fn} (step5_train_loop.py)")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, None], ids=str)
def test_train_step_runs_the_forward_under_the_requested_autocast(dtype):
    model = AutocastSpy(seed=5)
    call("train_step", model, batch(5), torch.optim.SGD(model.parameters(), lr=0.0), 1.0, autocast_dtype=dtype)
    assert model.seen and all(d == dtype for d in model.seen), _autocast_message("train_step", dtype, model.seen)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, None], ids=str)
def test_evaluate_runs_the_forward_under_the_requested_autocast(dtype):
    model = AutocastSpy(seed=6)
    evaluate(model, batch(6, B=8), 4, autocast_dtype=dtype)
    assert model.seen and all(d == dtype for d in model.seen), _autocast_message("evaluate", dtype, model.seen)


# --------------------------------------------------------------------- evaluate


def full_loss(model: TinyLM, chunks: torch.Tensor) -> float:
    """The mean over every chunk at once, in eval mode (all chunks have the same length)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        _, loss = model(chunks, labels=chunks)
    model.train(was)
    return loss.item()


@given(n=st.integers(1, 23), bs=st.integers(1, 8), seed=st.integers(0, 1000))
def test_evaluate_is_the_token_weighted_mean_in_eval_mode(n, bs, seed):
    model = TinyLM(seed=seed, dropout=0.5).train()
    chunks = batch(seed, B=n)
    out = evaluate(model, chunks, bs)
    want = full_loss(model, chunks)
    short = n % bs
    # 1e-5 relative: fp32 losses of different batchings, averaged in float64.
    assert out["loss"] == pytest.approx(want, rel=1e-5), (
        f"evaluate over {n} chunks in batches of {bs} gave loss {out['loss']:.6f}, expected {want:.6f} "
        f"(the mean over all chunks, dropout off). "
        + (f"The last batch has only {short} rows, and a plain mean of the batch losses gives it as much weight "
           f"as a full one: every chunk must count equally. " if short else "")
        + "Also check that dropout is off (eval mode) during the forward passes (evaluate, step5_train_loop.py)."
    )
    assert out["perplexity"] == pytest.approx(math.exp(out["loss"]), rel=1e-9), (
        f"perplexity {out['perplexity']:.6g} should be exp(loss) = {math.exp(out['loss']):.6g}"
    )
    assert model.training, ("evaluate left a model that came in train mode in eval mode: it must give the model "
                            "back in the mode it came in")


def test_evaluate_turns_dropout_off_and_restores_eval_mode():
    model = TinyLM(seed=3, dropout=0.5).train()
    chunks = batch(3, B=8)
    torch.manual_seed(0)
    a = evaluate(model, chunks, 4)["loss"]
    torch.manual_seed(1)
    b = evaluate(model, chunks, 4)["loss"]
    assert a == b, (
        f"evaluating the same model on the same chunks gave {a:.6f} and {b:.6f}: dropout is still on, and "
        f"evaluation must run in eval mode"
    )
    model.eval()
    evaluate(model, chunks, 4)
    assert not model.training, ("evaluate put a model that came in eval mode back into train mode: it must give the "
                                "model back in the mode it came in, not always in train mode")


def test_evaluate_stops_after_max_batches():
    model = TinyLM(seed=4).train()
    chunks = batch(4, B=20)
    out = evaluate(model, chunks, 4, max_batches=2)
    want = full_loss(model, chunks[:8])
    assert out["loss"] == pytest.approx(want, rel=1e-5), (
        f"evaluate(..., batch_size=4, max_batches=2) gave {out['loss']:.6f}, expected the mean over the first "
        f"8 chunks {want:.6f}: stop after max_batches batches"
    )
    assert model.training, (
        "evaluate(..., max_batches=2) got a model in train mode and left it in eval mode: it must give the model "
        "back in the mode it came in on every way out, here after stopping at max_batches. Look at evaluate "
        "(step5_train_loop.py)")


def test_evaluate_with_no_chunks_is_a_clear_error():
    with pytest.raises(ValueError):
        call("evaluate", TinyLM(), torch.zeros(0, 16, dtype=torch.long), 4)
