"""Step 3 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-3 tests let through
(those compare with the reference in eval mode, on the CPU). Your code runs only inside
the probes of tests/_probes_step3.py (`probe`).
"""
from __future__ import annotations

import pytest
import torch

import _probes_step3 as probes
from _support import probe
from strategies import expect, one_thread, random_state_from_layout

pytestmark = pytest.mark.usefixtures(one_thread.__name__)
IMPLS = ["manual", "sdpa"]


@pytest.mark.parametrize("attn_impl", IMPLS)
def test_step3_attention_keeps_every_tensor_on_the_input_device(attn_impl: str) -> None:
    """A causal mask made without x's device sits on the CPU: on a GPU, masking the GPU's
    scores with it raises. The module and x sit on a fake GPU here (tests/_device_check.py),
    where any correct code runs and an op that mixes devices raises as on a GPU."""
    cfg = dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.0, attn_impl=attn_impl)
    state = random_state_from_layout(probe(probes.layout, "CausalSelfAttention", cfg), 0)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    # A fresh module for each device the check tries, with these weights, in eval mode.
    seen = probe(probes.attention_on_a_gpu, cfg, state, x)
    mixed, unchecked, shapes = seen["mixed"], seen["unchecked"], seen["shapes"]
    if unchecked:
        pytest.skip(f"device placement not checked: {unchecked}")
    expect(not mixed, (
        f"CausalSelfAttention.forward (attn_impl={attn_impl!r}), with the module and x on a GPU, mixed devices "
        f"({mixed}): a tensor made inside forward (the causal mask, say) without x's device sits on the CPU, "
        f"which a GPU refuses to combine with its own tensors. Look at CausalSelfAttention.forward (step3_blocks.py)"
    ))
    expect(shapes and shapes[-1] == (2, 5, 8), f"expected (2, 5, 8) from x of shape (2, 5, 8); got {shapes}")
