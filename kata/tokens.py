"""Tokenise a corpus once and cache the token ids on disk.

The cache key hashes the documents and the tokenizer definition, so a changed corpus
or tokenizer never reuses stale ids, and a second run never re-tokenises. Ids are
stored as one uint16 array per split (GPT-2's 50,257 ids fit in 16 bits) plus the
document lengths, so step 5 can join documents with end-of-text tokens itself.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from kata.paths import atomic_path, cache_dir
from kata.tokenizer import tokenizer_fingerprint


def _key(docs: list[str], tokenizer) -> str:
    h = hashlib.sha256(tokenizer_fingerprint(tokenizer).encode())
    for d in docs:
        h.update(d.encode("utf-8", errors="replace"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def tokenize_documents(docs: list[str], tokenizer, name: str = "corpus", use_cache: bool = True) -> list[np.ndarray]:
    """Token ids of each document (a list of uint16 arrays), cached on disk."""
    path = cache_dir() / "tokens" / f"{name}-{_key(docs, tokenizer)}.npz"
    if use_cache and path.exists():
        with np.load(path) as z:
            flat, lengths = z["ids"], z["lengths"]
        return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []
    # The fast (Rust) tokenizer encodes a whole batch in parallel threads.
    encoded = tokenizer.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
    ids = [np.asarray(e.ids, dtype=np.uint16) for e in encoded]
    if use_cache:
        flat = np.concatenate(ids) if ids else np.zeros(0, np.uint16)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, ids=flat, lengths=np.asarray([len(i) for i in ids], dtype=np.int64))
    return ids
