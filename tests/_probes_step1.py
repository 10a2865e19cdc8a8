"""Step 1's probes: the learner-facing half of tests/test_step1_*.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with answers they compute themselves.
"""
from __future__ import annotations

import torch
import torch.nn as nn

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


def config_fields(cfg: dict) -> dict:
    """The fields of the learner's `GPTConfig(**cfg)` (its ValueError, if it refuses them, is raised)."""
    return dict(vars(student(S1).GPTConfig(**cfg)))


def embeddings_train_and_eval(cfg: dict, state: dict, idx: torch.Tensor) -> dict:
    """The learner's Embeddings with the weights `state` on `idx`: once in eval mode ("eval"),
    then twice in train mode ("train", "again"; the first right after torch.manual_seed(0))."""
    s1 = student(S1)
    emb = s1.Embeddings(s1.GPTConfig(**cfg))
    emb.load_state_dict(state)
    with torch.no_grad():
        emb.eval()
        ev = call(emb.forward, idx)
        emb.train()
        torch.manual_seed(0)
        tr = call(emb.forward, idx)
        again = call(emb.forward, idx)
    return {"eval": ev, "train": tr, "again": again}


# --- init_weights and tie_weights on TinyGPT's layout --------------------------------


def gpt_skeleton(s1, config) -> nn.Module:
    """TinyGPT's parameter layout and module names, built from step-1 parts only.

    Same names as the real model (`blocks.0.attn.proj`, `lm_head`, ...), so
    `init_weights` sees exactly what it sees inside TinyGPT, without step 3's code.
    """
    C, bias = config.n_embd, config.bias
    root = nn.Module()
    root.embed = s1.Embeddings(config)
    root.blocks = nn.ModuleList()
    for _ in range(config.n_layer):
        block = nn.Module()
        block.ln_1, block.ln_2 = nn.LayerNorm(C, bias=bias), nn.LayerNorm(C, bias=bias)
        block.attn, block.mlp = nn.Module(), nn.Module()
        block.attn.qkv, block.attn.proj = nn.Linear(C, 3 * C, bias=bias), nn.Linear(C, C, bias=bias)
        block.mlp.fc, block.mlp.proj = nn.Linear(C, 4 * C, bias=bias), nn.Linear(4 * C, C, bias=bias)
        root.blocks.append(block)
    root.ln_f = nn.LayerNorm(C, bias=bias)
    root.lm_head = nn.Linear(C, config.vocab_size, bias=False)
    return root


_KINDS = (("Linear", nn.Linear), ("Embedding", nn.Embedding), ("LayerNorm", nn.LayerNorm))


def _layers(model: nn.Module) -> list[dict]:
    """Every Linear, Embedding and LayerNorm of `model`, in `named_modules` order: its name,
    kind ("Linear", "Embedding", "LayerNorm"), weight and bias (None where it has none)."""
    layers = []
    for name, m in model.named_modules():
        kind = next((k for k, cls in _KINDS if isinstance(m, cls)), None)
        if kind is not None:
            layers.append({"name": name, "kind": kind, "weight": getattr(m, "weight", None),
                           "bias": getattr(m, "bias", None)})
    return layers


def init_weights_on_skeleton(cfg: dict, layer_norm_fill: float) -> list[dict]:
    """The learner's init_weights on TinyGPT's layout (`gpt_skeleton(GPTConfig(**cfg))`) whose
    LayerNorm weights and biases were first set to `layer_norm_fill` (so a LayerNorm left
    alone shows); every layer afterwards, as `_layers` lists them."""
    s1 = student(S1)
    config = s1.GPTConfig(**cfg)
    model = gpt_skeleton(s1, config)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(layer_norm_fill)
                if m.bias is not None:
                    m.bias.fill_(layer_norm_fill)
    call(s1.init_weights, model, config.n_layer)
    return _layers(model)


def tie_weights_on(embedding_weight: torch.Tensor, head_weight: torch.Tensor) -> dict:
    """The learner's tie_weights(head, emb) on an nn.Embedding and a bias-free nn.Linear that
    start with these (V, C) weights: whether they then hold one Parameter object
    ("same_parameter") or at least one memory ("same_memory"), and both weights' values."""
    s1 = student(S1)
    V, C = embedding_weight.shape
    emb, head = nn.Embedding(V, C), nn.Linear(C, V, bias=False)
    with torch.no_grad():
        emb.weight.copy_(embedding_weight)
        head.weight.copy_(head_weight)
    call(s1.tie_weights, head, emb)
    return {"same_parameter": head.weight is emb.weight,
            "same_memory": head.weight.data_ptr() == emb.weight.data_ptr(),
            "head_weight": head.weight, "embedding_weight": emb.weight}


def tied_gradient(weight: torch.Tensor, idx: torch.Tensor) -> dict:
    """The learner's tie_weights(head, emb) on an nn.Embedding and a bias-free nn.Linear that
    both start with the (V, C) values `weight`, then `head(emb(idx)).sum().backward()`:
    whether the head got a gradient, whether both share one .grad, and the head's .grad."""
    s1 = student(S1)
    V, C = weight.shape
    emb, head = nn.Embedding(V, C), nn.Linear(C, V, bias=False)
    with torch.no_grad():
        emb.weight.copy_(weight)
        head.weight.copy_(weight)
    call(s1.tie_weights, head, emb)
    head(emb(idx)).sum().backward()
    return {"head_has_grad": head.weight.grad is not None,
            "one_grad": head.weight.grad is not None and head.weight.grad is emb.weight.grad,
            "head_grad": head.weight.grad}


def _tied_lab_model(cfg: dict) -> nn.Module:
    s1 = student(S1)
    config = s1.GPTConfig(**cfg)
    model = gpt_skeleton(s1, config)
    call(s1.init_weights, model, config.n_layer)
    call(s1.tie_weights, model.lm_head, model.embed.token)
    return model


def tied_parameter_count(cfg: dict) -> int:
    """count_parameters of TinyGPT's layout for GPTConfig(**cfg) after the learner's
    init_weights and tie_weights(lm_head, embed.token)."""
    return student(S1).count_parameters(_tied_lab_model(cfg))


def tied_logits_at_init(cfg: dict, idx: torch.Tensor) -> torch.Tensor:
    """lm_head(ln_f(embed(idx))) of TinyGPT's layout for GPTConfig(**cfg) after the learner's
    init_weights and tie_weights (eval mode, no grad): the logits of the first loss."""
    model = _tied_lab_model(cfg)
    model.eval()
    with torch.no_grad():
        return model.lm_head(model.ln_f(call(model.embed.forward, idx)))


# --- device placement (test_step1_contracts.py) --------------------------------------


def embeddings_device_check(cfg: dict, state: dict, idx: torch.Tensor, train: bool) -> dict:
    """`device_mistakes` for the learner's Embeddings (weights `state`, train or eval mode)
    on ids `idx`, with the module and ids on the fake GPU (tests/_device_check.py):
    "mixed" (what mixed devices, or None), "unchecked" (why nothing could be checked, or
    None), "shapes" (the output shapes of the runs) and "outputs" (the outputs that have
    values, brought back to the CPU: the fake GPU's; the meta device's have none)."""
    from _device_check import device_mistakes
    from _fake_device import is_fake_gpu, module_to_fake_gpu, to_fake_gpu

    s1 = student(S1)
    config = s1.GPTConfig(**cfg)

    def build(device):
        emb = s1.Embeddings(config)
        emb.load_state_dict(state)
        emb = module_to_fake_gpu(emb) if device.type == "cuda" else emb.to(device)
        ids = idx.clone()
        return emb.train(train), (to_fake_gpu(ids) if device.type == "cuda" else ids.to(device))

    shapes: list[tuple] = []
    outputs: list[torch.Tensor] = []

    def run(emb, ids):
        with torch.no_grad():
            out = call(emb.forward, ids)
        shapes.append(tuple(out.shape))
        if is_fake_gpu(out):
            outputs.append(out.cpu())

    mixed, unchecked = device_mistakes(build, run)
    return {"mixed": mixed, "unchecked": unchecked, "shapes": shapes, "outputs": outputs}
