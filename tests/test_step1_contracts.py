"""Step 1 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-1 tests let through.
"""
from __future__ import annotations

import pytest
import torch

from _device_check import run_recording_devices
from _support import not_implemented_guard as call, student
from strategies import expect, one_thread

pytestmark = pytest.mark.usefixtures(one_thread.__name__)
S1 = "step1_embeddings"


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_step1_embeddings_keep_every_tensor_on_the_ids_device(train: bool) -> None:
    """Positions made with `torch.arange(T)` (no `device=`) sit on the CPU: on a GPU the
    addition to the CUDA token vectors raises. The module runs on the `meta` device here,
    where any op mixing devices is recorded."""
    s1 = student(S1)
    emb = s1.Embeddings(s1.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=4)).to("meta")
    emb.train(train)
    idx = torch.zeros(2, 5, dtype=torch.long, device="meta")
    out, mixed = run_recording_devices(call, emb.forward, idx)
    expect(not mixed, (
        f"Embeddings.forward mixed devices: {mixed[:3]} (the model and ids were on 'meta'). "
        f"A tensor made inside forward landed on the CPU: create the positions on the ids' device, "
        f"torch.arange(T, device=idx.device), or it fails on a GPU"
    ))
    expect(tuple(out.shape) == (2, 5, 4) and out.device.type == "meta", (
        f"Embeddings.forward on (2, 5) ids on 'meta' should give (2, 5, 4) on 'meta'; "
        f"got {tuple(out.shape)} on {out.device}"
    ))
