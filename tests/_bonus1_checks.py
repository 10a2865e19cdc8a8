"""Bonus 1's answers, computed in the judge: shared by tests/test_bonus1_*.py.

The tests draw every weight the learner's modules load (`weights`, for the names and
shapes the given `__init__`s make) and compute what those weights must give with
PyTorch's own layers: `nn.TransformerEncoder` / `nn.TransformerDecoder` with
`norm_first=True`, a final LayerNorm, GELU(tanh) and no dropout compute exactly the
Annotated Transformer's pre-norm model; the weights are copied into them by name (q, k,
v stacked into `in_proj_weight`). Nothing here runs the learner's code: that runs in the
probes of tests/_probes_bonus1.py, and what comes back is data.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import _probes_bonus1 as probes
from _support import probe
from strategies import random_state_from_layout

PAD = 0


def weights(kind: str, cfg: dict, seed: int) -> dict[str, torch.Tensor]:
    """Random weights (`strategies.random_state`'s draws) for the learner's `kind` built from
    `Seq2SeqConfig(**cfg)`: names and shapes from its given `__init__`, values from `seed`."""
    return random_state_from_layout(probe(probes.layout, kind, cfg), seed)


def linear(state: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """The given `nn.Linear` called `name` (`q`, `self_attn.proj`, `generator`), with its weights from `state`, on x."""
    return F.linear(x, state[f"{name}.weight"], state.get(f"{name}.bias"))


def sinusoidal_positions(max_len: int, n_embd: int) -> torch.Tensor:
    """(max_len, n_embd): the paper's fixed sin/cos position encoding (as the given `Seq2SeqEmbedding` adds)."""
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd))
    pe = torch.zeros(max_len, n_embd)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : n_embd // 2]
    return pe


def embed(state: dict, name: str, ids: torch.Tensor, cfg: dict) -> torch.Tensor:
    """The given `Seq2SeqEmbedding` called `name` (`src_embed`, `tgt_embed`) in eval mode:
    token embedding * sqrt(C) + the positions."""
    C = cfg["n_embd"]
    return state[f"{name}.token.weight"][ids] * math.sqrt(C) + sinusoidal_positions(cfg["max_len"], C)[: ids.size(1)]


def _copy_attention(state: dict, ours: str, theirs: nn.MultiheadAttention) -> None:
    theirs.in_proj_weight.copy_(torch.cat([state[f"{ours}.{n}.weight"] for n in "qkv"]))
    theirs.in_proj_bias.copy_(torch.cat([state[f"{ours}.{n}.bias"] for n in "qkv"]))
    theirs.out_proj.weight.copy_(state[f"{ours}.proj.weight"])
    theirs.out_proj.bias.copy_(state[f"{ours}.proj.bias"])


def _copy_norm(state: dict, ours: str, theirs: nn.LayerNorm) -> None:
    theirs.weight.copy_(state[f"{ours}.weight"])
    theirs.bias.copy_(state[f"{ours}.bias"])


def _copy_mlp(state: dict, ours: str, layer) -> None:
    layer.linear1.weight.copy_(state[f"{ours}.fc.weight"])
    layer.linear1.bias.copy_(state[f"{ours}.fc.bias"])
    layer.linear2.weight.copy_(state[f"{ours}.proj.weight"])
    layer.linear2.bias.copy_(state[f"{ours}.proj.bias"])


def _common(cfg: dict) -> dict:
    return dict(d_model=cfg["n_embd"], nhead=cfg["n_head"], dim_feedforward=4 * cfg["n_embd"], dropout=0.0,
                activation=lambda x: F.gelu(x, approximate="tanh"), batch_first=True, norm_first=True)


def _prefix(prefix: str) -> str:
    return f"{prefix}." if prefix else ""


def torch_encoder_layer(state: dict, cfg: dict, prefix: str = "") -> nn.TransformerEncoderLayer:
    """An nn.TransformerEncoderLayer (eval mode) holding the weights of the EncoderLayer at `prefix` in `state`."""
    p = _prefix(prefix)
    layer = nn.TransformerEncoderLayer(**_common(cfg)).eval()
    with torch.no_grad():
        _copy_attention(state, p + "self_attn", layer.self_attn)
        _copy_norm(state, p + "ln_1", layer.norm1)
        _copy_norm(state, p + "ln_2", layer.norm2)
        _copy_mlp(state, p + "mlp", layer)
    return layer


def torch_decoder_layer(state: dict, cfg: dict, prefix: str = "") -> nn.TransformerDecoderLayer:
    """An nn.TransformerDecoderLayer (eval mode) holding the weights of the DecoderLayer at `prefix` in `state`."""
    p = _prefix(prefix)
    layer = nn.TransformerDecoderLayer(**_common(cfg)).eval()
    with torch.no_grad():
        _copy_attention(state, p + "self_attn", layer.self_attn)
        _copy_attention(state, p + "cross_attn", layer.multihead_attn)
        _copy_norm(state, p + "ln_1", layer.norm1)
        _copy_norm(state, p + "ln_2", layer.norm2)
        _copy_norm(state, p + "ln_3", layer.norm3)
        _copy_mlp(state, p + "mlp", layer)
    return layer


def torch_layers(state: dict, cfg: dict) -> tuple[nn.TransformerEncoder, nn.TransformerDecoder]:
    """nn.Transformer stacks (eval mode) holding the EncoderDecoder weights `state`."""
    C = cfg["n_embd"]
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(**_common(cfg)), cfg["n_layer"], norm=nn.LayerNorm(C),
                                enable_nested_tensor=False).eval()
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(**_common(cfg)), cfg["n_layer"], norm=nn.LayerNorm(C)).eval()
    enc.layers = nn.ModuleList(torch_encoder_layer(state, cfg, f"encoder.{i}") for i in range(cfg["n_layer"]))
    dec.layers = nn.ModuleList(torch_decoder_layer(state, cfg, f"decoder.{i}") for i in range(cfg["n_layer"]))
    with torch.no_grad():
        _copy_norm(state, "ln_enc", enc.norm)
        _copy_norm(state, "ln_dec", dec.norm)
    return enc, dec


def torch_memory(state: dict, cfg: dict, src: torch.Tensor) -> torch.Tensor:
    """What `encode(src, (src != PAD).unsqueeze(1))` must give (rows at padded positions are never read)."""
    enc, _ = torch_layers(state, cfg)
    with torch.no_grad():
        return enc(embed(state, "src_embed", src, cfg), src_key_padding_mask=src == PAD)


def torch_logits(state: dict, cfg: dict, memory: torch.Tensor, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
    """What `decode(memory, src_mask, tgt_in, tgt_mask)` must give with the padding masks of
    `src` and `tgt_in` and the causal target mask (logits at padded targets are never read)."""
    _, dec = torch_layers(state, cfg)
    T = tgt_in.size(1)
    with torch.no_grad():
        hidden = dec(embed(state, "tgt_embed", tgt_in, cfg), memory, tgt_mask=~torch.ones(T, T, dtype=torch.bool).tril(),
                     tgt_key_padding_mask=tgt_in == PAD, memory_key_padding_mask=src == PAD)
        return linear(state, "generator", hidden)
