"""Step 5: chunking, AdamW parameter groups, LR schedule, train_step, evaluate.

The model here is `_tiny_lm.TinyLM`, not the learner's TinyGPT: step 5 is about the
loop, and an unfinished step 1-4 must not fail it. The learner's functions run only in
the probes of tests/_probes_step5.py (in the worker, in a separated grading); the tests
send them the batches, seeds and gradients and compare what comes back with answers
they compute here, on their own TinyLM.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import _probes_step5 as P
from _step5_checks import as_float, chunk_problem, evaluate_result, loss_problem, train_step_result
from _support import assert_close, oracle, probe, recorded
from _tiny_lm import TinyLM
from strategies import expect

MODULE = "step5_train_loop"


def evaluate(model: dict, chunks: torch.Tensor, *args, **kwargs) -> tuple[dict, dict]:
    """The learner's evaluate on the model `model` describes (P.evaluate), its return contract
    (a dict of Python floats) checked first: (the result, what the probe saw)."""
    shown = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    seen = probe(P.evaluate, model, chunks, args, kwargs)
    return (evaluate_result(seen["out"], f"evaluate(model, ({len(chunks)}, {chunks.size(1)}) chunks, {shown})"),
            seen)


# ---------------------------------------------------------------- join_documents


@given(
    docs=st.lists(st.lists(st.integers(0, 300), max_size=12), max_size=8),
    eos=st.one_of(st.just(0), st.integers(301, 400)),
)
@example(docs=[[5, 6, 7], [], [8]], eos=0)  # GPT-2's <|endoftext|> is 50256, but an id of 0 is as valid
def test_join_documents_puts_eos_after_every_document(docs, eos):
    arr = probe(P.join_documents, docs, eos)  # what np.asarray makes of the result
    expected = [t for d in docs for t in (*d, eos)]
    assert arr["dtype"] == "int64", f"join_documents returned dtype {arr['dtype']}; expected int64 token ids"
    zero = (" An eos_id of 0 is a token id like any other: it was treated as 'no end token', as a test of its "
            "truth value does." if eos == 0 and arr["size"] == sum(map(len, docs)) else "")
    assert arr["ndim"] == 1 and arr["values"] == expected, (
        f"join_documents({docs}, eos_id={eos}) returned {arr['values']}, expected {expected}: every document "
        f"(even an empty one, and the last one) is followed by exactly one eos_id, in order.{zero}"
    )


# ------------------------------------------------------------------ chunk_tokens


@given(n=st.integers(1, 5000), block=st.integers(1, 64), kind=st.sampled_from(["list", "numpy", "tensor"]))
def test_chunk_tokens_keeps_order_and_loses_less_than_one_block(n, block, kind):
    if n < block:
        n = block + n  # at least one block; shorter corpora have their own test
    stream = torch.arange(n, dtype=torch.long) * 7 % 50257
    out = probe(P.chunk_tokens, stream, kind, block)  # the stream given as a list, a numpy array or a tensor
    problem = chunk_problem(stream, block, out)
    expect(problem is None, f"({kind} stream) {problem}")


def test_chunk_tokens_drops_only_the_final_partial_block_of_a_long_stream():
    """The seed lab's bug at its real scale: a tail lost per 1,000-token piece."""
    stream = torch.arange(12_345, dtype=torch.long)
    out = probe(P.chunk_tokens, stream, "numpy", 128)  # an int64 numpy array
    problem = chunk_problem(stream, 128, out)
    expect(problem is None, problem)


@pytest.mark.parametrize("n,block", [(0, 8), (5, 8), (127, 128)])
def test_chunk_tokens_on_a_corpus_shorter_than_one_block_says_so(n, block):
    with pytest.raises(ValueError) as e:
        probe(P.chunk_tokens, torch.arange(n, dtype=torch.long), "list", block)
    msg = str(e.value)
    assert str(block) in msg and str(n) in msg, (
        f"a {n}-token corpus cannot fill one block of {block}: the ValueError should name both numbers "
        f"and say what to change (a larger corpus or a smaller block_size); got {msg!r}"
    )


# ----------------------------------------------------------- configure_optimizer


def known_gradients(seed: int = 0) -> dict[str, torch.Tensor]:
    """A gradient for every parameter of TinyLM(), by name, for one optimizer step."""
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=g) for n, p in TinyLM().named_parameters()}


def adamw_after_one_step(lr: float, weight_decay: float, betas: tuple[float, float],
                         grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TinyLM()'s parameters after one step of configure_optimizer's contract: AdamW with
    `weight_decay` on the matrices and none on the rest, from the gradients `grads`."""
    model = TinyLM()
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=lr, betas=betas)
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()
    opt.step()
    return {n: p.detach() for n, p in model.named_parameters()}


def expect_one_adamw_step(seen: dict, lr: float, weight_decay: float, betas: tuple[float, float],
                          grads: dict[str, torch.Tensor]) -> None:
    """The optimizer configure_optimizer made, stepped once from `grads`, moved TinyLM()'s
    parameters as the contract's AdamW does."""
    expect(seen["after_step"] is not None, (
        f"one step of the optimizer configure_optimizer returned, from a known gradient for every parameter, "
        f"raised {seen['step_error']}. Look at configure_optimizer (step5_train_loop.py)"))
    for name, want in adamw_after_one_step(lr, weight_decay, betas, grads).items():
        # fp32 on CPU, the same update: only rounding differs (AdamW's first step is lr * g / |g| whatever the betas).
        assert_close(seen["after_step"][name], want, atol=1e-6, rtol=1e-5,
                     what=f"parameter {name} after one step of the optimizer from a known gradient",
                     hint=f"expected one AdamW step at lr={lr:g} with weight decay {weight_decay:g} on the "
                          f"parameters with dim >= 2 and 0.0 on the rest. Look at configure_optimizer "
                          f"(step5_train_loop.py)")


def test_configure_optimizer_decays_matrices_only_and_lists_every_parameter_once():
    model = TinyLM()  # the names and shapes of the parameters the probe's TinyLM() has
    grads = known_gradients()
    opt = probe(P.configure_optimizer, 1e-3, 0.1, None, grads)
    assert opt["is_adamw"], f"expected torch.optim.AdamW, got {opt['type']}"
    expect(opt["groups"] is not None, f"the optimizer's param_groups could not be read: {opt['step_error']}")
    seen: dict[str, float] = {}
    for group in opt["groups"]:
        for n in group["params"]:
            if n is None:  # not one of the model's parameters
                continue
            assert n not in seen, (
                "a parameter appears twice in the optimizer (the tied embedding / lm_head matrix?): a Parameter "
                "shared by two modules must be listed once, or AdamW updates it twice per step"
            )
            seen[n] = group["weight_decay"]
    names = [n for n, _ in model.named_parameters()]
    missing = [n for n in names if n not in seen]
    assert not missing, f"parameters missing from the optimizer, so they are never trained: {missing}"
    for n, p in model.named_parameters():
        want = 0.1 if p.dim() >= 2 else 0.0
        assert seen[n] == pytest.approx(want), (
            f"{n} (shape {tuple(p.shape)}) has weight_decay {seen[n]}, expected {want}: decay only "
            f"parameters with dim >= 2 (matrices, embeddings); biases and LayerNorm gains get 0.0"
        )
    for group in opt["groups"]:
        assert group["lr"] == pytest.approx(1e-3), f"param group lr is {group['lr']}, expected the given lr 1e-3"
    expect_one_adamw_step(opt, 1e-3, 0.1, (0.9, 0.95), grads)


def test_configure_optimizer_uses_the_given_betas():
    grads = known_gradients(1)
    opt = probe(P.configure_optimizer, 3e-4, 0.01, (0.8, 0.9), grads)
    expect(bool(opt["groups"]), f"the optimizer's param_groups could not be read: {opt['step_error']}")
    betas = opt["groups"][0]["betas"]
    assert tuple(betas) == (0.8, 0.9), (
        f"betas are {betas}, expected (0.8, 0.9): the betas given to configure_optimizer "
        f"must reach the optimizer"
    )
    expect_one_adamw_step(opt, 3e-4, 0.01, (0.8, 0.9), grads)


# ------------------------------------------------------------------------ lr_at


@recorded
def reference_lr(step: int, max_lr: float, warmup: int, total: int, min_lr: float) -> float:
    return oracle(MODULE).lr_at(step, max_lr, warmup, total, min_lr)


schedules = st.tuples(
    st.floats(1e-5, 1e-2), st.integers(1, 50), st.integers(1, 400), st.floats(0.0, 0.5)
).map(lambda t: (t[0], t[1], t[1] + t[2], t[0] * t[3]))  # (max_lr, warmup, total > warmup, min_lr <= max_lr)


def lr_values(steps, max_lr: float, warmup: int, total: int, min_lr: float) -> dict[int, object]:
    """The learner's lr_at at each of `steps`, by step: as it returned them (a float, an int, a
    tensor), or a description {"type", "repr"} of anything else."""
    steps = list(steps)
    return dict(zip(steps, probe(P.lr_at, steps, max_lr, warmup, total, min_lr)))


def _shown(got: object) -> str:
    if isinstance(got, torch.Tensor):
        return f"a tensor of shape {tuple(got.shape)}"
    if isinstance(got, dict):
        return f"a {got['type']} ({got['repr']})"
    return f"a {type(got).__name__} ({got!r})"


def lr_numbers(steps, max_lr: float, warmup: int, total: int, min_lr: float) -> dict[int, object]:
    """`lr_values`, each a number (a tensor stays a tensor, as the learner returned it)."""
    values = lr_values(steps, max_lr, warmup, total, min_lr)
    for s, got in values.items():
        expect(not isinstance(got, dict), (
            f"lr_at({s}, max_lr={max_lr:g}, warmup_steps={warmup}, total_steps={total}, min_lr={min_lr:g}) returned "
            f"{_shown(got)}: the docstring's contract is a Python float. Look at lr_at (step5_train_loop.py)"))
    return values


TYPE_SCHEDULES = [  # (max_lr, warmup_steps, total_steps, min_lr): a plain run, then the docstring's edge cases
    (1e-3, 10, 100, 1e-4), (1e-3, 0, 10, 1e-4), (1e-3, 5, 5, 1e-4), (1e-3, 5, 3, 0.0), (3e-4, 0, 0, 3e-5)]


def test_lr_at_returns_a_python_float():
    """The docstring's contract: a Python float, in every phase (warm-up, decay, past the
    end) and edge case. A 0-dim tensor (from torch.cos, say) is not one; numpy's float64,
    a subclass of float, is."""
    for max_lr, warmup, total, min_lr in TYPE_SCHEDULES:
        steps = sorted({0, max(warmup - 1, 0), warmup, (warmup + total) // 2, total, total + 7})
        for step, got in lr_values(steps, max_lr, warmup, total, min_lr).items():
            phase = ("warm-up" if step < warmup else "past the end" if step >= total else "cosine decay")
            what = _shown(got)
            expect(isinstance(got, float), (
                f"lr_at({step}, max_lr={max_lr:g}, warmup_steps={warmup}, total_steps={total}, min_lr={min_lr:g}) "
                f"returned {what}, in the {phase}: the docstring's contract is a Python float. The loop writes it "
                f"into the optimizer's parameter groups and logs it, where a tensor is not a number (json refuses "
                f"it). Look at lr_at (step5_train_loop.py)"))


@given(schedules)
def test_lr_at_hits_its_endpoints(schedule):
    max_lr, warmup, total, min_lr = schedule
    lr = lr_numbers({0, warmup - 1, total, total + 1, total + 100}, max_lr, warmup, total, min_lr).__getitem__
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
    lrs = list(lr_numbers(range(total + 1), max_lr, warmup, total, min_lr).values())
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
    got = lr_numbers([step], max_lr, warmup, total, min_lr)[step]
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
            got = lr_numbers([step], max_lr, warmup, total, min_lr)[step]
        except Exception as e:  # noqa: BLE001 - the learner's error, reported as a diagnosis
            pytest.fail(f"{what} raised {type(e).__name__}: {e}. {rule}. Look at lr_at (step5_train_loop.py)",
                        pytrace=False)
        want = lr_by_contract(step, max_lr, warmup, total, min_lr)
        # rel 1e-9: plain float arithmetic, only rounding differs between correct formulas.
        expect(got == pytest.approx(want, rel=1e-9, abs=1e-15), (
            f"{what} = {got:.6g}, expected {want:.6g}: {rule} (the docstring's edge cases). Look at lr_at "
            f"(step5_train_loop.py)"))


# ------------------------------------------------------------------- train_step


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
    # TinyLM(seed) and AdamW(lr=1e-2, no decay) behind a spy that records the gradients at step().
    spy = probe(P.train_step_with_a_spy, seed, batch(seed), max_norm)
    loss, norm = train_step_result(spy["out"])
    # The loss first: a loss of the wrong pairs changes the gradients, their norm and the update
    # too, and must be reported as what it is, not as a clipping mistake.
    problem = loss_problem(TinyLM(seed=seed), batch(seed), loss)
    expect(problem is None, problem)
    grad_norms = spy["grad_norms"]
    assert len(grad_norms) == 1, f"optimizer.step() was called {len(grad_norms)} times, expected once"
    seen = grad_norms[0]
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
    for name, want_p in want["params"].items():
        assert_close(spy["params"][name], want_p, atol=1e-6, rtol=1e-5, what=f"parameter {name} after one step",
                     hint="expected exactly one AdamW update from this batch's fresh, clipped gradients. Look at "
                          "train_step (step5_train_loop.py); stuck? `nox -s hint -- 5`")


def gradient_norm(model: TinyLM, x: torch.Tensor) -> float:
    """The total norm of the gradients of the model's loss on `x` (the inputs their own labels)."""
    model.zero_grad(set_to_none=True)
    _, loss = model(x, labels=x)
    loss.backward()
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()


def test_train_step_zeroes_old_gradients():
    # TinyLM(seed=1), SGD at lr 0 behind a spy: parameters never move, so both calls must see
    # exactly the same gradients.
    x = batch(1)
    spy = probe(P.train_step_twice, 1, x)
    grad_norms, (n1, n2) = spy["grad_norms"], spy["norms"]
    assert grad_norms[1] == pytest.approx(grad_norms[0], rel=1e-5), (
        f"the same batch on unchanged weights gave gradient norm {grad_norms[0]:.4g} the first time and "
        f"{grad_norms[1]:.4g} the second: the second step's gradients still hold the first's, and each "
        f"step must start from fresh gradients"
    )
    assert as_float(n2) == pytest.approx(as_float(n1), rel=1e-5), "the returned norm changed between identical steps"
    want = gradient_norm(TinyLM(seed=1), x)
    # fp32 on CPU, the same backward: only rounding differs.
    assert as_float(n1) == pytest.approx(want, rel=1e-5), (
        f"train_step returned the gradient norm {as_float(n1):.6g}, but the total norm of this batch's gradients "
        f"is {want:.6g} (max_grad_norm=1e9 clips nothing): the returned norm is the total norm of the fresh "
        f"gradients, over all parameters together. Look at train_step (step5_train_loop.py)"
    )


def test_train_step_returns_detached_scalars_and_puts_the_model_in_train_mode():
    # TinyLM(seed=2, dropout=0.5) given in eval mode, SGD at lr 0; the dropout mask drawn from seed 20.
    seen = probe(P.train_step_from_eval_mode, batch(2), 20)
    assert seen["training"], ("train_step left a model that came in eval mode in eval mode: training must run in "
                              "train mode (dropout is part of training)")
    loss, _ = train_step_result(seen["out"])  # (loss, grad_norm): 0-dim tensors, detached
    model = TinyLM(seed=2, dropout=0.5).train()
    torch.manual_seed(20)  # the same dropout mask
    with torch.no_grad():
        _, want = model(batch(2), labels=batch(2))
    # fp32 on CPU, the same forward and the same random draws: only rounding differs.
    expect(math.isclose(float(loss), float(want), rel_tol=1e-5, abs_tol=1e-6), (
        f"train_step returned the loss {float(loss):.6f}, but the model's loss on this batch in train mode (dropout "
        f"on, the same random draws) is {float(want):.6f}: the loss must be the model's own, in train mode, the "
        f"inputs being their own labels. Look at train_step (step5_train_loop.py)"))


_DTYPES = {str(d): d for d in (torch.bfloat16, torch.float16, torch.float32, torch.float64)}


def as_dtypes(seen: list) -> list:
    """The probe's dtype names as the dtypes they name (None: no autocast)."""
    return [None if d is None else _DTYPES.get(d, d) for d in seen]


def autocast_loss(seed: int, x: torch.Tensor, dtype: torch.dtype | None, batch_size: int | None = None) -> float:
    """TinyLM(seed)'s loss on `x` (the mean over its rows, `batch_size` rows at a time, each
    batch weighted by its rows), the forward under CPU autocast to `dtype` when one is given."""
    model = TinyLM(seed=seed).eval()
    size = batch_size or len(x)
    total = 0.0
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        for start in range(0, len(x), size):
            _, loss = model(x[start:start + size], labels=x[start:start + size])
            total += loss.double().item() * len(x[start:start + size])
    return total / len(x)


def returned_loss(out: dict) -> float | None:
    """The loss of a (loss, grad_norm) pair train_step returned, as a float (None: no pair)."""
    if out["kind"] != "sequence" or len(out["items"]) != 2:
        return None
    try:
        return as_float(out["items"][0])
    except (TypeError, ValueError, RuntimeError):
        return None


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
    # An AutocastSpy(seed=5) (TinyLM recording the autocast dtype of each forward), SGD at lr 0.
    seen = probe(P.train_step_autocast, 5, batch(5), dtype)
    dtypes = as_dtypes(seen["seen"])
    assert dtypes and all(d == dtype for d in dtypes), _autocast_message("train_step", dtype, dtypes)
    loss, want = returned_loss(seen["out"]), autocast_loss(5, batch(5), dtype)
    # The same forward under the same autocast: only rounding differs (more of it in 16 bits).
    tol = 1e-5 if dtype is None else 1e-3
    expect(loss is None or math.isclose(loss, want, rel_tol=tol, abs_tol=1e-6), (
        f"train_step(..., autocast_dtype={dtype}) returned the loss {loss}, but the model's loss on this batch "
        f"under that autocast is {want:.6f}: the loss must be the model's own on the batch, the inputs being "
        f"their own labels. Look at train_step (step5_train_loop.py)"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, None], ids=str)
def test_evaluate_runs_the_forward_under_the_requested_autocast(dtype):
    out, seen = evaluate({"cls": "AutocastSpy", "seed": 6}, batch(6, B=8), 4, autocast_dtype=dtype)
    dtypes = as_dtypes(seen["seen"])
    assert dtypes and all(d == dtype for d in dtypes), _autocast_message("evaluate", dtype, dtypes)
    want = autocast_loss(6, batch(6, B=8), dtype, batch_size=4)
    # The same forwards under the same autocast: only rounding differs (more of it in 16 bits).
    tol = 1e-5 if dtype is None else 1e-3
    expect(math.isclose(out["loss"], want, rel_tol=tol), (
        f"evaluate(model, (8, 16) chunks, 4, autocast_dtype={dtype}) gave loss {out['loss']:.6f}, expected "
        f"{want:.6f}: the mean over all chunks, each forward under that autocast, dropout off (evaluate, "
        f"step5_train_loop.py)"))


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
    out, seen = evaluate({"seed": seed, "dropout": 0.5, "training": True}, chunks, bs)
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
    assert seen["training"], ("evaluate left a model that came in train mode in eval mode: it must give the model "
                              "back in the mode it came in")


def test_evaluate_turns_dropout_off_and_restores_eval_mode():
    model = {"seed": 3, "dropout": 0.5, "training": True}  # TinyLM(seed=3, dropout=0.5), in train mode
    chunks = batch(3, B=8)
    torch.manual_seed(0)
    a = evaluate(model, chunks, 4)[0]["loss"]
    torch.manual_seed(1)
    b = evaluate(model, chunks, 4)[0]["loss"]
    assert a == b, (
        f"evaluating the same model on the same chunks gave {a:.6f} and {b:.6f}: dropout is still on, and "
        f"evaluation must run in eval mode"
    )
    _, seen = evaluate({**model, "training": False}, chunks, 4)  # the same model, in eval mode
    assert not seen["training"], ("evaluate put a model that came in eval mode back into train mode: it must give the "
                                  "model back in the mode it came in, not always in train mode")
    want = full_loss(TinyLM(seed=3, dropout=0.5), chunks)
    assert a == pytest.approx(want, rel=1e-5), (
        f"evaluate over 8 chunks in batches of 4 gave loss {a:.6f}, expected {want:.6f} (the mean over all chunks, "
        f"dropout off). Look at evaluate (step5_train_loop.py)"
    )


def test_evaluate_stops_after_max_batches():
    model = TinyLM(seed=4).train()
    chunks = batch(4, B=20)
    out, seen = evaluate({"seed": 4, "training": True}, chunks, 4, max_batches=2)
    want = full_loss(model, chunks[:8])
    assert out["loss"] == pytest.approx(want, rel=1e-5), (
        f"evaluate(..., batch_size=4, max_batches=2) gave {out['loss']:.6f}, expected the mean over the first "
        f"8 chunks {want:.6f}: stop after max_batches batches"
    )
    assert seen["training"], (
        "evaluate(..., max_batches=2) got a model in train mode and left it in eval mode: it must give the model "
        "back in the mode it came in on every way out, here after stopping at max_batches. Look at evaluate "
        "(step5_train_loop.py)")


def test_evaluate_with_no_chunks_is_a_clear_error():
    with pytest.raises(ValueError):
        probe(P.evaluate, {"seed": 0}, torch.zeros(0, 16, dtype=torch.long), (4,))
