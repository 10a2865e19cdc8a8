"""The optional Multi30k run (`python -m kata.translate`): BLEU, data loading, and the
whole pipeline on a tiny made-up language pair, offline. Never the hub: a test must not
need the network."""
from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kata.translate import corpus_bleu, load_pairs, main, tokenize_13a

pytestmark = [pytest.mark.infra]

EN = "the a cat dog bird sees eats likes red big small green house tree water runs sleeps under near".split()
DE = "der ein katze hund vogel sieht isst mag rote grosse kleine gruene haus baum wasser rennt schlaeft unter neben".split()


def _toy_pairs(n: int, rng: random.Random) -> list[dict[str, str]]:
    """German-ish -> English word by word, same order: learnable in a few hundred steps."""
    lexicon = dict(zip(EN, DE))
    rows = []
    for _ in range(n):
        words = [rng.choice(EN) for _ in range(rng.randint(3, 8))]
        rows.append({"de": " ".join(lexicon[w] for w in words) + " .", "en": " ".join(words) + " ."})
    return rows


def test_bleu_by_hand():
    assert corpus_bleu(["the cat sat on the mat ."], ["the cat sat on the mat ."]) == pytest.approx(100.0)
    # every n-gram matches, but 6 hypothesis tokens against 8 reference tokens:
    # brevity penalty exp(1 - 8/6)
    assert corpus_bleu(["a b c d e f"], ["a b c d e f g h"]) == pytest.approx(100 * math.exp(1 - 8 / 6))
    # clipping: "the" x7 against a reference with two "the" -> p1 = 2/7, no bigram -> 0
    assert corpus_bleu(["the the the the the the the"], ["the cat is on the mat"]) == 0.0
    assert tokenize_13a('It\'s 3.5 "U.S." e-mail, 1,000 &amp; more.') == [
        "It's", "3.5", '"', "U", ".", "S", ".", '"', "e-mail", ",", "1,000", "&", "more", "."]
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu(["a", "b"], ["a"])


def test_bleu_matches_sacrebleu_on_a_random_corpus():
    """86.03044293564925 is what sacreBLEU 2.6.0 (`corpus_bleu(hyps, [refs]).score`, its
    defaults: 13a, no smoothing) gave for this exact corpus when the kata's BLEU was written;
    the kata computes it without the dependency. Tolerance: float summation order."""
    rng = random.Random(0)
    words = "the a cat dog sat on mat, 3.5 -x ran quickly . ! \"quoted\" &amp; it's e-mail 1,000 U.S.".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) for _ in range(300)]
    hyps = []
    for r in refs:
        t = r.split()
        if rng.random() < 0.5 and len(t) > 2:
            t[rng.randrange(len(t))] = rng.choice(words)
        if rng.random() < 0.3:
            t = t[:-1]
        hyps.append(" ".join(t))
    assert corpus_bleu(hyps, refs) == pytest.approx(86.03044293564925, abs=1e-9)


def test_local_data_as_parallel_text_files_or_jsonl(tmp_path):
    (tmp_path / "train.de").write_text("ein hund\nder baum\n")
    (tmp_path / "train.en").write_text("a dog\nthe tree\n")
    (tmp_path / "val.jsonl").write_text(json.dumps({"de": "ein baum", "en": "a tree"}) + "\n")
    (tmp_path / "test.de").write_text("der hund\n")
    (tmp_path / "test.en").write_text("the dog\n")
    pairs = load_pairs(str(tmp_path))
    assert pairs == {"train": [("ein hund", "a dog"), ("der baum", "the tree")],
                     "validation": [("ein baum", "a tree")], "test": [("der hund", "the dog")]}
    (tmp_path / "test.en").write_text("the dog\nextra line\n")
    with pytest.raises(ValueError, match="must be parallel"):
        load_pairs(str(tmp_path))
    (tmp_path / "test.en").unlink()
    with pytest.raises(FileNotFoundError, match="no test split"):
        load_pairs(str(tmp_path))


@pytest.mark.slow
@pytest.mark.needs_reference
@pytest.mark.timeout(240)  # ~5 s on 2 idle cores; the margin is for a loaded machine
def test_the_reference_learns_a_toy_language_pair(tmp_path, capsys):
    rng = random.Random(0)
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 2000), ("validation", 100), ("test", 100)):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _toy_pairs(n, rng)))
    out = tmp_path / "run"
    with torch.random.fork_rng():
        rc = main(["--solution", "reference", "--data-dir", str(data), "--out-dir", str(out), "--device", "cpu",
                   "--vocab-size", "400", "--n-layer", "1", "--n-head", "4", "--n-embd", "64", "--dropout", "0",
                   "--batch-tokens", "512", "--max-steps", "300", "--warmup", "100", "--beam-size", "2",
                   "--max-len", "16"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    # Measured: BLEU 94.3 after 300 steps (seed 0). A model that learned nothing, or a
    # decoder that never stops, scores near 0; 50 leaves room for another CPU's rounding.
    assert summary["bleu"] > 50, f"BLEU {summary['bleu']} on the toy pair; translations in {out / 'translations.txt'}"
    assert summary["steps"] == 300 and summary["test_sentences"] == 100
    rows = list(csv.DictReader((out / "loss.csv").open()))
    assert len(rows) == 300 and float(rows[-1]["val_loss"]) < float(rows[0]["train_loss"]) / 3
    assert (out / "translations.txt").read_text().count("\nHYP ") == 100
    printed = capsys.readouterr().out  # not a terminal: plain progress lines, first and last step at least
    assert "train step 1/300" in printed and re.search(r"train step 300/300  loss \d", printed), printed[-2000:]
    with capsys.disabled():
        print(f"\n[translate] toy pair: BLEU {summary['bleu']}, {summary['train_seconds']} s of training")


def test_bad_data_dir_is_a_clear_error(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path / "missing"), "--out-dir", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_multi30k_from_the_hub_offline_is_one_line_and_writes_nothing(tmp_path):
    """Offline (HF_HUB_OFFLINE=1, an empty HF cache) the run names what failed and what
    --data-dir must hold, exits 2 and leaves no out_dir."""
    out = tmp_path / "run"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    r = subprocess.run([sys.executable, "-m", "kata.translate", "--solution", "exercises", "--out-dir", str(out)],
                       cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, f"expected one line, got:\n{r.stderr}"
    assert "bentrevett/multi30k" in lines[0] and "--data-dir DIR" in lines[0] and ".jsonl" in lines[0], lines[0]
    assert not out.exists(), "a failed start must not create the out_dir"


def test_a_connection_error_from_the_hub_is_one_line(tmp_path, monkeypatch, capsys):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'bentrevett/multi30k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    out = tmp_path / "run"
    assert main(["--solution", "exercises", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ConnectionError: Couldn't reach 'bentrevett/multi30k'" in err, err
    assert "<split>.de + <split>.en" in err, err
    assert not out.exists()
