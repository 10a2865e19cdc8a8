"""Where the kata keeps what it builds: tokenizer, token caches, runs."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """`$KATA_CACHE_DIR`, else `.kata_cache/` at the repository root (git-ignored)."""
    return Path(os.environ.get("KATA_CACHE_DIR", REPO_ROOT / ".kata_cache"))


@contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary path next to `target`; on success move it onto `target`.

    The temporary name is unique per process (not `target + ".tmp"`), because
    several writers may build the same cache file at once — e.g. every rank of a
    `torchrun` job on a fresh checkout — and a shared tmp name lets one rank
    rename the file away from under another. `os.replace` is atomic, so readers
    see either no file or a complete one, never a half-written one; concurrent
    writers of the same content simply let the last one win.
    `suffix` keeps an extension that a writer insists on (np.savez adds ".npz").
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
