"""Bonus 6's probes: the learner-facing half of tests/test_bonus6_copy_task.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the test compares what it returns
with answers it computes itself. The learner's exceptions are not caught here: they
travel to the judge and are raised there.

`TinySeq2Seq` and `MeanCE` are the test's own model and criterion: the test builds one
to compute its expectation, the probe rebuilds the same one (from the test's weights)
for the learner's `train_step`.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from _support import not_implemented_guard as call, student
from grader.worker import to_data

MODULE = "bonus6_copy_task"
PAD = 0


class TinySeq2Seq(nn.Module):
    """Not a Transformer: logits = a linear map of (target embedding + mean source embedding)."""

    def __init__(self, V: int = 9, C: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, C)
        self.out = nn.Linear(C, V)
        self.seen: list[tuple] = []

    def forward(self, src, tgt_in, src_mask, tgt_mask):
        in_eval = sorted(name or "model" for name, m in self.named_modules() if not m.training)
        self.seen.append((src, tgt_in, src_mask, tgt_mask, in_eval))
        ctx = (self.emb(src) * src_mask.transpose(1, 2)).sum(1, keepdim=True) / src_mask.sum(-1, keepdim=True)
        return self.out(self.emb(tgt_in) + ctx)


class MeanCE(nn.Module):
    """A criterion with the label-smoothing loss's interface: mean cross-entropy over non-pad targets."""

    def forward(self, logits, target):
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=PAD)


def _returned(x: object) -> object:
    """What the learner's function returned, as data: plain data as it is (a tensor, a number);
    anything else as a float where it has one, else as its repr."""
    try:
        return to_data(x)
    except TypeError:
        try:
            return float(x)
        except (TypeError, ValueError):
            return repr(x)[:2000]


def _result(x: object) -> dict:
    """A result the docstring says is a Python float: its value, whether it is a float, its type and repr."""
    return {"value": _returned(x), "is_float": isinstance(x, float),
            "type": f"{type(x).__module__}.{type(x).__qualname__}", "repr": repr(x)[:2000]}


def _noam_like(step: int) -> float:
    return 1.0 / (step + 1)


def train_step(state: dict, stale_grads: dict, batch: dict, training: bool) -> dict:
    """The learner's train_step on a `TinySeq2Seq` with the weights `state` and the stale
    gradients `stale_grads` in its .grad (in train mode or not), the batch `batch` (its
    fields), MeanCE, SGD (lr 0.5) and LambdaLR (1 / (s + 1)): what it returned, the model's
    record of its forward passes (whether it got the batch's own tensors, which submodules
    were in eval mode), its weights afterwards and where the scheduler and rate are."""
    model = TinySeq2Seq()
    model.load_state_dict(state)
    model.train(training)
    for name, p in model.named_parameters():
        p.grad = stale_grads[name].clone()
    b = SimpleNamespace(**batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _noam_like)
    got = call(student(MODULE).train_step, model, b, MeanCE(), opt, sched)
    seen = [{"src": src is b.src, "tgt_in": tgt_in is b.tgt_in, "src_mask": src_mask is b.src_mask,
             "tgt_mask": tgt_mask is b.tgt_mask, "in_eval": in_eval}
            for src, tgt_in, src_mask, tgt_mask, in_eval in model.seen]
    return {"loss": _result(got), "seen": seen,
            "params": {name: p.detach() for name, p in model.named_parameters()},
            "last_epoch": sched.last_epoch, "lr": opt.param_groups[0]["lr"]}


def exact_match(predicted: torch.Tensor, expected: torch.Tensor, eos_id: int, pad_id: int) -> dict:
    """The learner's exact_match(predicted, expected, eos_id, pad_id): its value, type and repr."""
    return _result(call(student(MODULE).exact_match, predicted, expected, eos_id, pad_id))


def copy_task() -> dict:
    """The learner's train_copy_task(CopyTaskConfig()) on its own bonus 1-5 pieces, on one
    thread: its held-out exact match, step count and losses (not the model)."""
    m = student(MODULE)
    # One thread: this model is tiny, and two threads on a busy 2-core runner spin-wait
    # (measured: 211 s of CPU instead of ~15 s at load 8).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = call(m.train_copy_task, m.CopyTaskConfig())
    finally:
        torch.set_num_threads(threads)
    return {"accuracy": _returned(out["accuracy"]), "steps": _returned(out["steps"]),
            "losses": [_returned(x) for x in out["losses"]]}
