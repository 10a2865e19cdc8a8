"""Step 3's probes: the learner-facing half of tests/test_step3_*.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests draw the weights and inputs,
and compare what comes back with answers they compute themselves. The learner's step 3
runs on the reference's steps 1, 2 and 4 here (`reference_deps`), as it did in the tests.
"""
from __future__ import annotations

import contextlib
import importlib
import sys

import pytest
import torch
import torch.nn as nn

from _device_check import device_mistakes
from _fake_device import module_to_fake_gpu, to_fake_gpu
from _support import not_implemented_guard as call, student, with_reference_deps
from strategies import module_layout

S1, S3 = "step1_embeddings", "step3_blocks"
IGNORE_INDEX = -100  # next_token_loss's default (step4_loss.IGNORE_INDEX)


def _hide_an_unreadable_reference() -> None:
    """Where reference/ is in the tree but this process may not read it (a separated grading's
    confined worker, grader/worker.py `_confine`, hides it unless it is the graded solution),
    treat it as absent, as the learner handout does (grader/pytest_plugin.py `_NoReference`):
    `with_reference_deps` then runs the learner's own steps 1, 2 and 4 instead of failing
    with a PermissionError. Where the reference can be read, or is absent, nothing changes."""
    try:
        importlib.import_module("reference")
    except PermissionError:
        from grader.pytest_plugin import _NoReference

        if not any(isinstance(f, _NoReference) for f in sys.meta_path):
            sys.meta_path.insert(0, _NoReference())
    except ImportError:
        pass


def reference_deps(s3):
    """Run the student's step 3 with the reference's steps 1, 2 and 4 (where this process
    may read them; else, as in the handout, with the learner's own)."""
    _hide_an_unreadable_reference()
    return with_reference_deps(
        s3, Embeddings=S1, init_weights=S1, tie_weights=S1,
        causal_mask="step2_causal_mask", masked_attention_scores="step2_causal_mask",
        next_token_loss="step4_loss",
    )


def _built(kind: str, cfg: dict, state: dict | None = None):
    """(the student's step 3, its `kind` built from `cfg` with the weights `state`, in eval mode)."""
    s3 = student(S3)
    with reference_deps(s3):
        module = getattr(s3, kind)(s3.GPTConfig(**cfg))
    if state is not None:
        module.load_state_dict(state)
    module.eval()
    return s3, module


def _run(s3, module: nn.Module, *args):
    """Call the student's forward with the reference's other steps, without autograd."""
    with reference_deps(s3), torch.no_grad():
        return call(module.forward, *args)


def layout(kind: str, cfg: dict) -> dict:
    """The parameter layout of the learner's `kind` ("MLP", "CausalSelfAttention", "Block",
    "TinyGPT") built from `GPTConfig(**cfg)`: the test draws its weights for it."""
    return module_layout(_built(kind, cfg)[1])


def outputs(kind: str, cfg: dict, state: dict, runs: list, *, double: bool = False) -> list:
    """The learner's `kind` with the weights `state` (then in float64 if `double`), called
    once per run `(input, train, seed)`: `module.train(train)`, `torch.manual_seed(seed)`
    unless seed is None, then forward without autograd. One output per run."""
    s3, module = _built(kind, cfg, state)
    if double:
        module.double()
    outs = []
    for x, train, seed in runs:
        module.train(train)
        if seed is not None:
            torch.manual_seed(seed)
        outs.append(_run(s3, module, x))
    return outs


def forward(kind: str, cfg: dict, state: dict, x: torch.Tensor):
    """The learner's `kind` with the weights `state`, in eval mode, on `x`."""
    return outputs(kind, cfg, state, [(x, False, None)])[0]


def block_and_its_variants(cfg: dict, state: dict, x: torch.Tensor) -> tuple:
    """(the learner's Block on x, what its own sub-layers give when wired with a classic
    mistake: the hint's candidates, {} where a sub-layer is still a stub). Eval mode."""
    s3, block = _built("Block", cfg, state)
    out = _run(s3, block, x)
    with reference_deps(s3), torch.no_grad():
        a = lambda h: block.attn(h)  # noqa: E731 - the student's own sub-layers
        m = lambda h: block.mlp(h)  # noqa: E731
        try:
            after_attn = x + a(block.ln_1(x))
            variants = {
                "no attention residual": a(block.ln_1(x)) + m(block.ln_2(a(block.ln_1(x)))),
                "no MLP residual": m(block.ln_2(after_attn)),
                "no residuals": m(block.ln_2(a(block.ln_1(x)))),
                "post-norm": block.ln_2(block.ln_1(x + a(x)) + m(block.ln_1(x + a(x)))),
            }
        except NotImplementedError:
            variants = {}
    return out, variants


def tinygpt_and_its_variants(cfg: dict, state: dict, idx: torch.Tensor) -> tuple:
    """(the learner's TinyGPT on idx, the logits its own modules give when wired with a
    classic mistake: the hint's candidates, {} where a module is still a stub). Eval mode."""
    s3, model = _built("TinyGPT", cfg, state)
    out = _run(s3, model, idx)
    with reference_deps(s3), torch.no_grad():
        try:
            h = model.embed(idx)
            for b in model.blocks:
                h = b(h)
            variants = {"no ln_f": model.lm_head(h)}
            h1 = model.blocks[0](model.embed(idx))
            if len(model.blocks) > 1:
                variants["first block only"] = model.lm_head(model.ln_f(h1))
        except NotImplementedError:
            variants = {}
    return out, variants


# --- how a step 1 may have tied TinyGPT's head (right or wrong) ---------------------------

TIE_VARIANTS = {
    "tied": lambda head, emb: setattr(head, "weight", emb.weight),
    "tied the other way round": lambda head, emb: setattr(emb, "weight", head.weight),
    "copied": lambda head, emb: head.weight.data.copy_(emb.weight.data),
    "a second Parameter on the same data": lambda head, emb: setattr(head, "weight", nn.Parameter(emb.weight.data)),
    "untied": lambda head, emb: None,
}


def tinygpt_layouts_by_tie(cfg: dict, variants: list) -> list:
    """The layout of the learner's TinyGPT(cfg) built with a no-op init_weights and each
    of `variants` (names in TIE_VARIANTS) as tie_weights, in that order."""
    s3 = student(S3)
    layouts = []
    for what in variants:
        with reference_deps(s3):
            saved = s3.init_weights, s3.tie_weights
            s3.init_weights, s3.tie_weights = (lambda module, n_layer: None), TIE_VARIANTS[what]
            try:
                model = s3.TinyGPT(s3.GPTConfig(**cfg))
            finally:
                s3.init_weights, s3.tie_weights = saved
        layouts.append(module_layout(model))
    return layouts


# --- TinyGPT's loss: a recording stand-in for step 4's next_token_loss --------------------


def stand_in_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The value `LossStandIn` returns: any 0-dim value made from both arguments."""
    return logits.float().mean() * 0.5 + labels.float().mean() * 0.25 + 7.0


class LossStandIn:
    """Stands in for `next_token_loss(logits, labels, ignore_index=-100)`: records each
    call's arguments and returns `stand_in_loss` of them (a 0-dim float32 value, connected
    to the model's parameters through the logits)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.results: list[torch.Tensor] = []

    def __call__(self, *args, **kwargs):
        def bind(logits, labels, ignore_index=IGNORE_INDEX):
            return dict(logits=logits, labels=labels, ignore_index=ignore_index)

        try:
            got = bind(*args, **kwargs)
        except TypeError as e:
            pytest.fail(f"TinyGPT.forward called next_token_loss with arguments that do not fit its signature "
                        f"next_token_loss(logits, labels, ignore_index=-100): {e}", pytrace=False)
        logits, labels = got["logits"], got["labels"]
        self.calls.append(dict(
            logits=logits.detach().clone() if isinstance(logits, torch.Tensor) else logits,
            labels=labels.detach().clone() if isinstance(labels, torch.Tensor) else labels,
            ignore_index=got["ignore_index"], logits_require_grad=getattr(logits, "requires_grad", False)))
        # Forward must hand this value back as it is.
        result = stand_in_loss(logits, labels)
        self.results.append(result)
        return result


@contextlib.contextmanager
def loss_stand_in(s3):
    """`s3.next_token_loss` is a fresh `LossStandIn` inside the block."""
    stand_in, missing = LossStandIn(), object()
    saved = s3.__dict__.get("next_token_loss", missing)
    s3.next_token_loss = stand_in
    try:
        yield stand_in
    finally:
        if saved is missing:
            del s3.next_token_loss
        else:
            s3.next_token_loss = saved


def tinygpt_loss_with_labels(cfg: dict, state: dict, idx: torch.Tensor, labels: torch.Tensor) -> dict:
    """TinyGPT.forward(idx, labels) with autograd on (as in training), next_token_loss a
    `LossStandIn`: what forward returned (`out`, and whether its loss `requires_grad`),
    the stand-in's `calls` and `results`."""
    s3, model = _built("TinyGPT", cfg, state)
    with reference_deps(s3), loss_stand_in(s3) as loss_fn:
        out = call(model.forward, idx, labels)
    loss = out[1] if isinstance(out, tuple) and len(out) == 2 else None
    return {"out": out, "loss_requires_grad": bool(getattr(loss, "requires_grad", False)),
            "calls": loss_fn.calls, "results": loss_fn.results}


def tinygpt_loss_without_labels(cfg: dict, state: dict, idx: torch.Tensor) -> dict:
    """TinyGPT.forward(idx) without labels (no autograd), next_token_loss a `LossStandIn`:
    what forward returned (`out`) and how many times it called the stand-in (`calls`)."""
    s3, model = _built("TinyGPT", cfg, state)
    with reference_deps(s3), loss_stand_in(s3) as loss_fn, torch.no_grad():
        out = call(model.forward, idx)
    return {"out": out, "calls": len(loss_fn.calls)}


# --- device placement (tests/test_step3_contracts.py) -------------------------------------


def attention_on_a_gpu(cfg: dict, state: dict, x: torch.Tensor) -> dict:
    """The learner's CausalSelfAttention(cfg) with the weights `state`, and x, on the fake
    GPU (`device_mistakes`): `mixed` (what mixed devices, or None), `unchecked` (why
    nothing could be checked, or None) and the `shapes` of the outputs it gave."""
    s3 = student(S3)

    def build(device):
        _, attn = _built("CausalSelfAttention", cfg, state)  # a fresh module for each device
        module = module_to_fake_gpu(attn) if device.type == "cuda" else attn.to(device)
        return module.eval(), (to_fake_gpu(x) if device.type == "cuda" else x.to(device))

    shapes: list[tuple] = []

    def run(module, inp):
        with reference_deps(s3), torch.no_grad():
            shapes.append(tuple(call(module.forward, inp).shape))

    mixed, unchecked = device_mistakes(build, run)
    return {"mixed": mixed, "unchecked": unchecked, "shapes": shapes}
