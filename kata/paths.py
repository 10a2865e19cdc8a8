"""Where the kata keeps what it builds: tokenizer, token caches, runs."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """`$KATA_CACHE_DIR`, else `.kata_cache/` at the repository root (git-ignored)."""
    return Path(os.environ.get("KATA_CACHE_DIR", REPO_ROOT / ".kata_cache"))
