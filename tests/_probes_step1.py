"""Step 1's probes: the learner-facing half of tests/test_step1_*.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with answers they compute themselves.
"""
from __future__ import annotations

import torch

from _support import not_implemented_guard as call, student
from strategies import module_layout

S1 = "step1_embeddings"


def embeddings_layout(cfg: dict) -> dict:
    """The parameter layout of the learner's `Embeddings(GPTConfig(**cfg))`."""
    s1 = student(S1)
    return module_layout(s1.Embeddings(s1.GPTConfig(**cfg)))


def embeddings_eval(cfg: dict, state: dict, idx: torch.Tensor) -> torch.Tensor:
    """The learner's Embeddings with the weights `state`, in eval mode, on ids `idx`."""
    s1 = student(S1)
    emb = s1.Embeddings(s1.GPTConfig(**cfg))
    emb.load_state_dict(state)
    emb.eval()  # dropout must be a no-op in eval mode
    with torch.no_grad():
        return call(emb.forward, idx)
