"""Step 1 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-1 tests let through.
The learner's code runs only inside the probes of tests/_probes_step1.py (`_support.probe`).
"""
from __future__ import annotations

import pytest
import torch

import _probes_step1 as P
from _support import assert_close, probe
from strategies import expect, one_thread, random_state_from_layout

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_step1_embeddings_keep_every_tensor_on_the_ids_device(train: bool) -> None:
    """Positions made without the ids' device sit on the CPU: on a GPU the addition to the
    token vectors raises. The module and ids sit on a fake GPU here (tests/_device_check.py),
    where any correct code runs and an op that mixes devices raises as on a GPU."""
    p = 0.1
    cfg = dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=4, dropout=p)
    state = random_state_from_layout(probe(P.embeddings_layout, cfg), 0, std=1.0)
    idx = torch.arange(10).reshape(2, 5)
    seen = probe(P.embeddings_device_check, cfg, state, idx, train)
    mixed, unchecked, shapes = seen["mixed"], seen["unchecked"], seen["shapes"]
    if unchecked:
        pytest.skip(f"device placement not checked: {unchecked}")
    expect(not mixed, (
        f"Embeddings.forward, with the module and the ids on a GPU, mixed devices ({mixed}): a tensor made inside "
        f"forward without the ids' device sits on the CPU, which a GPU refuses to add to its own tensors. "
        f"Look at Embeddings.forward (step1_embeddings.py)"
    ))
    expect(shapes and shapes[0] == (2, 5, 4), f"Embeddings.forward on (2, 5) ids should give (2, 5, 4); got {shapes}")
    # The fake GPU computes on real data: each token's vector plus its position's vector. In
    # train mode an entry may also be zeroed or scaled by dropout (its own test checks how).
    expected = state["token.weight"][idx] + state["position.weight"][:5]
    for out in seen["outputs"]:
        if not train:
            assert_close(out, expected, atol=1e-6, rtol=1e-6, what=f"Embeddings({cfg}) in eval mode on the fake GPU",
                         hint="Expected each token's vector plus its position's vector. Look at Embeddings.forward "
                              "(step1_embeddings.py)")
            continue
        fits = out == 0
        for value in (expected, expected / (1 - p)):
            fits |= torch.isclose(out, value, rtol=1e-5, atol=1e-6)
        expect(bool(fits.all()), (
            f"Embeddings({cfg}) in train mode on the fake GPU: {int((~fits).sum())} of {fits.numel()} output entries "
            f"are neither token + position vector nor that vector zeroed or scaled by dropout. Look at "
            f"Embeddings.forward (step1_embeddings.py)"))
