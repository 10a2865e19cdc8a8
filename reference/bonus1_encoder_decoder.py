"""Bonus 1 — the encoder-decoder Transformer (Harvard NLP's Annotated Transformer).

The decoder-only TinyGPT reads one stream and predicts its next token. A translation
model reads a *source* sentence with an encoder that may look both ways, and a
decoder that writes the *target* one token at a time: causal self-attention over what
it has written so far, plus cross-attention into the encoder's output ("memory").

Built from your own pieces: step 2's `masked_attention_scores` does the maths of
every attention here (a (T, S) mask broadcasts as well as the causal (T, T) one), and
step 3's `MLP` is the feed-forward sub-layer (as `FeedForward`, given). Layers are pre-norm like step 3's
`Block`, with a final LayerNorm after each stack, so the model matches
`torch.nn.Transformer(norm_first=True)` weight for weight (the tests' oracle).

Dropout sits where the Annotated Transformer puts it: on the embeddings plus
positions (`Seq2SeqEmbedding`, given), on the attention probabilities, and on each
sub-layer's output before it is added to the residual stream, and inside the
feed-forward after its activation (`FeedForward` drops there and on its own output).
In eval mode (`model.eval()`) all of it is
off and the model is deterministic; the tests compare in eval mode.

You write `MultiHeadAttention.forward`, `EncoderLayer.forward`, `DecoderLayer.forward`,
`EncoderDecoder.encode` and `EncoderDecoder.decode`; `nox -s check -- --step bonus1`
grades them. The config, the embeddings, every `__init__` and `EncoderDecoder.forward`
are given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .step2_causal_mask import masked_attention_scores
from .step3_blocks import MLP


@dataclass
class Seq2SeqConfig:
    """Shape of an encoder-decoder. Field names match GPTConfig where step 3's MLP reads them."""

    src_vocab_size: int = 13
    tgt_vocab_size: int = 13
    max_len: int = 64  # longest source or target the positional encoding covers
    n_layer: int = 2  # layers in the encoder, and again in the decoder
    n_head: int = 4
    n_embd: int = 64  # d_model
    dropout: float = 0.1
    bias: bool = True

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: each head gets "
                f"n_embd // n_head dimensions; pick n_embd a multiple of n_head"
            )
        for name in ("src_vocab_size", "tgt_vocab_size", "max_len", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class MultiHeadAttention(nn.Module):
    """Queries from one sequence, keys and values from another (or the same).

    Self-attention: `attn(x, x, mask)`; cross-attention: `attn(y, memory, src_mask)`.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        C = config.n_embd
        self.n_head = config.n_head
        self.q = nn.Linear(C, C, bias=config.bias)
        self.k = nn.Linear(C, C, bias=config.bias)
        self.v = nn.Linear(C, C, bias=config.bias)
        self.proj = nn.Linear(C, C, bias=config.bias)
        self.attn_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of the queries `x` (B, T, C) over `context` (B, S, C) -> (B, T, C) float.

        Self-attention passes one tensor twice; cross-attention passes the decoder's
        states as `x` and the encoder's memory as `context`. T and S may differ: the
        result always has the queries' length T.

        Multi-head, as in step 3: self.q, self.k, self.v project to C features, head h
        owns features [h * D, (h + 1) * D) with D = C // n_head, each head attends on
        its own slice with step 2's scaled, masked scores, and self.proj mixes the
        re-joined heads. The only change from step 3: keys and values come from
        `context`, so every shape on the key side has S, not T.

        mask is bool, True where query t may attend to key s, in one of these shapes:
          (B, 1, S)  padding only: the same keys are hidden from every query of a row;
          (B, T, S)  one mask per query, e.g. causal AND padding in the decoder;
          (T, S)     one mask for the whole batch, e.g. causal while decoding (bonus 5);
          None       every query may attend to every key.
        Whatever its shape, a row's mask applies identically to every head. A query
        with no allowed key would get NaN (a softmax over nothing); callers never
        build one.

        Dropout (self.attn_drop) acts on the attention probabilities, so in train mode
        a query randomly loses some of its keys; in eval mode it is off (deterministic).
        """
        # BEGIN SOLUTION
        B, T, C = x.shape
        S = context.size(1)
        H, D = self.n_head, C // self.n_head
        # (B, L, C) -> (B, H, L, D): every head attends on its own D dims.
        q = self.q(x).view(B, T, H, D).transpose(1, 2)
        k = self.k(context).view(B, S, H, D).transpose(1, 2)
        v = self.v(context).view(B, S, H, D).transpose(1, 2)
        if mask is None:
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device)
        elif mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (B, 1|T, S) -> (B, 1, 1|T, S): same for every head
        scores = masked_attention_scores(q, k, mask)  # (B, H, T, S)
        y = self.attn_drop(scores.softmax(dim=-1)) @ v  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-join the heads
        return self.proj(y)
        # END SOLUTION


class FeedForward(MLP):
    """Step 3's MLP with the Annotated Transformer's dropout after the activation too.

    (B, T, C) -> (B, T, C): fc, activation, dropout, proj, dropout. The second
    dropout is the sub-layer's output dropout before the residual addition.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.drop(self.act(self.fc(x)))))


class EncoderLayer(nn.Module):
    """One encoder layer: self-attention over the whole source, then the feed-forward, both pre-norm."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.self_attn = MultiHeadAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = FeedForward(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, C) float, src_mask (B, 1, S) bool (True = real token) -> (B, S, C) float.

        Two residual sub-layers, in this order, each pre-norm like step 3's `Block`
        (the sub-layer reads a LayerNorm of the stream and its output is added back;
        the stream itself is never normalised):
          1. self-attention of the source over itself (ln_1, self_attn);
          2. the feed-forward (ln_2, mlp).
        The encoder looks both ways: a source position may attend to every real source
        position, before or after it — src_mask only, never a causal mask (a word's
        meaning depends on the words after it too). Padded positions are hidden as keys.

        Dropout: the attention sub-layer's output passes through self.drop before it is
        added; the MLP already drops its own output, so it is not dropped twice.
        """
        # BEGIN SOLUTION
        h = self.ln_1(x)
        x = x + self.drop(self.self_attn(h, h, src_mask))
        x = x + self.mlp(self.ln_2(x))
        return x
        # END SOLUTION


class DecoderLayer(nn.Module):
    """One decoder layer: causal self-attention, cross-attention into the memory, feed-forward; all pre-norm."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.self_attn = MultiHeadAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.cross_attn = MultiHeadAttention(config)
        self.ln_3 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = FeedForward(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self, y: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor, tgt_mask: torch.Tensor
    ) -> torch.Tensor:
        """y (B, T, C) target states, memory (B, S, C) encoder output -> (B, T, C) float.

        Three residual sub-layers, in this order, each pre-norm (LayerNorm of the
        stream in, output added back):
          1. self-attention of the target over itself (ln_1, self_attn), under
             tgt_mask (B, T, T) or (T, T): position t reads target positions <= t only,
             so it cannot peek at the token it must predict;
          2. cross-attention (ln_2, cross_attn): queries from the target stream, keys
             and values from `memory`, under src_mask (B, 1, S) — the only place the
             decoder reads the source;
          3. the feed-forward (ln_3, mlp).
        The memory is used as it comes, not normalised again: the encoder's final
        LayerNorm already did that (and nn.Transformer, the tests' oracle, does the same).

        Dropout: both attention sub-layers' outputs pass through self.drop before they
        are added; the MLP drops its own output.
        """
        # BEGIN SOLUTION
        h = self.ln_1(y)
        y = y + self.drop(self.self_attn(h, h, tgt_mask))
        y = y + self.drop(self.cross_attn(self.ln_2(y), memory, src_mask))
        y = y + self.mlp(self.ln_3(y))
        return y
        # END SOLUTION


def sinusoidal_positions(max_len: int, n_embd: int) -> torch.Tensor:
    """(max_len, n_embd) float: the paper's fixed sin/cos position encoding."""
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd))
    pe = torch.zeros(max_len, n_embd)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : n_embd // 2]
    return pe


class Seq2SeqEmbedding(nn.Module):
    """(B, L) int64 ids -> (B, L, C): token embedding * sqrt(C) + sinusoidal positions.

    Scaling by sqrt(C) puts the token vectors on the same scale as the positions,
    which are in [-1, 1] (the Annotated Transformer's recipe).
    """

    def __init__(self, vocab_size: int, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, config.n_embd)
        self.register_buffer("positions", sinusoidal_positions(config.max_len, config.n_embd), persistent=False)
        self.scale = math.sqrt(config.n_embd)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        L = ids.size(1)
        if L > self.positions.size(0):
            raise ValueError(
                f"sequence of length {L} is longer than max_len={self.positions.size(0)}: "
                f"raise Seq2SeqConfig.max_len or shorten the input"
            )
        return self.drop(self.token(ids) * self.scale + self.positions[:L])


class EncoderDecoder(nn.Module):
    """Source ids + shifted target ids -> next-target-token logits (B, T, tgt_vocab_size)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        self.src_embed = Seq2SeqEmbedding(config.src_vocab_size, config)
        self.tgt_embed = Seq2SeqEmbedding(config.tgt_vocab_size, config)
        self.encoder = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_layer))
        self.ln_enc = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.decoder = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_layer))
        self.ln_dec = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.generator = nn.Linear(config.n_embd, config.tgt_vocab_size, bias=config.bias)
        # The Annotated Transformer's init: Glorot / fan-avg for every matrix.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """src (B, S) int64 ids, src_mask (B, 1, S) bool -> memory (B, S, C) float.

        The source side of the model: the embedded source (src_embed) through every
        encoder layer in order, then ln_enc. Pre-norm layers leave the residual stream
        un-normalised, so the stack ends with one LayerNorm; the decoder relies on
        receiving it normalised. Rows at padded positions are computed but never read
        (every mask hides them).
        """
        # BEGIN SOLUTION
        x = self.src_embed(src)
        for layer in self.encoder:
            x = layer(x, src_mask)
        return self.ln_enc(x)
        # END SOLUTION

    def decode(
        self, memory: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor, tgt_mask: torch.Tensor
    ) -> torch.Tensor:
        """memory (B, S, C), src_mask (B, 1, S), tgt_in (B, T) int64, tgt_mask (B, T, T) or (T, T)
        -> logits (B, T, tgt_vocab_size) float.

        The target side, mirroring encode: the embedded tgt_in (tgt_embed) through every
        decoder layer (each reading the same memory), a final LayerNorm (ln_dec), then
        the generator to vocabulary scores. Position t's logits are the prediction of
        target token t + 1 (tgt_in is the target shifted right) from the whole source
        and target tokens 0..t. They are unnormalised: the loss (bonus 4) and the
        decoders (bonus 5) take their own log-softmax.
        """
        # BEGIN SOLUTION
        y = self.tgt_embed(tgt_in)
        for layer in self.decoder:
            y = layer(y, memory, src_mask, tgt_mask)
        return self.generator(self.ln_dec(y))
        # END SOLUTION

    def forward(
        self, src: torch.Tensor, tgt_in: torch.Tensor, src_mask: torch.Tensor, tgt_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, S) source, (B, T) decoder input -> (B, T, tgt_vocab_size) logits."""
        return self.decode(self.encode(src, src_mask), src_mask, tgt_in, tgt_mask)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
