"""Step 3 — attention, MLP, pre-norm residual blocks and the whole TinyGPT.

The layout follows GPT-2 (and nanoGPT): its weights can be copied one to one into a
Hugging Face `GPT2LMHeadModel`, which the tests use as an independent oracle.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .step1_embeddings import Embeddings, GPTConfig, count_parameters, init_weights, tie_weights
from .step2_causal_mask import causal_mask, masked_attention_scores
from .step4_loss import next_token_loss


class CausalSelfAttention(nn.Module):
    """(B, T, C) -> (B, T, C). n_head heads of D = C // n_head dims, causal."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.attn_impl = config.attn_impl
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.attn_drop = nn.Dropout(config.dropout)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, D): each head attends independently.
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.attn_impl == "sdpa":
            # One fused kernel (flash / memory-efficient attention); same maths as below.
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
        else:
            scores = masked_attention_scores(q, k, causal_mask(T, device=x.device))
            y = self.attn_drop(scores.softmax(dim=-1)) @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-join the heads
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """(B, T, C) -> (B, T, C): expand to 4C, GELU, project back."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.act = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + mlp(ln(x)).

    The residual path carries x through unchanged, so gradients reach early layers
    directly; normalising before each sub-layer (not after) keeps it stable.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class TinyGPT(nn.Module):
    """Decoder-only language model: embeddings, n_layer blocks, final norm, tied head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_weights(self, config.n_layer)
        tie_weights(self.lm_head, self.embed.token)

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """input_ids (B, T) int64 -> logits (B, T, V), and the next-token loss if labels given."""
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = next_token_loss(logits, labels) if labels is not None else None
        return logits, loss

    def num_parameters(self) -> int:
        return count_parameters(self)
