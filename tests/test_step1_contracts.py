"""Step 1 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-1 tests let through.
"""
from __future__ import annotations

import pytest
import torch

from _device_check import device_mistakes
from _fake_device import module_to_fake_gpu, to_fake_gpu
from _support import not_implemented_guard as call, student
from strategies import expect, one_thread

pytestmark = pytest.mark.usefixtures(one_thread.__name__)
S1 = "step1_embeddings"


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_step1_embeddings_keep_every_tensor_on_the_ids_device(train: bool) -> None:
    """Positions made without the ids' device sit on the CPU: on a GPU the addition to the
    token vectors raises. The module and ids sit on a fake GPU here (tests/_device_check.py),
    where any correct code runs and an op that mixes devices raises as on a GPU."""
    s1 = student(S1)
    cfg = s1.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=4)

    def build(device):
        emb = s1.Embeddings(cfg)
        emb = module_to_fake_gpu(emb) if device.type == "cuda" else emb.to(device)
        idx = torch.zeros(2, 5, dtype=torch.long)
        return emb.train(train), (to_fake_gpu(idx) if device.type == "cuda" else idx.to(device))

    shapes: list[tuple] = []

    def run(emb, idx):
        with torch.no_grad():
            out = call(emb.forward, idx)
        shapes.append(tuple(out.shape))

    mixed, unchecked = device_mistakes(build, run)
    if unchecked:
        pytest.skip(f"device placement not checked: {unchecked}")
    expect(not mixed, (
        f"Embeddings.forward, with the module and the ids on a GPU, mixed devices ({mixed}): a tensor made inside "
        f"forward without the ids' device sits on the CPU, which a GPU refuses to add to its own tensors. "
        f"Look at Embeddings.forward (step1_embeddings.py)"
    ))
    expect(shapes and shapes[0] == (2, 5, 4), f"Embeddings.forward on (2, 5) ids should give (2, 5, 4); got {shapes}")
