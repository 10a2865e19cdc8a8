"""Step 1 — configuration, token + position embeddings, GPT-2 init, weight tying.

Fill in `Embeddings.forward`, `init_weights` and `tie_weights`; `pytest -k step1`
checks them. `GPTConfig`, `Embeddings.__init__` and `count_parameters` are given.
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
        """(B, T) int64 ids -> (B, T, C) float32: token vector + position vector, then dropout.

        Position t (0 <= t < T) gets row t of `self.position`; the same position
        vectors are added to every sequence of the batch. A sequence longer than
        `config.block_size` raises ValueError (there is no position embedding past
        block_size - 1: say so, and suggest cropping to the last block_size tokens).
        Without the position vectors attention cannot tell "dog bites man" from
        "man bites dog": it sees the tokens as an unordered set.
        """
        raise NotImplementedError(
            "Embeddings.forward is not written yet (step 1): its docstring states what it must do; "
            "`nox -s check -- --step 1` grades it"
        )


def init_weights(module: nn.Module, n_layer: int) -> None:
    """GPT-2 initialisation of every submodule of `module`, in place. Returns None.

    Walk `module.named_modules()`:
    - nn.Linear: weight ~ N(0, 0.02²), bias = 0; except the residual output
      projections (module names ending in ".proj"), whose std is 0.02 / sqrt(2 * n_layer):
      each block adds two of them to the residual stream, and this keeps its
      variance from growing with depth.
    - nn.Embedding: weight ~ N(0, 0.02²).
    - nn.LayerNorm: weight = 1, bias = 0 (either may be None when bias=False).
    PyTorch's default nn.Embedding init is N(0, 1): with a tied output layer that
    gives logits of size ~sqrt(C), and the first loss is 50-100 instead of ln(V) ~ 10.8.
    """
    raise NotImplementedError(
        "init_weights is not written yet (step 1): its docstring states what it must do; "
        "`nox -s check -- --step 1` grades it"
    )


def tie_weights(lm_head: nn.Linear, token_embedding: nn.Embedding) -> None:
    """Make the output layer and the token embedding one shared (V, C) Parameter. Returns None.

    Afterwards `lm_head.weight is token_embedding.weight`: one tensor, one gradient,
    counted once. Copying the values is not tying: the two would drift apart at the
    first optimizer step. Tying saves V*C parameters (9.6M of the lab model's 22.0M
    untied) and helps small models: the same matrix maps ids to vectors and back.
    """
    raise NotImplementedError(
        "tie_weights is not written yet (step 1): its docstring states what it must do; "
        "`nox -s check -- --step 1` grades it"
    )


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (a tied matrix counts once)."""
    return sum(p.numel() for p in model.parameters())
