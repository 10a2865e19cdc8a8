"""Optional, beyond the bonus steps: a real translation run (Multi30k German -> English)
with the bonus steps' encoder-decoder, Noam schedule, label smoothing and beam search,
scored by corpus BLEU on the test split.

Not graded, and never needed by a test or `nox -s check`: the copy task (bonus 6) is
the graded end-to-end check. This is what the Annotated Transformer does next.

    python -m kata.translate --solution reference                  # Multi30k from the HF hub (internet)
    python -m kata.translate --solution reference --data-dir DIR   # a local copy, no network

DIR holds `train`, `validation` (or `val`) and `test` as `<split>.jsonl` (one
{"de": ..., "en": ...} per line, the hub's format) or as parallel text files
`<split>.de` + `<split>.en` (the original release's format).
What it writes to --out-dir: tokenizer.json, loss.csv, translations.txt, summary.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from kata.corpus import DataUnavailable, hub_dataset
from kata.progress import Progress
from kata.solution import load, solution_name

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2  # the bonus steps' convention (bonus 6)
SPECIALS = ["<pad>", "<s>", "</s>"]
SPLITS = {"train": ("train",), "validation": ("validation", "val", "valid"), "test": ("test",)}
HUB_DATASET = "bentrevett/multi30k"
OFFLINE_HELP = (
    "to run without the network, pass --data-dir DIR where DIR holds train, validation (or val) "
    "and test as <split>.jsonl ({\"de\": ..., \"en\": ...} per line) or as <split>.de + <split>.en"
)


@dataclass
class TranslateConfig:
    src_lang: str = "de"
    tgt_lang: str = "en"
    vocab_size: int = 8000  # one BPE vocabulary shared by both languages
    max_len: int = 64  # longest sentence in tokens; longer training pairs are dropped
    n_layer: int = 3
    n_head: int = 8
    n_embd: int = 256
    dropout: float = 0.1
    batch_tokens: int = 4096  # target tokens per batch (sentences of similar length together)
    epochs: float = 10
    max_steps: int | None = None
    warmup: int = 2000
    factor: float = 1.0
    smoothing: float = 0.1
    beam_size: int = 4
    alpha: float = 0.6
    max_test: int | None = None  # translate only the first N test sentences (quick looks)
    seed: int = 0
    device: str = "auto"


# --------------------------------------------------------------------------- data

def load_pairs(data_dir: str | None, src: str = "de", tgt: str = "en") -> dict[str, list[tuple[str, str]]]:
    """{"train" | "validation" | "test": [(source, target), ...]} from DIR or the hub."""
    if data_dir is None:
        ds = hub_dataset(HUB_DATASET, offline_help=OFFLINE_HELP)
        return {split: [(r[src], r[tgt]) for r in ds[split]] for split in SPLITS}
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-dir {root} does not exist")
    out: dict[str, list[tuple[str, str]]] = {}
    for split, names in SPLITS.items():
        for name in names:
            jsonl, s_file, t_file = root / f"{name}.jsonl", root / f"{name}.{src}", root / f"{name}.{tgt}"
            if jsonl.exists():
                rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
                out[split] = [(r[src], r[tgt]) for r in rows]
                break
            if s_file.exists() and t_file.exists():
                a = s_file.read_text(encoding="utf-8").splitlines()
                b = t_file.read_text(encoding="utf-8").splitlines()
                if len(a) != len(b):
                    raise ValueError(f"{s_file} has {len(a)} lines but {t_file} has {len(b)}: they must be parallel")
                out[split] = list(zip(a, b))
                break
        else:
            wanted = " or ".join(f"{n}.jsonl / {n}.{src} + {n}.{tgt}" for n in names)
            raise FileNotFoundError(f"{root} has no {split} split: expected {wanted}")
    return out


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE shared by both languages; <pad> <s> </s> are ids 0, 1, 2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    assert [tok.token_to_id(s) for s in SPECIALS] == [PAD_ID, BOS_ID, EOS_ID]
    return tok


def encode_pairs(tok, pairs: list[tuple[str, str]], max_len: int) -> tuple[list[list[int]], list[list[int]], int]:
    """Token ids of each pair; pairs with a side longer than max_len are dropped (their count is returned)."""
    src = [e.ids for e in tok.encode_batch([s for s, _ in pairs])]
    tgt = [e.ids for e in tok.encode_batch([t for _, t in pairs])]
    keep = [i for i in range(len(pairs)) if 0 < len(src[i]) <= max_len and 0 < len(tgt[i]) <= max_len]
    return [src[i] for i in keep], [tgt[i] for i in keep], len(pairs) - len(keep)


def pad_batch(src: list[list[int]], tgt: list[list[int]] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """src rows -> (B, S) `[x.., EOS, PAD..]`; tgt rows -> (B, T) `[BOS, y.., EOS, PAD..]` (bonus 6's format)."""
    def pad(rows: list[list[int]]) -> torch.Tensor:
        out = torch.full((len(rows), max(map(len, rows))), PAD_ID, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out

    s = pad([r + [EOS_ID] for r in src])
    return s, (pad([[BOS_ID] + r + [EOS_ID] for r in tgt]) if tgt is not None else None)


def token_batches(src: list[list[int]], tgt: list[list[int]], batch_tokens: int, g: torch.Generator):
    """Index lists of sentences of similar length, about `batch_tokens` target tokens each, shuffled."""
    order = sorted(range(len(src)), key=lambda i: (len(tgt[i]), len(src[i])))
    batches, cur, longest = [], [], 0
    for i in order:
        longest = max(longest, len(tgt[i]) + 2)
        if cur and longest * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, longest = [], len(tgt[i]) + 2
        cur.append(i)
    if cur:
        batches.append(cur)
    return [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]


# --------------------------------------------------------------------------- BLEU

_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))
# mteval-v13a's tokenization, the one sacreBLEU applies by default ("13a").
_13A = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line: str) -> list[str]:
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        for entity, char in _ENTITIES:
            line = line.replace(entity, char)
    line = f" {line} "
    for pattern, repl in _13A:
        line = pattern.sub(repl, line)
    return line.split()


def corpus_bleu(hypotheses: list[str], references: list[str], max_n: int = 4) -> float:
    """Corpus BLEU-4 in [0, 100]: one reference per sentence, 13a tokenization, no smoothing.

    Clipped n-gram counts are summed over the corpus before the precisions are taken;
    brevity penalty exp(1 - r/c) when the hypotheses are shorter than the references.
    The definition sacreBLEU computes by default (Papineni et al., 2002).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for h, r in zip(hypotheses, references):
        h_tok, r_tok = tokenize_13a(h), tokenize_13a(r)
        hyp_len, ref_len = hyp_len + len(h_tok), ref_len + len(r_tok)
        for n in range(1, max_n + 1):
            h_ngrams = Counter(tuple(h_tok[i : i + n]) for i in range(len(h_tok) - n + 1))
            r_ngrams = Counter(tuple(r_tok[i : i + n]) for i in range(len(r_tok) - n + 1))
            matches[n - 1] += sum(min(c, r_ngrams[g]) for g, c in h_ngrams.items())
            totals[n - 1] += max(0, len(h_tok) - n + 1)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * brevity * math.exp(log_precision)


# --------------------------------------------------------------------------- the run

def translate_run(cfg: TranslateConfig, data_dir: str | None, out_dir: str, solution: str | None = None) -> dict:
    """Train on train, validate every epoch, beam-decode test, score BLEU (one process); the summary."""
    b1, b2, b3, b4, b5, b6 = (load(m, solution) for m in (
        "bonus1_encoder_decoder", "bonus2_batch", "bonus3_noam", "bonus4_label_smoothing",
        "bonus5_decoding", "bonus6_copy_task"))
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if cfg.device == "auto" else cfg.device))
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)

    pairs = load_pairs(data_dir, cfg.src_lang, cfg.tgt_lang)
    out = Path(out_dir)  # made only once there is data: a failed start leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer([text for pair in pairs["train"] for text in pair], cfg.vocab_size)
    tok.save(str(out / "tokenizer.json"))
    train_src, train_tgt, dropped = encode_pairs(tok, pairs["train"], cfg.max_len)
    val_src, val_tgt, _ = encode_pairs(tok, pairs["validation"], cfg.max_len)
    if not train_src:
        raise ValueError(f"no training pair fits max_len={cfg.max_len} tokens: raise --max-len")
    vocab = tok.get_vocab_size()
    print(f"{len(train_src):,} training pairs ({dropped} longer than {cfg.max_len} tokens dropped), "
          f"{len(val_src):,} validation, {len(pairs['test']):,} test; shared BPE vocabulary {vocab:,}", flush=True)

    model = b1.EncoderDecoder(b1.Seq2SeqConfig(
        src_vocab_size=vocab, tgt_vocab_size=vocab, max_len=cfg.max_len + 2, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout)).to(device)
    criterion = b4.LabelSmoothingLoss(vocab, pad_id=PAD_ID, smoothing=cfg.smoothing)
    optimizer, scheduler = b3.noam_optimizer(model.parameters(), cfg.n_embd, cfg.warmup, cfg.factor)

    def batch_of(src_rows, tgt_rows, idx):
        s, t = pad_batch([src_rows[i] for i in idx], [tgt_rows[i] for i in idx])
        return b2.Batch(s, t, pad_id=PAD_ID).to(device)

    @torch.no_grad()
    def validation_loss() -> float:
        model.eval()
        total = tokens = 0.0
        for idx in token_batches(val_src, val_tgt, cfg.batch_tokens, torch.Generator().manual_seed(0)):
            b = batch_of(val_src, val_tgt, idx)
            total += criterion(model(b.src, b.tgt_in, b.src_mask, b.tgt_mask), b.tgt_out).item() * b.ntokens
            tokens += b.ntokens
        model.train()
        return total / max(tokens, 1)

    per_epoch = len(token_batches(train_src, train_tgt, cfg.batch_tokens, torch.Generator().manual_seed(0)))
    total_steps = cfg.max_steps or max(1, int(cfg.epochs * per_epoch))
    log = (out / "loss.csv").open("w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "epoch", "train_loss", "val_loss", "lr"])
    step, val, t0 = 0, math.nan, time.perf_counter()
    bar = Progress(0, total_steps, total_steps, "train")  # a bar on a terminal, plain lines in a log
    while step < total_steps:
        for idx in token_batches(train_src, train_tgt, cfg.batch_tokens, g):
            step += 1
            batch = batch_of(train_src, train_tgt, idx)
            loss = b6.train_step(model, batch, criterion, optimizer, scheduler)
            bar.set(loss=float(loss))
            bar.advance(tokens=int(batch.ntokens))
            end_of_epoch = step % per_epoch == 0 or step == total_steps  # the last step always validates
            if end_of_epoch:
                val = validation_loss()
            writer.writerow([step, round(step / per_epoch, 3), round(loss, 5),
                             round(val, 5) if end_of_epoch else "", scheduler.get_last_lr()[0]])
            if step >= total_steps:
                break
    bar.close()
    log.close()
    train_seconds = time.perf_counter() - t0

    test = pairs["test"][: cfg.max_test] if cfg.max_test else pairs["test"]
    hypotheses: list[str] = []
    print(f"translating {len(test):,} test sentences (beam {cfg.beam_size})", flush=True)
    for i in range(0, len(test), 64):
        rows = [tok.encode(s).ids[: cfg.max_len] for s, _ in test[i : i + 64]]
        src, _ = pad_batch([r or [EOS_ID] for r in rows], None)
        src = src.to(device)
        mask = b2.src_padding_mask(src, PAD_ID)
        ys = b5.beam_search(model, src, mask, cfg.max_len + 1, BOS_ID, EOS_ID, PAD_ID,
                            beam_size=cfg.beam_size, alpha=cfg.alpha)
        for row in ys.tolist():
            row = row[: row.index(EOS_ID)] if EOS_ID in row else [t for t in row if t != PAD_ID]
            hypotheses.append(tok.decode(row).strip())
    references = [t for _, t in test]
    bleu = corpus_bleu(hypotheses, references)
    with (out / "translations.txt").open("w", encoding="utf-8") as f:
        for (s, r), h in zip(test, hypotheses):
            f.write(f"SRC {s}\nREF {r}\nHYP {h}\n\n")
    summary = {"bleu": round(bleu, 2), "val_loss": val, "steps": step, "epochs": round(step / per_epoch, 2),
               "train_seconds": round(train_seconds, 1), "test_sentences": len(test),
               "parameters": model.num_parameters(), "device": str(device), "solution": solution_name(solution),
               "data": data_dir or HUB_DATASET, "config": asdict(cfg)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"BLEU {bleu:.2f} on {len(test)} test sentences (beam {cfg.beam_size}); validation loss {val:.3f}; "
          f"{step} steps in {train_seconds:.0f} s -> {out}/translations.txt", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kata.translate", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="a local copy (see above); default: the HF hub's " + HUB_DATASET)
    p.add_argument("--out-dir", default="runs/translate")
    p.add_argument("--solution", default=None, help="exercises (default) or reference")
    for name, value in asdict(TranslateConfig()).items():
        kind = type(value) if value is not None else int
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=argparse.SUPPRESS)
    args = vars(p.parse_args(argv))
    data_dir, out_dir, solution = args.pop("data_dir"), args.pop("out_dir"), args.pop("solution")
    try:
        translate_run(TranslateConfig(**args), data_dir, out_dir, solution)
    except NotImplementedError as e:  # the learner's bonus steps are not finished yet
        print(f"error: {e}\n(this run uses bonus steps 1-6 of --solution {solution_name(solution)}: "
              f"`nox -s check` shows which is next)", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, DataUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
