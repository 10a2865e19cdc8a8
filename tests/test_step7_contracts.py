"""Step 7 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-7 tests let through
(those use the default dropout 0.1, the default eos id and max_grad_norm 1.0, which are
also GPT2Config's / TrainingArguments' own defaults, so a dropped argument went unseen).
"""
from __future__ import annotations

import pytest

import _probes_step7 as P
from _step7_checks import kata_folders_made
from _support import probe
from strategies import expect

pytestmark = pytest.mark.usefixtures(kata_folders_made.__name__)  # see _step7_checks.kata_folders_made


def config(**kw) -> dict:
    """The fields of the GPTConfig the tests hand hf_config (the probe builds it)."""
    base = dict(vocab_size=300, block_size=24, n_layer=2, n_head=2, n_embd=32, dropout=0.1)
    return {**base, **kw}


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_hf_config_carries_the_dropout(dropout: float) -> None:
    hf = probe(P.hf_config_fields, config(dropout=dropout))
    got = {k: hf[k] for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    expect(all(v == dropout for v in got.values()), (
        f"hf_config(GPTConfig(dropout={dropout})) gave {got}; every GPT-2 dropout (resid_pdrop, embd_pdrop, "
        f"attn_pdrop) should be config.dropout (GPT2Config's default is 0.1, so a missing one goes unseen at 0.1)"
    ))


def test_hf_config_uses_the_given_eos_id() -> None:
    hf = probe(P.hf_config_fields, config(), eos_id=7)
    got = (hf["bos_token_id"], hf["eos_token_id"])
    expect(got == (7, 7), (
        f"hf_config(config, eos_id=7) gave (bos_token_id, eos_token_id) = {got}, expected (7, 7): GPT-2 "
        f"begins and ends documents with the same end-of-text token; pass eos_id to both"
    ))


def test_training_arguments_use_the_given_max_grad_norm(tmp_path) -> None:
    args = probe(P.training_arguments_fields, str(tmp_path), max_grad_norm=0.25)
    expect(args["max_grad_norm"] == 0.25, (
        f"training_arguments(..., max_grad_norm=0.25) gave max_grad_norm={args['max_grad_norm']}: pass it on to "
        f"TrainingArguments (its default, 1.0, hides a missing one)"
    ))


def test_collator_leaves_the_callers_tokenizer_alone() -> None:
    """The collator pads with end-of-text when the tokenizer has no pad token, on its own
    copy: setting pad_token on the caller's tokenizer (a shallow copy shares it) would
    make the caller's next stock DataCollatorForLanguageModeling hide every real eos label."""
    # The probe makes CausalLMCollator(tokenizer) of a freshly loaded tokenizer, and reads its pad token.
    tok = probe(P.collator_on_a_fresh_tokenizer)
    if tok["pad_token_before"] is not None:
        pytest.skip("this tokenizer already has a pad token")
    expect(tok["pad_token_after"] is None, (
        f"CausalLMCollator(tokenizer) set pad_token={tok['pad_token_after']!r} on the caller's tokenizer; give the "
        f"collator its own copy (copy.deepcopy(tokenizer)) before setting pad_token = eos_token"
    ))


def test_collator_passes_its_options_on_to_the_stock_collator() -> None:
    """`CausalLMCollator(tokenizer, pad_to_multiple_of=8)`: the keyword options are the
    stock DataCollatorForLanguageModeling's; the labels still follow the attention mask."""
    batch = probe(P.collate, [[5, 6, 7], [8]], pad_to_multiple_of=8)
    shape = tuple(batch["input_ids"].shape)
    expect(shape == (2, 8), (
        f"CausalLMCollator(tokenizer, pad_to_multiple_of=8) on rows of 3 and 1 tokens gave input_ids of shape "
        f"{shape}, expected (2, 8): pass **kwargs on to super().__init__"
    ))
    expect(batch["labels"][:, 3:].eq(-100).all().item() and batch["labels"][0, :3].tolist() == [5, 6, 7], (
        f"labels should be the ids with -100 on the padding; got {batch['labels'].tolist()}"
    ))
