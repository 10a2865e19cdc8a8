"""Step 3 — attention, MLP, pre-norm residual blocks and the whole TinyGPT.

Fill in the four `forward` methods; `pytest -k step3` checks them. Every `__init__`
is given (the parameter names match the reference and GPT-2, so weights load into
either). Your model uses your own steps 1, 2 and 4 through the imports below.
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
        """(B, T, C) float -> (B, T, C) float: multi-head causal self-attention.

        1. `self.qkv(x)` is (B, T, 3C); split it into q, k, v of (B, T, C) each (in that order).
        2. Split each into heads: (B, T, C) -> (B, T, H, D) -> (B, H, T, D), D = C // H.
        3. Attend per head, position i only to positions <= i:
           - attn_impl == "manual": your step 2 — `masked_attention_scores(q, k,
             causal_mask(T, device=x.device))`, softmax over the keys (last dim),
             `self.attn_drop`, then `@ v`;
           - attn_impl == "sdpa": `F.scaled_dot_product_attention(q, k, v, is_causal=True,
             dropout_p=self.dropout if self.training else 0.0)` (the same maths, fused).
        4. Re-join the heads: (B, H, T, D) -> (B, T, H, D) -> (B, T, C), then `self.proj`
           and `self.resid_drop`.
        Attention is how a position gathers information from earlier tokens; the
        heads let it look for several things at once.
        """
        raise NotImplementedError(
            "CausalSelfAttention.forward is not written yet (step 3): its docstring states what it must do; "
            "`nox -s check -- --step 3` grades it"
        )


class MLP(nn.Module):
    """(B, T, C) -> (B, T, C): expand to 4C, GELU, project back."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.act = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) float -> (B, T, C) float: fc, act, proj, drop.

        Position-wise: each token's vector is transformed on its own. This is where
        most of a transformer's parameters (8C² of a block's 12C²) and its per-token
        computation live.
        """
        raise NotImplementedError(
            "MLP.forward is not written yet (step 3): its docstring states what it must do; "
            "`nox -s check -- --step 3` grades it"
        )


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
        """(B, T, C) float -> (B, T, C) float.

        x = x + attn(ln_1(x)); then x = x + mlp(ln_2(x)). Both additions matter: with
        the sub-layers' outputs at zero the block is the identity, which is what lets
        a deep stack train at all.
        """
        raise NotImplementedError(
            "Block.forward is not written yet (step 3): its docstring states what it must do; "
            "`nox -s check -- --step 3` grades it"
        )


class TinyGPT(nn.Module):
    """Decoder-only language model: embeddings, n_layer blocks, final norm, tied head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_weights(self, config.n_layer)  # your step 1
        tie_weights(self.lm_head, self.embed.token)  # your step 1

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """input_ids (B, T) int64 -> (logits (B, T, V) float, loss or None).

        embed -> every block in order -> ln_f -> lm_head. With labels (B, T) int64, the
        loss is your step 4's `next_token_loss(logits, labels)` (0-dim); without, None.
        The logits at position t score every vocabulary word as token t+1.
        """
        raise NotImplementedError(
            "TinyGPT.forward is not written yet (step 3): its docstring states what it must do; "
            "`nox -s check -- --step 3` grades it"
        )

    def num_parameters(self) -> int:
        return count_parameters(self)
