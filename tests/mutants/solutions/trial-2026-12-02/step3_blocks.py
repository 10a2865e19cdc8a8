"""Step 3 — attention, MLP, pre-norm residual blocks and the whole TinyGPT.

You write the four `forward` methods; `nox -s check -- --step 3` grades them. Every
`__init__` is given: the layout follows GPT-2 (and nanoGPT), so the weights can be copied
one to one into a Hugging Face `GPT2LMHeadModel`, which the tests use as an independent
oracle. Your model uses your own steps 1, 2 and 4 through the imports below.
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

        The contract, which the GPT-2 oracle fixes:
        - `self.qkv` makes the queries, keys and values at once: the first C output
          features are the queries, the next C the keys, the last C the values.
        - Head h owns channels h*D .. (h+1)*D - 1 of each (D = C // n_head) and attends
          on its own: its scores are the scaled dot products of its queries and keys
          (step 2's definition), position i weighs only positions 0..i, the weights of
          a query sum to 1, and it averages its values with them.
        - The heads' outputs are put back side by side in the same channel order, then
          go through `self.proj` and `self.resid_drop`.
        - attn_impl == "manual" computes this with your step 2 functions and applies
          `self.attn_drop` to the attention weights; "sdpa" uses PyTorch's fused
          attention kernel, which computes the same thing in one call and applies the
          same dropout to the weights itself (with probability `self.dropout`, and only
          in train mode). Both must give the same output in eval mode.
        Why: attention is how a position gathers information from earlier tokens; the
        heads let it look for several things at once.
        """
        B, T, C = x.shape
        H = self.n_head
        D = C // H
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, H, D).transpose(1, 2)
        k = k.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, H, D).transpose(1, 2)
        if self.attn_impl == "manual":
            mask = causal_mask(T, device=x.device)
            att = masked_attention_scores(q, k, mask)
            att = F.softmax(att, dim=-1)
            att = self.attn_drop(att)
            y = att @ v
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
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
        """(B, T, C) float -> (B, T, C) float: expand to 4C, GPT-2's activation, project back, dropout.

        Use the given layers in that order (`self.act` is GPT-2's tanh-approximate GELU;
        ReLU or the exact GELU give different numbers). Position-wise: each token's
        vector is transformed on its own. This is where most of a block's parameters
        (8C² of its 12C²) and of its per-token computation live.
        """
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
        """(B, T, C) float -> (B, T, C) float: the attention sub-layer, then the MLP sub-layer.

        Pre-norm: each sub-layer reads a LayerNorm of the stream (`ln_1` before
        attention, `ln_2` before the MLP) and its output is *added* to the stream, which
        itself is never normalised in place. x is not modified: the caller's tensor stays
        as it was, and the result is a new tensor. With both sub-layers' outputs at zero
        the block is exactly the identity; that is what lets a deep stack train at all.
        """
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
        init_weights(self, config.n_layer)  # your step 1
        tie_weights(self.lm_head, self.embed.token)  # your step 1

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """input_ids (B, T) int64 -> (logits (B, T, V) float, loss or None).

        The embeddings, every block in order, the final LayerNorm `ln_f`, then the
        (tied) output layer. The logits at position t score every vocabulary entry as
        token t+1. With labels (B, T) int64 the loss is your step 4's next-token loss
        of these very logits and these labels as given (next_token_loss does the shift
        itself, and the labels need not equal input_ids: a padded batch marks its padding
        -100 in them only), with next_token_loss's default ignore_index. It is returned as
        next_token_loss gives it: a 0-dim tensor still connected to the model, so
        loss.backward() trains it. Without labels the loss is None and none is computed.
        """
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        logits = self.lm_head(x)
        loss = None
        if labels is not None:
            loss = next_token_loss(logits, labels)
        return logits, loss

    def num_parameters(self) -> int:
        return count_parameters(self)
