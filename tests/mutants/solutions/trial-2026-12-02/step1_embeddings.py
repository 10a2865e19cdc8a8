"""Step 1 — configuration, token + position embeddings, GPT-2 init, weight tying.

You write `Embeddings.forward`, `init_weights` and `tie_weights`; `nox -s check -- --step 1`
grades them. `GPTConfig`, `Embeddings.__init__` and `count_parameters` are given.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn


@dataclass
class GPTConfig:
    """Shape of a TinyGPT. Defaults are the lab's model (12.4M parameters, tied)."""

    vocab_size: int = 50257
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 192
    dropout: float = 0.1
    bias: bool = True  # GPT-2 has biases in every Linear and LayerNorm
    attn_impl: str = "sdpa"  # "manual" (step 2's explicit mask) or "sdpa" (fused kernel)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: each head "
                f"gets n_embd // n_head dimensions; pick n_embd a multiple of n_head "
                f"(e.g. n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))})"
            )
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attn_impl not in ("manual", "sdpa"):
            raise ValueError(f"attn_impl must be 'manual' or 'sdpa', got {self.attn_impl!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class Embeddings(nn.Module):
    """Token embedding plus learned absolute position embedding.

    (B, T) int64 token ids -> (B, T, C) float activations, C = n_embd.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.token = nn.Embedding(config.vocab_size, config.n_embd)
        self.position = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 ids -> (B, T, C) float32: each token's vector plus its position's vector.

        Position t (0 <= t < T) uses row t of `self.position`, the same for every sequence
        of the batch; the sum goes through `self.drop` (dropout, active in train mode only).
        A sequence longer than `config.block_size` raises ValueError: there is no position
        embedding past block_size - 1, so say so and suggest keeping the last block_size
        tokens. Why positions at all: attention itself sees its inputs as an unordered
        set, so without them "dog bites man" and "man bites dog" look the same.
        """
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(
                f"sequence of length {T} is longer than block_size={self.config.block_size}: "
                f"there is no position embedding past block_size - 1; keep the last "
                f"{self.config.block_size} tokens (idx[:, -block_size:])"
            )
        pos = torch.arange(T, device=idx.device)
        x = self.token(idx) + self.position(pos)
        return self.drop(x)


def init_weights(module: nn.Module, n_layer: int) -> None:
    """GPT-2 initialisation of every submodule of `module`, in place. Returns None.

    After it: every nn.Linear and nn.Embedding weight is drawn from a normal
    distribution with mean 0 and std 0.02, every bias is 0, every LayerNorm is the
    identity (gain 1, bias 0; either may be absent when bias=False). The exception: the
    residual output projections, the submodules whose name ends in `.proj`, get a std
    smaller by a factor sqrt(2 * n_layer). Each block adds two of them to the residual
    stream, so without the factor its variance grows with depth.
    Why it matters: PyTorch's default nn.Embedding init is N(0, 1); with a tied output
    layer each position's own token then gets a logit of ~C/sqrt(2) (~130 for C = 192;
    the other logits spread by ~sqrt(C)), so the first loss is ~130 instead of
    ln(V) ~ 10.8, the loss of a uniform guess.
    """
    std_resid = 0.02 / math.sqrt(2 * n_layer)
    for name, m in module.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            std = std_resid if name.endswith(".proj") or name == "proj" else 0.02
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def tie_weights(lm_head: nn.Linear, token_embedding: nn.Embedding) -> None:
    """Make the output layer and the token embedding one shared (V, C) Parameter. Returns None.

    Afterwards both modules hold the very same Parameter object: one tensor, one
    gradient, counted once by `count_parameters`. Copying the values is not tying: the
    two copies drift apart at the first optimizer step. Tying saves V*C parameters
    (9.6M of the lab model's 22.0M untied) and helps small models: the same matrix
    maps ids to vectors and vectors back to scores over the ids.
    """
    lm_head.weight = token_embedding.weight


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (a tied matrix counts once)."""
    return sum(p.numel() for p in model.parameters())
