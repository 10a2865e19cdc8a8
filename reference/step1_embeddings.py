"""Step 1 — configuration, token + position embeddings, GPT-2 init, weight tying."""
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
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(
                f"sequence of length {T} is longer than block_size={self.config.block_size}: "
                f"the model has no position embedding past {self.config.block_size - 1}; "
                f"crop the input to its last {self.config.block_size} tokens"
            )
        pos = torch.arange(T, device=idx.device)
        # (B, T, C) + (T, C) broadcasts the same position vectors over the batch.
        return self.drop(self.token(idx) + self.position(pos))


def init_weights(module: nn.Module, n_layer: int) -> None:
    """GPT-2 initialisation, applied to a whole model with `model.apply`-like traversal.

    Linear and Embedding weights ~ N(0, 0.02), biases 0, LayerNorm (1, 0). Residual
    output projections (named `*.proj`) get std 0.02 / sqrt(2 * n_layer): each block
    adds two of them to the residual stream, and this keeps its variance from growing
    with depth. With PyTorch's default N(0, 1) embedding init a tied LM head emits
    logits of size ~sqrt(C), and the first loss is 50-100 instead of ln(V) ~ 10.8.
    """
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(".proj") else 0.02
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def tie_weights(lm_head: nn.Linear, token_embedding: nn.Embedding) -> None:
    """Make the output layer and the token embedding one shared (V, C) Parameter.

    The same matrix maps ids to vectors and vectors to logits, which saves V*C
    parameters (9.6M of the lab model's 22.0M untied) and helps small models.
    """
    lm_head.weight = token_embedding.weight


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (a tied matrix counts once)."""
    return sum(p.numel() for p in model.parameters())
