"""Bonus 1's probes: the learner-facing half of tests/test_bonus1_*.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests draw the weights (for the
names and shapes `layout` reports) and the inputs, and compare what comes back with
answers they compute themselves (tests/_bonus1_checks.py: PyTorch's own
nn.Transformer layers holding the same weights). The learner's bonus 1 runs on the
learner's own steps 2 and 3 (its `masked_attention_scores` and `MLP`), as it did in the
tests: a stub there makes the test wait on that step.
"""
from __future__ import annotations

import torch

from _support import not_implemented_guard as call, student
from strategies import module_layout

MODULE = "bonus1_encoder_decoder"
MEMORY = "kata: the memory the latest encode returned"  # an argument of `model_calls`


def _built(kind: str, cfg: dict, state: dict | None = None):
    """The learner's `kind` ("MultiHeadAttention", "EncoderLayer", "DecoderLayer",
    "EncoderDecoder") built from `Seq2SeqConfig(**cfg)`, with the weights `state`, in
    eval mode."""
    m = student(MODULE)
    module = getattr(m, kind)(m.Seq2SeqConfig(**cfg))
    if state is not None:
        module.load_state_dict(state)
    return module.eval()


def layout(kind: str, cfg: dict) -> dict:
    """The parameter layout of the learner's `kind` built from `Seq2SeqConfig(**cfg)`: the
    test draws its weights for it (`strategies.random_state_from_layout`)."""
    return module_layout(_built(kind, cfg))


def forward(kind: str, cfg: dict, state: dict, runs: list) -> list:
    """The learner's `kind` with the weights `state`, called once per run `(train, args)`:
    `module.train(train)`, then forward on the tuple `args` without autograd. One output
    per run, in order."""
    module = _built(kind, cfg, state)
    outs = []
    with torch.no_grad():
        for train, args in runs:
            module.train(train)
            outs.append(call(module, *args))
    return outs


def model_calls(cfg: dict, state: dict, calls: list) -> list:
    """The learner's EncoderDecoder with the weights `state`, in eval mode, without autograd:
    one output per call `(method, args)`, method "encode", "decode" or "forward" (the
    model called as a module), in order. An argument `MEMORY` stands for the output of the
    latest "encode" call (decode reads the memory the learner's encoder made)."""
    model = _built("EncoderDecoder", cfg, state)
    outs, memory = [], None
    with torch.no_grad():
        for method, args in calls:
            fn = model if method == "forward" else getattr(model, method)
            out = call(fn, *(memory if isinstance(a, str) and a == MEMORY else a for a in args))
            if method == "encode":
                memory = out
            outs.append(out)
    return outs
