"""Step 5 diagnoses shared by its test files: what `chunk_tokens` and `train_step` returned.

Each test file checks these contracts before it uses the result, so whichever test
runs first reports the real problem (overlapping chunks, a float loss) instead of a
confusing symptom further on.

These run in the judge: they read what a probe (tests/_probes_step5.py) sent back, never
the learner's objects. A returned value arrives as `_probes_step5.returned` describes it:
{"kind": "tensor", "value", "requires_grad"} or {"kind": "float" | "sequence" | "dict" |
"other", "type", "repr", ...}; `chunk_tokens`'s result as the tensor itself or
{"kind": "other", "type", "dtype"}.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn

WHERE_CHUNK = "Look at chunk_tokens (step5_train_loop.py); stuck? `nox -s hint -- 5`"
WHERE_STEP = "Look at what train_step returns (step5_train_loop.py)"


def _find_slice(stream: torch.Tensor, row: torch.Tensor) -> int | None:
    """The offset j with stream[j:j+len(row)] == row (the first one), or None."""
    T = row.numel()
    for j in (stream[: stream.numel() - T + 1] == row[0]).nonzero().flatten().tolist():
        if torch.equal(stream[j : j + T], row):
            return j
    return None


def chunk_problem(stream: torch.Tensor, block: int, out: object) -> str | None:
    """What is wrong with `out = chunk_tokens(stream, block)`, or None when it meets the contract.

    The contract: an (N // block, block) int64 tensor whose row i is
    stream[i*block:(i+1)*block] — the chunks tile the stream in order, without overlap,
    and only the final partial block is lost. `stream` is a 1-D int64 tensor.
    """
    n, rows = stream.numel(), stream.numel() // block
    call = f"chunk_tokens(a stream of {n} tokens, block_size={block})"
    tile = (f"The chunks must tile the stream without overlap: {n} // {block} = {rows} rows, row i = "
            f"stream[i*block_size:(i+1)*block_size]. {WHERE_CHUNK}")
    if not isinstance(out, torch.Tensor) or out.dtype != torch.long:
        kind, dtype = ((type(out).__name__, getattr(out, "dtype", "")) if not isinstance(out, dict) else
                       (out.get("type"), out.get("dtype", "")))
        return (f"{call} should return an int64 torch.Tensor, got {kind} "
                f"{dtype}: token ids are int64, the dtype nn.Embedding and cross_entropy "
                f"expect. {WHERE_CHUNK}")
    if out.dim() != 2 or out.size(1) != block:
        return f"{call} should return ({rows}, {block}) chunks, got shape {tuple(out.shape)}. {tile}"
    if out.size(0) > rows:
        starts = [_find_slice(stream, out[i]) for i in range(min(2, out.size(0)))]
        step = (f" Row 1 starts {starts[1] - starts[0]} token(s) after row 0, not {block} after it: consecutive "
                f"windows that share {block - (starts[1] - starts[0])} tokens (a sliding window)."
                if None not in starts and 0 < starts[1] - starts[0] < block else "")
        return (f"{call} returned {out.size(0)} rows, {out.numel()} tokens in all: more than the {n} tokens the "
                f"stream holds, so some tokens appear in more than one chunk (overlapping or repeated chunks)."
                f"{step} {tile}")
    if out.size(0) < rows:
        return (f"{call} returned {out.size(0)} rows and so lost {n - out.numel()} tokens; only the final partial "
                f"block (< {block} tokens of the whole corpus) may be dropped. Losing more means the stream was "
                f"chunked piece by piece (per document or per batch of lines, as the seed lab's "
                f"`map(batched=True)` does), which drops a tail every time: chunk the whole stream once. {tile}")
    for i in range(rows):
        want = stream[i * block : (i + 1) * block]
        if torch.equal(out[i], want):
            continue
        j = _find_slice(stream, out[i])
        found = (f"it is stream[{j}:{j + block}], the tokens of another place in the stream (shuffled, "
                 f"overlapping or transposed chunks)" if j is not None else
                 "it is not a run of consecutive stream tokens at all: the ids were changed or reordered "
                 "(a transpose, a cast that overflowed?)")
        return (f"{call}: row {i} should be stream[{i * block}:{(i + 1) * block}] = {want[:6].tolist()}..., got "
                f"{out[i][:6].tolist()}...: {found}. {tile}")
    return None


def _describe(x: dict) -> str:
    """`returned`'s description as the messages say it."""
    if x["kind"] == "tensor":
        return (f"a tensor of shape {tuple(x['value'].shape)}"
                + (" that still requires grad" if x["requires_grad"] else ""))
    return f"a {x['type']} ({x['repr']})"


def as_float(x: dict) -> float:
    """float(...) of a returned value, as a test once took it of the object itself."""
    if x["kind"] == "tensor":
        return float(x["value"])
    if x["kind"] == "float":
        return x["value"]
    if x.get("float") is None:
        raise TypeError(f"float() argument must be a string or a real number, not '{x['type']}'")
    return x["float"]


def train_step_result(out: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Check train_step's return contract before a test uses the values; return them.

    The contract (train_step's docstring): a pair (loss, grad_norm) of 0-dim tensors,
    detached from the graph, left on the device. A float from `.item()` makes every
    training step wait for the GPU; a tensor still attached keeps the graph alive.
    `out` is what the probe saw train_step return (`_probes_step5.returned`).
    """
    if out["kind"] != "sequence" or len(out["items"]) != 2:
        pytest.fail(f"train_step returned {_describe(out)}; expected a pair (loss, grad_norm), both 0-dim tensors. "
                    f"{WHERE_STEP}", pytrace=False)
    for what, t in zip(("loss", "gradient norm"), out["items"]):
        if t["kind"] != "tensor":
            pytest.fail(
                f"train_step returned the {what} as {_describe(t)}; the contract is a 0-dim tensor, detached and "
                f"left on the device: turning it into a Python number (`.item()`, `float()`) makes the training "
                f"loop wait for the GPU at every step, and the loop converts it only when it logs. {WHERE_STEP}",
                pytrace=False)
        if t["value"].dim() != 0:
            pytest.fail(f"train_step returned the {what} as {_describe(t)}; expected a 0-dim tensor (shape ()), "
                        f"one number. {WHERE_STEP}", pytrace=False)
        if t["requires_grad"]:
            pytest.fail(f"the returned {what} still requires grad: it must come back detached from the graph, or "
                        f"the graph it holds stays alive and leaks memory. {WHERE_STEP}", pytrace=False)
    return out["items"][0]["value"], out["items"][1]["value"]


def loss_problem(model_before: nn.Module, x: torch.Tensor, loss: torch.Tensor) -> str | None:
    """What is wrong with the loss train_step returned for batch `x`, or None.

    `model_before`: a copy of the model as it was before the step, in train mode with no
    dropout (so its forward is deterministic). The contract: the model's own loss on the
    batch, the inputs being their own labels (the model shifts them). Checked before the
    gradients and the update, which a wrong loss changes too: a loss of the wrong pairs
    is not a clipping mistake.
    """
    model = copy.deepcopy(model_before)
    with torch.no_grad():
        _, own = model(x, labels=x)
        _, twice = model(x[:, :-1], labels=x[:, 1:])  # shifted here, and again by the model
    got, own, twice = float(loss), float(own), float(twice)
    # fp32 on CPU, the same forward: only rounding differs between correct solutions.
    if math.isclose(got, own, rel_tol=1e-5, abs_tol=1e-6):
        return None
    if math.isclose(got, twice, rel_tol=1e-5, abs_tol=1e-6):
        return (f"train_step returned the loss {got:.6f}, but the model's loss on this batch is {own:.6f}: yours is "
                f"the loss of the wrong pairs, with the labels shifted twice. The batch was shifted before the "
                f"model (inputs without the last token, labels without the first), and the model shifts its labels "
                f"itself, so every position was scored against the token two places ahead. The model is given the "
                f"batch as its own labels (train_step's docstring). Look at train_step (step5_train_loop.py)")
    return (f"train_step returned the loss {got:.6f}, but the model's loss on this batch, before the update, is "
            f"{own:.6f}: the loss must be the model's own, the inputs being their own labels (the model shifts "
            f"them). Look at train_step (step5_train_loop.py)")


def evaluate_result(out: dict, call: str = "evaluate(...)") -> dict:
    """Check evaluate's return contract before a test uses the values; return them.

    The contract (evaluate's docstring): {"loss": float, "perplexity": float}, Python
    floats: the loop logs them, compares them with the best loss so far and writes them
    into the checkpoint's record. A 0-dim tensor there is not a number: `json.dumps`
    refuses it, and on a GPU it keeps device memory alive. (A float subclass such as
    numpy's float64 is a Python float; bool and int are not.)
    `out` is what the probe saw evaluate return (`_probes_step5.returned`); the result is
    {"loss": float, "perplexity": float}.
    """
    if out["kind"] != "dict" or not {"loss", "perplexity"} <= set(out["items"]):
        pytest.fail(f"{call} returned {_describe(out)}; expected a dict with the keys 'loss' and 'perplexity'. "
                    f"Look at what evaluate returns (step5_train_loop.py)", pytrace=False)
    for key in ("loss", "perplexity"):
        value = out["items"][key]
        if value["kind"] != "float":
            pytest.fail(
                f"{call} returned {key!r} as {_describe(value)}; the docstring's contract is a Python float. The "
                f"training loop logs it, compares it and records it with the checkpoint, and a tensor is not a "
                f"number there (json refuses it; on a GPU it holds device memory). Look at what evaluate returns "
                f"(step5_train_loop.py)", pytrace=False)
    return {key: out["items"][key]["value"] for key in ("loss", "perplexity")}
