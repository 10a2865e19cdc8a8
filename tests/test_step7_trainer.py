"""Step 7: the same model in Hugging Face form, its collator, its TrainingArguments.

The oracle for `hf_config` is the reference TinyGPT itself: its weights, copied into
a GPT2LMHeadModel built from the learner's config, must give the same logits.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import _probes_step7 as P
from _step7_checks import example_changes, examples_message, kata_folders_made, optimisation_mistakes, warmup_story
from _support import assert_close, oracle, probe, recorded
from strategies import TIED_PARAMETERS, random_state_by_name

EOS = 50256

pytestmark = pytest.mark.usefixtures(kata_folders_made.__name__)  # see _step7_checks.kata_folders_made


def config(**kw) -> dict:
    """The fields of the GPTConfig the tests hand hf_config (the probe builds it)."""
    base = dict(vocab_size=300, block_size=24, n_layer=2, n_head=2, n_embd=32, dropout=0.1)
    return {**base, **kw}


# -------------------------------------------------------------------- hf_config


def test_hf_config_has_the_tinygpt_shape():
    hf = probe(P.hf_config_fields, config())
    expected = dict(
        vocab_size=300, n_positions=24, n_embd=32, n_layer=2, n_head=2,
        resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
        layer_norm_epsilon=1e-5, tie_word_embeddings=True, eos_token_id=EOS, bos_token_id=EOS,
    )
    why = {
        "n_positions": "the position table has block_size rows (n_positions=block_size), or TinyGPT's wpe does not fit",
        "activation_function": "TinyGPT's MLP uses GPT-2's tanh-approximate GELU, not the exact one",
        "layer_norm_epsilon": "nn.LayerNorm's default eps is 1e-5 (GPT2Config's default is the same; keep it)",
        "tie_word_embeddings": "TinyGPT's lm_head is the token embedding: tie them",
    }
    wrong = {k: (hf[k], v) for k, v in expected.items() if hf[k] != v}
    # The activation by what it computes, not its name: "gelu_new" and "gelu_pytorch_tanh" are both
    # GPT-2's tanh-approximate GELU.
    from transformers.activations import ACT2FN

    act = hf["activation_function"]
    x = torch.linspace(-6, 6, 241)
    try:
        same = torch.allclose(ACT2FN[act](x), torch.nn.functional.gelu(x, approximate="tanh"), atol=1e-6)
    except (KeyError, TypeError):
        same = False
    if not same:
        wrong["activation_function"] = (act, "a tanh-approximate GELU (e.g. 'gelu_new')")
    assert not wrong, "hf_config does not match the GPTConfig:\n" + "\n".join(
        f"  {k}: got {got!r}, expected {want!r}" + (f" — {why[k]}" if k in why else "")
        for k, (got, want) in wrong.items()
    )


# TinyGPT's weights for the comparison: std 0.2 rather than GPT-2's init (std 0.02), as step 3's
# tests load. At the init the attention scores are ~1e-3, so softmax is nearly uniform whatever
# they are scaled by, and an attention scaled otherwise (per layer, or not at all) moves the logits
# by ~1e-4, inside the tolerance; at std 0.2 the scores are O(1) and such a config moves them by O(0.1).
WEIGHT_STD = 0.2


@recorded
def reference_tinygpt(cfg: dict, seed: int, ids: torch.Tensor, std: float) -> tuple[dict, torch.Tensor]:
    """A reference TinyGPT with random weights of standard deviation `std` (LayerNorms near 1,
    biases 0.1: strategies.random_state_by_name): its weights and its eval-mode logits on `ids`."""
    model = oracle("step3_blocks").TinyGPT(oracle("step1_embeddings").GPTConfig(**cfg)).eval()
    model.load_state_dict(random_state_by_name(model, seed, std=std, tied=TIED_PARAMETERS["TinyGPT"]))
    with torch.no_grad():
        logits, _ = model(ids)
    return dict(model.state_dict()), logits


shapes = st.tuples(
    st.integers(50, 300), st.integers(8, 32), st.integers(1, 2), st.sampled_from([(1, 16), (2, 16), (2, 32), (4, 32)]),
    st.integers(0, 1000),
)


@settings(max_examples=8)  # each example builds two models; 8 shapes cover the fields
@example((60, 12, 3, (2, 16), 5))  # always several blocks: a per-layer attention scale shows from the second
@given(shapes)
def test_tinygpt_weights_give_the_same_logits_in_gpt2lmheadmodel(shape):
    V, block, n_layer, (n_head, n_embd), seed = shape
    cfg = dict(vocab_size=V, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=0.0)
    ids = torch.randint(0, V, (2, block), generator=torch.Generator().manual_seed(seed))
    sd, want = reference_tinygpt(cfg, seed, ids, WEIGHT_STD)
    # The probe copies these weights (copy_into_hf) into a GPT2LMHeadModel built from hf_config.
    seen = probe(P.tinygpt_weights_in_gpt2, cfg, sd, ids)
    if "mismatch" in seen:
        where = seen["where"]
        pytest.fail(
            f"TinyGPT's weights (GPTConfig {cfg}) do not fit a GPT2LMHeadModel built from hf_config: "
            + ("; ".join(where) if where else seen["mismatch"].replace("\n", " ")[:400])
            + ". The config's sizes must be TinyGPT's. Look at hf_config (step7_trainer.py)", pytrace=False,
        )
    got = seen["logits"]
    # Which blocks' attention is not TinyGPT's (the probe looks; the message uses it where the logits differ).
    attention = seen["attention"] if not torch.allclose(got, want, atol=1e-4, rtol=1e-4) else []
    # fp32 on CPU; HF's Conv1D (addmm) and nn.Linear round differently: ~1e-6 (~1e-5 at std 0.2).
    assert_close(got, want, atol=1e-4, rtol=1e-4, what=f"GPT2LMHeadModel's logits with TinyGPT's weights ({cfg})",
                 hint=("Its attention is not TinyGPT's (causal, every layer's scores scaled by 1/sqrt(head size)): "
                       + "; ".join(attention) + ". Look at hf_config (step7_trainer.py): which of GPT2Config's "
                       "settings change how the attention scores are scaled" if attention else
                       "The architectures must match exactly: the same activation (GPT-2's tanh GELU), the same "
                       "LayerNorm eps (1e-5), tied embeddings, the same attention. Look at hf_config "
                       "(step7_trainer.py)"))


# --------------------------------------------------------------------- collator


def collate(rows: list[list[int]], **tokenizer_and_collator) -> dict:
    """The batch the learner's CausalLMCollator makes of `rows` (each a {"input_ids": tensor}
    example) with the kata's tokenizer (`pad_is_eos=True`: pad_token = eos_token on it)."""
    return probe(P.collate, rows, **tokenizer_and_collator)


@pytest.mark.parametrize("pad_is_eos", [True, False])
def test_collator_leaves_the_callers_examples_alone(pad_is_eos):
    """The examples are the caller's (the docstring): the list, its dicts and their tensors
    are as they were after the call, with padding to do (rows of 4 and 2 tokens)."""
    rows = [[5, EOS, 7, 8], [EOS, 1]]
    seen = probe(P.collate_and_watch_examples, rows, pad_is_eos)
    before = [{"input_ids": torch.tensor(r)} for r in rows]  # what the examples held before the call
    changes = example_changes(before, seen["examples_now"])
    assert not changes, examples_message(changes)
    want = [[5, EOS, 7, 8], [EOS, 1, -100, -100]]
    labels = seen["batch"].get("labels")
    assert isinstance(labels, torch.Tensor) and labels.tolist() == want, (
        f"collating {rows} should give labels {want} (the input ids, -100 on the padding); got "
        f"{labels.tolist() if isinstance(labels, torch.Tensor) else labels!r}. Look at CausalLMCollator.torch_call "
        f"(step7_trainer.py)"
    )


def test_collator_keeps_real_eos_labels_even_when_pad_is_eos():
    # pad_token = eos_token: the usual set-up, which hides EOS in the stock collator
    rows = [[5, EOS, 7, 8, EOS], [EOS, 1, 2, EOS, 3]]
    batch = collate(rows, pad_is_eos=True)
    labels = batch["labels"]
    assert torch.equal(labels, torch.tensor(rows)), (
        f"equal-length chunks have no padding, so the labels should be the input ids unchanged {rows}; got "
        f"{labels.tolist()}. The stock DataCollatorForLanguageModeling sets every label equal to pad_token_id to "
        f"-100, and with pad_token = eos_token that hides every real <|endoftext|>: a token id alone cannot tell "
        f"padding from a real end of text. Look at CausalLMCollator (step7_trainer.py)"
    )


@pytest.mark.parametrize("pad_is_eos", [True, False])
def test_collator_masks_only_real_padding(pad_is_eos):
    batch = collate([[5, EOS, 7, 8], [EOS, 1]], pad_is_eos=pad_is_eos)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]], (
        f"the attention mask should mark the padding of the short row: got {batch['attention_mask'].tolist()}; "
        f"the padded batch's own attention mask must come through unchanged"
    )
    want = [[5, EOS, 7, 8], [EOS, 1, -100, -100]]
    assert batch["labels"].tolist() == want, (
        f"labels should be the input ids with -100 exactly where attention_mask is 0 (padding) — real EOS "
        f"tokens included: expected {want}, got {batch['labels'].tolist()}"
    )


@pytest.mark.parametrize("pad_is_eos", [True, False])
def test_collator_masking_leaves_the_input_ids_intact(pad_is_eos):
    batch = collate([[5, EOS, 7, 8], [EOS, 1]], pad_is_eos=pad_is_eos)
    ids = batch["input_ids"]
    pad = ids[1, 2:].tolist()
    assert ids[0].tolist() == [5, EOS, 7, 8] and ids[1, :2].tolist() == [EOS, 1] and min(pad) >= 0 \
            and len(set(pad)) == 1, (
        f"after collating [[5, {EOS}, 7, 8], [{EOS}, 1]], input_ids should be the rows padded with the pad id, "
        f"got {ids.tolist()}"
        + (": -100 was written into the model's inputs (an embedding lookup of -100 crashes). The labels share "
           "memory with input_ids (labels = batch['input_ids'], .detach() or a view), so masking the labels "
           "masked the inputs too: build the labels as a copy (.clone()) or out of place (torch.where)"
           if min(pad) < 0 else "")
    )


def test_collator_batch_is_int64():
    batch = collate([[5, EOS, 7, 8], [EOS, 1]])
    wrong = {k: v.dtype for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dtype != torch.int64}
    assert not wrong, (
        f"every tensor of the batch should be int64 (the docstring: a batch dict of (B, T) int64 tensors), as the "
        f"stock collator builds them; got {wrong}. Look at CausalLMCollator.torch_call (step7_trainer.py)"
    )
    want = [[5, EOS, 7, 8], [EOS, 1, -100, -100]]
    assert batch["labels"].tolist() == want, (
        f"labels should be the input ids with -100 on the padding: expected {want}, got {batch['labels'].tolist()}. "
        f"Look at CausalLMCollator.torch_call (step7_trainer.py)"
    )


def test_collator_batch_without_attention_mask_keeps_every_label():
    rows = [[5, EOS, 7, 8], [EOS, 1, 2, 3]]
    try:
        # a tokenizer whose padding returns no attention mask
        batch = collate(rows, model_input_names=["input_ids"])
    except Exception as e:  # noqa: BLE001 - the learner's error, reported as a diagnosis
        pytest.fail(f"collating {rows} with a tokenizer that returns no attention mask raised {type(e).__name__}: "
                    f"{e}. The docstring: a batch without an attention mask has no padding to hide, so every "
                    f"label is its input id. Look at CausalLMCollator.torch_call (step7_trainer.py)", pytrace=False)
    assert batch["labels"].tolist() == rows, (
        f"with no attention mask in the batch there is no padding to hide: labels should equal the input ids "
        f"{rows}, got {batch['labels'].tolist()}. Look at CausalLMCollator.torch_call (step7_trainer.py)"
    )


def test_collator_labels_are_a_tensor_of_their_own():
    rows = [[5, EOS, 7, 8], [EOS, 1, 2, 3]]
    # The probe collates, then writes -100 into the labels' first column (what masking, or any
    # later edit of the labels, does) and reads input_ids before and after that write.
    seen = probe(P.write_into_labels, rows)
    assert torch.equal(seen["input_ids"], torch.tensor(rows)), (
        f"collating the equal-length rows {rows} should give them as input_ids unchanged; got "
        f"{seen['input_ids'].tolist()}. Look at CausalLMCollator.torch_call (step7_trainer.py)"
    )
    assert torch.equal(seen["input_ids_after"], seen["input_ids"]), (
        "writing into batch['labels'] changed batch['input_ids']: the two share memory (labels = "
        "batch['input_ids'] without .clone(), or a .view()/.detach() of it), so any mask applied to the labels "
        "also lands in the model's inputs. Make the labels a copy: batch['input_ids'].clone()"
    )


# ------------------------------------------------------------ training_arguments


def test_training_arguments_carry_the_lab_hyperparameters(tmp_path):
    args = probe(P.training_arguments_fields, str(tmp_path))
    expected = dict(
        learning_rate=3e-4, weight_decay=0.01, max_grad_norm=1.0, per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        num_train_epochs=2, adam_beta1=0.9, adam_beta2=0.95, warmup_steps=100, gradient_accumulation_steps=1,
        seed=0, dataloader_drop_last=True,
    )
    wrong = {k: (args[k], v) for k, v in expected.items() if args[k] != pytest.approx(v)}
    if args["report_to"] not in ([], "none", ["none"]):
        wrong["report_to"] = (args["report_to"], "none (no wandb/tensorboard)")
    save = args["save_strategy"]  # an enum arrives as its value
    if save != "no":
        wrong["save_strategy"] = (save, "no")
    evals = args["eval_strategy"]
    if evals != "no":
        wrong["eval_strategy"] = (evals, "no (no evaluation during training)")
    logs = args["logging_strategy"]
    if (logs, args["logging_steps"]) != ("steps", 50):
        wrong["logging_strategy, logging_steps"] = ((logs, args["logging_steps"]), ("steps", 50))
    assert not wrong, "TrainingArguments differ from the lab's settings:\n" + "\n".join(
        f"  {k}: got {got!r}, expected {want!r}" for k, (got, want) in wrong.items()
    )
    assert args["output_dir"] == str(tmp_path), f"output_dir is {args['output_dir']!r}, expected the one passed in"


def test_training_arguments_evaluate_in_batches_of_the_training_batch_size(tmp_path):
    args = probe(P.training_arguments_fields, str(tmp_path), per_device_train_batch_size=12)
    got = (args["per_device_train_batch_size"], args["per_device_eval_batch_size"])
    assert got == (12, 12), (
        f"training_arguments(..., per_device_train_batch_size=12) gave (train, eval) batch sizes {got}, expected "
        f"(12, 12): evaluation batches are the training batch size (TrainingArguments' own eval default is 8 "
        f"whatever the training size). Look at training_arguments (step7_trainer.py)"
    )


def test_training_arguments_report_to_no_tracker_even_when_one_is_installed(tmp_path):
    # "all" means every tracker installed; the probe pretends wandb and tensorboard are, as on Colab.
    args = probe(P.training_arguments_fields, str(tmp_path), trackers_installed=["wandb", "tensorboard"])
    assert args["report_to"] in ([], "none", ["none"]), (
        f"with wandb and tensorboard installed, training_arguments(...) reports to {args['report_to']!r}; expected "
        f"none: a run without side effects sends nothing to experiment trackers. Look at training_arguments "
        f"(step7_trainer.py)"
    )


def tiny_chunks(V: int, T: int, n: int) -> torch.Tensor:
    """`n` training chunks of `T` random token ids below `V` (seed 0)."""
    return torch.randint(0, V, (n, T), generator=torch.Generator().manual_seed(0))


def tiny_gpt2(V: int, T: int, n_embd: int, seed: int = 0) -> tuple[dict, dict]:
    """(GPT2Config fields, weights) of the test's own one-block GPT2LMHeadModel: TinyGPT's shape
    and function (the GPT2Config hf_config gives; the same weights as build_hf_model(cfg, seed)).
    The Trainer tests train and score this model, so their expected losses are the test's."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = dict(vocab_size=V, n_positions=T, n_embd=n_embd, n_layer=1, n_head=2, activation_function="gelu_new",
                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                  tie_word_embeddings=True, bos_token_id=EOS, eos_token_id=EOS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(GPT2Config(**config))
    return config, dict(model.state_dict())


def next_token_loss(config: dict, state: dict, chunks: torch.Tensor) -> float:
    """The test's GPT2LMHeadModel (GPT2Config(**config), weights `state`): its own next-token
    loss on `chunks`, in eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(**config))
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return model(input_ids=chunks, labels=chunks).loss.item()


def test_trainer_optimizer_is_the_loops_adamw(tmp_path):
    opt = probe(P.trainer_optimizer, str(tmp_path), tiny_chunks(64, 8, 8))
    assert opt["adamw"], (
        f"the Trainer built a {opt['type']} optimizer from training_arguments(...); the loop uses "
        f"torch.optim.AdamW (configure_optimizer), so the Trainer must too. Look at training_arguments "
        f"(step7_trainer.py): find the setting that names the optimizer"
    )
    got = sorted(set(opt["groups"]))
    assert got == [((0.9, 0.95), pytest.approx(1e-8), pytest.approx(3e-4))], (
        f"the Trainer's AdamW has (betas, eps, lr) {got}, expected ((0.9, 0.95), 1e-8, 3e-4) in every group, as "
        f"configure_optimizer's (betas as its default, torch's default eps) with the given learning rate. Look "
        f"at training_arguments (step7_trainer.py)"
    )


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_trainer_schedule_is_linear_warmup_then_half_a_cosine(tmp_path):
    """The shape of the loop's schedule, whichever scheduler type gives it: the warm-up
    rises linearly to the peak at `warmup_steps`, then half a cosine falls to its floor at
    the last step. Ending at 0 (HF's "cosine") or at a floor up to the loop's min_lr
    ratio, 0.1 (e.g. "cosine_with_min_lr") are both the loop's shape."""
    W, N = 10, 50
    lrs = probe(P.trainer_schedule, str(tmp_path), tiny_chunks(64, 8, 8), W, N)  # steps 0..N
    peak = 3e-4
    floor = lrs[N]
    want = [peak * t / W for t in range(W)] + [
        floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * (t - W) / (N - W))) for t in range(W, N + 1)]
    shown = ", ".join(f"{t}: {lrs[t]:.3g}" for t in (0, W // 2, W, (W + N) // 2, N))
    warmup_ok = lrs[:W + 1] == pytest.approx(want[:W + 1], rel=1e-4, abs=1e-9)
    assert lrs == pytest.approx(want, rel=1e-4, abs=1e-9) and floor <= 0.1 * peak * (1 + 1e-6), (
        f"with warmup_steps={W}, max_steps={N}, the Trainer's learning rate by step is {{{shown}}}; expected a "
        f"linear warm-up from 0 to {peak:g} at step {W}, then half a cosine down to a floor of at most "
        f"{0.1 * peak:g} (the loop's min_lr ratio) at step {N}. "
        + ("The decay after the warm-up is not that half cosine. Look at training_arguments (step7_trainer.py): "
           "the scheduler type" if warmup_ok else
           f"The warm-up does not follow the given warmup_steps={W}: {warmup_story(lrs[:2], peak)}. Look at "
           f"training_arguments (step7_trainer.py): the warm-up it is given must reach TrainingArguments")
    )


def test_trainer_loss_is_the_models_next_token_loss(tmp_path):
    chunks = tiny_chunks(64, 8, 8)
    config, state = tiny_gpt2(64, 8, 16)
    seen = probe(P.trainer_loss_on, str(tmp_path), chunks, config, state)  # the Trainer's loss on chunks[:4]
    rows = chunks[:4]
    assert all(isinstance(seen[k], torch.Tensor) and torch.equal(seen[k], rows) for k in ("input_ids", "labels")), (
        f"the Trainer's collator made input_ids {seen['input_ids']!r} and labels {seen['labels']!r} of four "
        f"equal-length chunks {rows.tolist()}: both should be the chunks unchanged (nothing is padding). Look at "
        f"CausalLMCollator.torch_call (step7_trainer.py)"
    )
    want = next_token_loss(config, state, rows)
    got = seen["loss"]
    assert got == pytest.approx(want, rel=1e-5), (
        f"the Trainer's loss on a batch is {got:.6f}, but the model's own next-token cross-entropy is {want:.6f}: "
        f"the Trainer must optimise the loss your loop does (no label smoothing, no other loss). Look at "
        f"training_arguments (step7_trainer.py)"
    )


@pytest.mark.parametrize("use_cpu", [True, False])
def test_training_arguments_overrides_win(tmp_path, use_cpu):
    args = probe(P.training_arguments_fields, str(tmp_path), learning_rate=1e-3, max_steps=7, use_cpu=use_cpu,
                 logging_steps=3)
    got = (args["learning_rate"], args["max_steps"], args["use_cpu"], args["logging_steps"])
    assert got == (1e-3, 7, use_cpu, 3), (
        f"(learning_rate, max_steps, use_cpu, logging_steps) = {got}, expected (0.001, 7, {use_cpu}, 3): every "
        f"override passed to training_arguments must replace the default it names"
        + (". use_cpu=False was overridden: training_arguments forces the CPU whatever its caller asks (the kata's "
           "Trainer run passes use_cpu=False on a GPU machine, and would train on the CPU)"
           if not use_cpu and args["use_cpu"] else "")
    )


def test_training_arguments_leave_the_device_to_the_caller(tmp_path):
    """Without a use_cpu override, nothing forces the CPU: the Trainer picks CUDA, then MPS,
    then the CPU itself (the docstring). The field, not the device: a CPU-only test machine
    trains on the CPU either way."""
    args = probe(P.training_arguments_fields, str(tmp_path))
    assert args["use_cpu"] is False, (
        f"training_arguments(output_dir) gave use_cpu={args['use_cpu']!r} with no use_cpu override: that forces the "
        f"CPU on a machine with a GPU (CUDA or Apple's MPS). The device is the caller's choice (the kata's Trainer "
        f"run passes its precision policy's use_cpu). Look at training_arguments (step7_trainer.py)"
    )


# ---------------------------------------------------------------- a few steps


def test_a_few_trainer_steps_reduce_the_loss(tmp_path):
    V, T = 64, 16
    config, state = tiny_gpt2(V, T, 32)  # the model the Trainer trains, made and scored here
    starts = torch.randint(0, V, (64, 1), generator=torch.Generator().manual_seed(0))
    chunks = (starts + torch.arange(T)) % V  # next token = previous + 1: learnable in a few steps
    before = next_token_loss(config, state, chunks)
    arguments = dict(per_device_train_batch_size=16, max_steps=15, learning_rate=1e-2, warmup_steps=0, use_cpu=True,
                     logging_steps=10, disable_tqdm=True)
    # What these 15 steps need of the TrainingArguments, checked first on a Trainer of its own (a
    # throwaway model), so that a failure names it rather than "the loss did not fall".
    seen = probe(P.optimisation_seen, str(tmp_path), chunks, config, state, 15, **arguments)
    mistakes = optimisation_mistakes(seen, 1e-2, 0)
    assert not mistakes, (
        "training_arguments(..., learning_rate=0.01, warmup_steps=0, max_steps=15) does not give the Trainer the "
        "loop's optimisation: " + "; ".join(mistakes) + ". Look at training_arguments (step7_trainer.py)"
    )
    trained = probe(P.train_with_the_trainer, str(tmp_path), chunks, config, state, **arguments)
    after = next_token_loss(config, trained, chunks)
    # ln 64 = 4.16 at the start; 15 steps at lr 1e-2 reach 2.35 with the reference (a 0.8-nat margin).
    assert after < before - 1.0, (
        f"15 Trainer steps moved the loss from {before:.3f} to {after:.3f} (ln V = {math.log(V):.3f}); it should "
        f"fall by more than 1 nat. Check the labels the collator builds (not all -100) and the TrainingArguments "
        f"(learning_rate, max_steps and the other overrides must reach TrainingArguments)"
    )
