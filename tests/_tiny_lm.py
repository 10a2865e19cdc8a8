"""Small stand-in language models for the step 5-6 tests.

They depend on no step of the kata, so a learner's unfinished model (steps 1-4)
cannot fail the training-loop or sampler tests. `TinyLM` has what the loop cares
about: a tied (V, C) matrix, 1-D LayerNorm/bias parameters, dropout, and the
`model(input_ids, labels=...) -> (logits, loss)` interface of TinyGPT.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F


class TinyLM(nn.Module):
    """(B, T) int64 -> logits (B, T, V); loss = next-token cross-entropy when labels are given."""

    def __init__(self, vocab_size: int = 97, n_embd: int = 16, block_size: int = 16, dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.config = SimpleNamespace(vocab_size=vocab_size, block_size=block_size, n_embd=n_embd)
        self.token = nn.Embedding(vocab_size, n_embd)
        self.position = nn.Embedding(block_size, n_embd)
        self.ln = nn.LayerNorm(n_embd)
        self.fc = nn.Linear(n_embd, n_embd)
        self.drop = nn.Dropout(dropout)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.token.weight  # tied, like TinyGPT
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None):
        T = input_ids.size(1)
        x = self.token(input_ids) + self.position(torch.arange(T, device=input_ids.device))
        x = self.drop(torch.tanh(self.fc(self.ln(x))))
        logits = self.lm_head(x)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1))
        return logits, loss


class TableLM(nn.Module):
    """Next-token logits from a fixed (V, V) table indexed by the last token; records every call.

    `calls` holds (input length, model.training) for each forward, so a test can check
    the context was cropped and the model was in eval mode. The table is a buffer (it moves
    with the model) and is read as an embedding, which, like a real model's, refuses ids on
    another device than its own.
    """

    def __init__(self, table: torch.Tensor, block_size: int) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.config = SimpleNamespace(vocab_size=table.size(0), block_size=block_size)
        self.dummy = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.calls: list[tuple[int, bool]] = []

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None):
        self.calls.append((input_ids.size(1), self.training))
        if input_ids.size(1) > self.config.block_size:
            raise AssertionError(
                f"the model was fed {input_ids.size(1)} tokens but block_size is {self.config.block_size}: "
                f"crop the context to its last block_size tokens before every forward (crop_context)"
            )
        return F.embedding(input_ids, self.table), None
