"""Step 3 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-3 tests let through
(those compare with the reference in eval mode, on the CPU).
"""
from __future__ import annotations

import pytest
import torch

from _device_check import device_mistakes
from _fake_device import module_to_fake_gpu, to_fake_gpu
from _support import not_implemented_guard as call, student, with_reference_deps
from strategies import expect, one_thread, random_state

pytestmark = pytest.mark.usefixtures(one_thread.__name__)
S1, S3 = "step1_embeddings", "step3_blocks"
IMPLS = ["manual", "sdpa"]


def reference_deps(s3):
    """The student's step 3 on the reference's steps 1, 2 and 4 (as in test_step3_blocks)."""
    return with_reference_deps(
        s3, Embeddings=S1, init_weights=S1, tie_weights=S1,
        causal_mask="step2_causal_mask", masked_attention_scores="step2_causal_mask",
        next_token_loss="step4_loss",
    )


def attention(attn_impl: str, dropout: float, seed: int = 0):
    s3 = student(S3)
    cfg = s3.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=dropout,
                       attn_impl=attn_impl)
    with reference_deps(s3):
        attn = s3.CausalSelfAttention(cfg)
    attn.load_state_dict(random_state(attn, seed))
    return s3, attn


@pytest.mark.parametrize("attn_impl", IMPLS)
def test_step3_attention_keeps_every_tensor_on_the_input_device(attn_impl: str) -> None:
    """A causal mask made without x's device sits on the CPU: on a GPU, masking the GPU's
    scores with it raises. The module and x sit on a fake GPU here (tests/_device_check.py),
    where any correct code runs and an op that mixes devices raises as on a GPU."""
    s3, _ = attention(attn_impl, dropout=0.0)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))

    def build(device):
        _, attn = attention(attn_impl, dropout=0.0)  # a fresh module for each device
        module = module_to_fake_gpu(attn) if device.type == "cuda" else attn.to(device)
        return module.eval(), (to_fake_gpu(x) if device.type == "cuda" else x.to(device))

    shapes: list[tuple] = []

    def run(module, inp):
        with reference_deps(s3), torch.no_grad():
            shapes.append(tuple(call(module.forward, inp).shape))

    mixed, unchecked = device_mistakes(build, run)
    if unchecked:
        pytest.skip(f"device placement not checked: {unchecked}")
    expect(not mixed, (
        f"CausalSelfAttention.forward (attn_impl={attn_impl!r}), with the module and x on a GPU, mixed devices "
        f"({mixed}): a tensor made inside forward (the causal mask, say) without x's device sits on the CPU, "
        f"which a GPU refuses to combine with its own tensors. Look at CausalSelfAttention.forward (step3_blocks.py)"
    ))
    expect(shapes and shapes[-1] == (2, 5, 8), f"expected (2, 5, 8) from x of shape (2, 5, 8); got {shapes}")
