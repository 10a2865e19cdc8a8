"""The fake GPU (tests/_fake_device.py) that steps 5 and 6 check device placement with.

These tests check the checker, not a learner's code (so they are infra tests, graded in
no step and left out of the handout): the fake GPU must run correct code of any
formulation, with real data (masks, `nonzero`, `.item()`, `.tolist()`), and raise where
a real GPU raises: when an op mixes one of its tensors with a CPU tensor that is not a
0-dim scalar.
"""
from __future__ import annotations

import pytest
import torch

from _fake_device import FAKE_GPU, DeviceMixError, FakeGPU, is_fake_gpu, module_to_fake_gpu, to_fake_gpu
from _tiny_lm import TinyLM


def test_fake_gpu_tensors_claim_the_gpu_and_compute_on_real_data():
    x = to_fake_gpu(torch.arange(6.0).view(2, 3))
    assert x.device == FAKE_GPU and x.is_cuda and is_fake_gpu(x)
    y = (x * 2 + torch.tensor(1.0)).softmax(-1)  # a 0-dim CPU tensor is a scalar a GPU accepts
    assert is_fake_gpu(y) and y.device == FAKE_GPU
    assert torch.allclose(y.cpu(), (torch.arange(6.0).view(2, 3) * 2 + 1).softmax(-1))
    assert type(y.cpu()) is torch.Tensor and y.cpu().device.type == "cpu"


def test_fake_gpu_runs_data_dependent_ops():
    with FakeGPU():
        x = torch.tensor([3, 0, 5, 0, 7], device=FAKE_GPU)
        alive = x != 0
        rows = alive.nonzero().flatten()
        assert rows.tolist() == [0, 2, 4] and is_fake_gpu(rows)
        assert x[alive].tolist() == [3, 5, 7] and x[rows].tolist() == [3, 5, 7]
        assert [t.tolist() for t in torch.where(alive)] == [[0, 2, 4]]
        assert x.sum().item() == 15 and int(x[2]) == 5 and bool(alive.any()) and not bool(alive.all())
        y = torch.zeros_like(x)
        y[rows] = x[rows] * 2
        y[~alive] = -1
        assert y.tolist() == [6, -1, 10, -1, 14] and is_fake_gpu(y)


def test_fake_gpu_factories_and_moves_follow_the_device_argument():
    with FakeGPU():
        assert is_fake_gpu(torch.zeros(3, device=FAKE_GPU)) and is_fake_gpu(torch.arange(3, device="cuda"))
        assert is_fake_gpu(torch.full((2,), 7, device=FAKE_GPU)) and is_fake_gpu(torch.tensor([1], device=FAKE_GPU))
        assert not is_fake_gpu(torch.zeros(3)), "a factory without device= makes a CPU tensor, as on a real GPU machine"
        moved = torch.arange(4).to(FAKE_GPU)
        assert is_fake_gpu(moved) and moved.tolist() == [0, 1, 2, 3]
        back = moved.to("cpu")
        assert not is_fake_gpu(back) and torch.equal(back, torch.arange(4))


@pytest.mark.parametrize("mix", ["cpu vector + gpu", "cpu mask into masked_fill", "cpu total += gpu loss",
                                 "cat", "cpu ids into a gpu embedding", "cpu generator"])
def test_fake_gpu_refuses_to_mix_devices_as_a_gpu_does(mix):
    with FakeGPU():
        x = torch.arange(4.0, device=FAKE_GPU)
        ops = {
            "cpu vector + gpu": lambda: x + torch.ones(4),
            "cpu mask into masked_fill": lambda: x.masked_fill(torch.ones(4, dtype=torch.bool), 0.0),
            "cpu total += gpu loss": lambda: torch.zeros(()).add_(x.sum()),
            "cat": lambda: torch.cat([x, torch.ones(2)]),
            "cpu ids into a gpu embedding": lambda: module_to_fake_gpu(torch.nn.Embedding(5, 2))(torch.tensor([1, 2])),
            "cpu generator": lambda: torch.multinomial(x.softmax(-1), 1, generator=torch.Generator()),
        }
        with pytest.raises(DeviceMixError):
            ops[mix]()


def test_fake_gpu_allows_what_a_gpu_allows():
    with FakeGPU():
        x = torch.arange(4.0, device=FAKE_GPU)
        x[torch.tensor([0, 1])] = 5.0  # CPU indices into a GPU tensor
        x.copy_(torch.ones(4))  # copies between devices
        total = torch.zeros((), device=FAKE_GPU)
        total += torch.tensor(2.0)  # a 0-dim CPU scalar
        assert total.item() == 2.0 and x.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_fake_gpu_module_keeps_tied_weights_and_runs_forward():
    model = module_to_fake_gpu(TinyLM(vocab_size=11, block_size=8))
    assert model.lm_head.weight is model.token.weight, "tied parameters must stay one parameter"
    assert all(p.device == FAKE_GPU for p in model.parameters())
    with FakeGPU(), torch.no_grad():
        ids = torch.tensor([[1, 2, 3]], device=FAKE_GPU)
        logits, loss = model(ids, labels=ids)
    cpu = TinyLM(vocab_size=11, block_size=8)
    want_logits, want_loss = cpu(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]]))
    # The same float32 CPU kernels on the same data: equal up to nothing but op order.
    assert torch.allclose(logits.cpu(), want_logits, atol=1e-6) and abs(loss.item() - want_loss.item()) < 1e-6
