"""Step 7's probes: the learner-facing half of tests/test_step7_*.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with answers they compute themselves. The learner's objects (a GPT2Config, a collator,
TrainingArguments, a Trainer) stay here; what the tests read of them comes back as
numbers, strings, booleans and tensors. The diagnoses that need those objects (which
part of the weights does not fit, how the attention is scaled, what a Trainer's
optimizer and schedule do) are worked out here too, as text or observations the tests
put into their messages.
"""
from __future__ import annotations

import copy
import enum
import functools
import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from _step7_checks import example_changes, examples_message
from _support import not_implemented_guard as call, student

S7 = "step7_trainer"


# ------------------------------------------------------------------- plain data


def plain(x: object) -> object:
    """`x` as data the tests can read: tensors, bools, numbers, strings and None as they are,
    enums by their value, containers item by item (a mapping such as a BatchEncoding as a
    dict); anything else by its repr, so a learner's odd object is described, not sent."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, enum.Enum):
        return plain(x.value)
    if x is None or type(x) in (bool, int, float, str):
        return x
    for kind in (bool, int, float, str):
        if isinstance(x, kind):
            return kind(x)
    if isinstance(x, (list, tuple)):
        return type(x)(plain(i) for i in x) if type(x) in (list, tuple) else [plain(i) for i in x]
    if isinstance(x, Mapping):
        return {k if type(k) is str else repr(k): plain(v) for k, v in x.items()}
    return repr(x)


def fields(obj: object, names: tuple[str, ...]) -> dict:
    """`{name: getattr(obj, name, None)}` as plain data."""
    return {k: plain(getattr(obj, k, None)) for k in names}


@functools.lru_cache(maxsize=1)
def _kata_tokenizer():
    from kata.tokenizer import load_tokenizer

    return load_tokenizer()  # the kata's offline GPT-2 tokenizer (no pad token set)


def tokenizer(pad_is_eos: bool = False, model_input_names: list[str] | None = None):
    """A fresh copy of the kata's tokenizer, with pad_token = eos_token or other input names if asked."""
    tok = copy.deepcopy(_kata_tokenizer())
    if pad_is_eos:
        tok.pad_token = tok.eos_token
    if model_input_names is not None:
        tok.model_input_names = list(model_input_names)
    return tok


# -------------------------------------------------------------------- hf_config

HF_CONFIG_FIELDS = (
    "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "resid_pdrop", "embd_pdrop", "attn_pdrop",
    "layer_norm_epsilon", "tie_word_embeddings", "eos_token_id", "bos_token_id", "activation_function",
)


def hf_config_fields(cfg: dict, **kwargs) -> dict:
    """The fields the tests read of the learner's `hf_config(GPTConfig(**cfg), **kwargs)`."""
    s7 = student(S7)
    return fields(call(s7.hf_config, s7.GPTConfig(**cfg), **kwargs), HF_CONFIG_FIELDS)


class Weights:
    """Just enough of a TinyGPT for `copy_into_hf`: a state dict and the number of blocks."""

    def __init__(self, sd: dict, n_layer: int) -> None:
        self._sd, self.blocks = sd, range(n_layer)

    def state_dict(self) -> dict:
        return self._sd


def tinygpt_weights_in_gpt2(cfg: dict, sd: dict, ids: torch.Tensor) -> dict:
    """TinyGPT's weights `sd` copied (`copy_into_hf`) into a GPT2LMHeadModel built from the
    learner's `hf_config`: its eval-mode logits on `ids` and, for the message, the blocks
    whose attention is not TinyGPT's ({"logits", "attention"}); or, where the weights do not
    fit, the copy's error and the parts that do not fit ({"mismatch", "where"})."""
    from transformers import GPT2LMHeadModel

    s7 = student(S7)
    hf_cfg = call(s7.hf_config, s7.GPTConfig(**cfg))
    hf = GPT2LMHeadModel(hf_cfg)
    try:
        hf = s7.copy_into_hf(Weights(sd, cfg["n_layer"]), hf).eval()
    except RuntimeError as e:
        return {"mismatch": str(e), "where": shape_mismatches(sd, cfg["n_layer"], hf)}
    with torch.no_grad():
        logits = hf(ids).logits
    return {"logits": logits, "attention": attention_mistakes(hf, ids, cfg["n_head"])}


# copy_into_hf's table: GPT2LMHeadModel's name -> (TinyGPT's name, stored transposed),
# and what each part is, for a message about a size that does not fit.
_BLOCK_PARTS = {
    "ln_1": ("ln_1", False, "the blocks' first LayerNorm (its size is the width)"),
    "ln_2": ("ln_2", False, "the blocks' second LayerNorm (its size is the width)"),
    "attn.c_attn": ("attn.qkv", True, "the attention's query/key/value projection (width x 3 widths)"),
    "attn.c_proj": ("attn.proj", True, "the attention's output projection (width x width)"),
    "mlp.c_fc": ("mlp.fc", True, "the MLP's hidden layer (width x the MLP's hidden width)"),
    "mlp.c_proj": ("mlp.proj", True, "the MLP's output layer (the MLP's hidden width x width)"),
}
_TOP_PARTS = {
    "transformer.wte.weight": ("embed.token.weight", "the token embedding (vocabulary x width)"),
    "transformer.wpe.weight": ("embed.position.weight", "the position table (context length x width)"),
    "transformer.ln_f.weight": ("ln_f.weight", "the final LayerNorm (its size is the width)"),
    "transformer.ln_f.bias": ("ln_f.bias", "the final LayerNorm (its size is the width)"),
}


def _expected_shapes(sd: dict, n_layer: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """GPT2LMHeadModel's parameter name -> (the shape TinyGPT's weights give it, what it is)."""
    out = {theirs: (tuple(sd[ours].shape), what) for theirs, (ours, what) in _TOP_PARTS.items()}
    for i in range(n_layer):
        for theirs, (ours, transpose, what) in _BLOCK_PARTS.items():
            for leaf in ("weight", "bias"):
                key = f"blocks.{i}.{ours}.{leaf}"
                if key in sd:
                    shape = tuple(sd[key].shape)
                    out[f"transformer.h.{i}.{theirs}.{leaf}"] = (
                        shape[::-1] if transpose and leaf == "weight" else shape, what)
    return out


def shape_mismatches(sd: dict, n_layer: int, hf_model: torch.nn.Module) -> list[str]:
    """Where TinyGPT's weights do not fit `hf_model`: one line per part (the first parameter
    of it that does not fit), what the part is, its shape there and TinyGPT's. A diagnosis
    only: it never raises, and finds nothing where it cannot tell."""
    try:
        have = {k: tuple(v.shape) for k, v in hf_model.state_dict().items()}
        lines: list[str] = []
        blocks = len(hf_model.transformer.h)
        if blocks != n_layer:
            lines.append(f"GPT2LMHeadModel has {blocks} block(s), TinyGPT {n_layer} (the depth)")
        seen: set[str] = set()
        for name, (want, what) in _expected_shapes(sd, n_layer).items():
            got = have.get(name)
            if got is None or got == want or what in seen:
                continue
            seen.add(what)
            lines.append(f"{what}: {name} is {got} in GPT2LMHeadModel, {want} in TinyGPT")
        return lines
    except Exception:  # noqa: BLE001 - a diagnosis only
        return []


def _attention_inputs_and_outputs(hf_model: torch.nn.Module, ids: torch.Tensor) -> list[tuple]:
    """(attention module, its input, its output) for every block, from one eval forward pass."""
    seen: list[tuple] = []

    def hook(module, args, kwargs, output):
        x = args[0] if args else kwargs.get("hidden_states")
        seen.append((module, x.detach().clone(), (output[0] if isinstance(output, tuple) else output).detach().clone()))

    handles = [block.attn.register_forward_hook(hook, with_kwargs=True) for block in hf_model.transformer.h]
    try:
        with torch.no_grad():
            hf_model(ids)
    finally:
        for h in handles:
            h.remove()
    return seen


def _causal_attention(module: torch.nn.Module, x: torch.Tensor, n_head: int, scale: float) -> torch.Tensor:
    """Causal multi-head self-attention with the module's own weights (HF's Conv1D: x @ W + b),
    its scores multiplied by `scale`: what TinyGPT computes when `scale` is 1/sqrt(head size)."""
    B, T, C = x.shape
    qkv = x @ module.c_attn.weight + module.c_attn.bias
    q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in qkv.split(C, dim=-1))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    y = y.transpose(1, 2).reshape(B, T, C)
    return y @ module.c_proj.weight + module.c_proj.bias


def attention_mistakes(hf_model: torch.nn.Module, ids: torch.Tensor, n_head: int) -> list[str]:
    """The blocks whose attention is not TinyGPT's causal softmax(q k^T / sqrt(D)) v on the
    model's own weights, each with what its scores were scaled by where a usual scale fits.
    fp32: the same computation matches to ~1e-6; 1e-4 separates it from any other scale
    on the test's weights (std 0.2: the scores are O(1), a 2x scale moves the output by O(0.1)).
    A diagnosis only: it never raises, and finds nothing where it cannot tell."""
    try:
        lines = []
        for i, (module, x, got) in enumerate(_attention_inputs_and_outputs(hf_model, ids)):
            D = x.shape[-1] // n_head

            def close(scale: float) -> bool:
                return torch.allclose(got, _causal_attention(module, x, n_head, scale), atol=1e-4, rtol=1e-4)

            if close(D ** -0.5):
                continue
            usual = {
                f"by 1/({i + 1} * sqrt(D)): also divided by the layer's number, {i + 1}": D ** -0.5 / (i + 1),
                "by 1: not scaled at all": 1.0,
                "by 1/D instead of 1/sqrt(D)": 1.0 / D,
            }
            how = next((what for what, s in usual.items() if s != D ** -0.5 and close(s)), None)
            lines.append(f"block {i}'s attention scores are scaled {how}" if how else
                         f"block {i}'s attention is not causal softmax(q k^T / sqrt(D)) v on its own weights "
                         f"(D = head size = {D})")
        return lines
    except Exception:  # noqa: BLE001 - a diagnosis only
        return []


# --------------------------------------------------------------------- collator


def examples_now(originals: list[dict], examples: list) -> dict:
    """What the caller's examples hold after a call, as data: whether the list still holds
    exactly the original dicts ("same_dicts", "count"), and each original dict's keys and
    values now ("examples"), to compare with what they held before (`example_changes`)."""
    return {
        "same_dicts": len(examples) == len(originals) and all(ex is old for ex, old in zip(examples, originals)),
        "count": len(examples),
        "examples": [{k if type(k) is str else repr(k): plain(v) for k, v in ex.items()} for ex in originals],
    }


def collate_examples(collator, examples: list[dict]):
    """`collator.torch_call(examples)`; when it raises after changing the caller's examples,
    the failure names that change (the error itself is a symptom of it: e.g. labels put into
    the examples make the stock collator's padding fail with "excessive nesting")."""
    before = [{k: (v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)) for k, v in ex.items()}
              for ex in examples]
    originals = list(examples)
    try:
        return call(collator.torch_call, examples)
    except Exception as e:  # noqa: BLE001 - reported as a diagnosis when the examples changed
        changes = example_changes(before, examples_now(originals, examples))
        if not changes:
            raise
        error = e
    import pytest

    pytest.fail(examples_message(changes, type(error).__name__, str(error)), pytrace=False)


def collate(rows: list[list[int]], pad_is_eos: bool = False, model_input_names: list[str] | None = None,
            **collator_kwargs) -> dict:
    """The batch the learner's `CausalLMCollator(tokenizer, **collator_kwargs)` makes of `rows`
    (each a {"input_ids": tensor} example), its values as data."""
    collator = call(student(S7).CausalLMCollator, tokenizer(pad_is_eos, model_input_names), **collator_kwargs)
    return plain(dict(collate_examples(collator, [{"input_ids": torch.tensor(r)} for r in rows])))


def collate_and_watch_examples(rows: list[list[int]], pad_is_eos: bool) -> dict:
    """Collate `rows` and look at the examples afterwards: {"batch", "examples_now"}."""
    collator = call(student(S7).CausalLMCollator, tokenizer(pad_is_eos))
    examples = [{"input_ids": torch.tensor(r)} for r in rows]
    originals = list(examples)
    batch = collate_examples(collator, examples)
    return {"batch": plain(dict(batch)), "examples_now": examples_now(originals, examples)}


def write_into_labels(rows: list[list[int]]) -> dict:
    """Collate `rows`, then write -100 into the labels' first column (what masking, or any later
    edit of the labels, does): input_ids before and after that write."""
    batch = collate_examples(call(student(S7).CausalLMCollator, tokenizer()),
                             [{"input_ids": torch.tensor(r)} for r in rows])
    before = batch["input_ids"].clone()
    batch["labels"][:, 0] = -100
    return {"input_ids": before, "input_ids_after": batch["input_ids"].clone()}


def collator_on_a_fresh_tokenizer() -> dict:
    """The pad token of a freshly loaded tokenizer before and after `CausalLMCollator(tokenizer)`."""
    from kata.tokenizer import load_tokenizer

    tok = load_tokenizer()
    before = tok.pad_token
    if before is None:
        call(student(S7).CausalLMCollator, tok)
    return {"pad_token_before": plain(before), "pad_token_after": plain(tok.pad_token)}


# ------------------------------------------------------------ training_arguments

TRAINING_ARGUMENT_FIELDS = (
    "learning_rate", "weight_decay", "max_grad_norm", "per_device_train_batch_size", "per_device_eval_batch_size",
    "num_train_epochs", "adam_beta1", "adam_beta2", "warmup_steps", "gradient_accumulation_steps", "seed",
    "dataloader_drop_last", "report_to", "save_strategy", "eval_strategy", "logging_strategy", "logging_steps",
    "max_steps", "use_cpu",
)


def training_arguments_fields(output_dir: str, *, trackers_installed: list[str] | None = None, **kwargs) -> dict:
    """The fields the tests read of the learner's `training_arguments(output_dir, **kwargs)`
    (output_dir as a string); with `trackers_installed`, as if those experiment trackers
    were installed (as on Colab: wandb, tensorboard)."""
    import transformers.integrations as integrations

    s7 = student(S7)
    saved = integrations.get_available_reporting_integrations
    if trackers_installed is not None:
        integrations.get_available_reporting_integrations = lambda: list(trackers_installed)
    try:
        args = call(s7.training_arguments, output_dir, **kwargs)
    finally:
        integrations.get_available_reporting_integrations = saved
    got = {k: plain(getattr(args, k)) for k in TRAINING_ARGUMENT_FIELDS}
    got["output_dir"] = str(args.output_dir)
    return got


def _gpt2(config: dict, state: dict):
    """A GPT2LMHeadModel of GPT2Config(**config) with the weights `state` (the test's model)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(**config))
    model.load_state_dict(state)
    return model


def _tiny_trainer(output_dir: str, chunks: torch.Tensor, model=None, **overrides):
    """The learner's Trainer (`build_trainer`, `training_arguments(..., use_cpu=True)`) over
    `chunks`, of `model` or else of `build_hf_model` (step 7's config of a tiny TinyGPT)."""
    s7 = student(S7)
    if model is None:
        V, T = 64, 8
        cfg = s7.GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
        model = call(s7.build_hf_model, cfg, 0)
    args = call(s7.training_arguments, output_dir, use_cpu=True, disable_tqdm=True, **overrides)
    return s7.build_trainer(model, args, chunks, tokenizer())


def trainer_optimizer(output_dir: str, chunks: torch.Tensor) -> dict:
    """What the Trainer's optimizer is: its class, whether it is torch's AdamW (unwrapped where
    accelerate wraps it) and its param groups' (betas, eps, lr)."""
    opt = _tiny_trainer(output_dir, chunks).create_optimizer()
    inner = getattr(opt, "optimizer", opt)  # accelerate may wrap it
    return {
        "type": type(inner).__name__,
        "adamw": isinstance(inner, torch.optim.AdamW),
        "groups": [plain((tuple(g.get("betas", ())), g.get("eps"), g.get("lr"))) for g in inner.param_groups],
    }


def _step_the_schedule(trainer, n: int) -> list[float]:
    """The learning rate of the Trainer's first param group at steps 0..n-1 of its schedule."""
    opt, sched = trainer.optimizer, trainer.lr_scheduler
    lrs = []
    with warnings.catch_warnings():  # stepping the schedule alone is the point here
        warnings.filterwarnings("ignore", message="Detected call of")
        for _ in range(n):
            lrs.append(float(opt.param_groups[0]["lr"]))
            sched.step()
    return lrs


def trainer_schedule(output_dir: str, chunks: torch.Tensor, warmup_steps: int, max_steps: int) -> list[float]:
    """The Trainer's learning rate at steps 0..max_steps (its optimizer and scheduler made for max_steps)."""
    trainer = _tiny_trainer(output_dir, chunks, warmup_steps=warmup_steps, max_steps=max_steps)
    trainer.create_optimizer_and_scheduler(num_training_steps=max_steps)
    return _step_the_schedule(trainer, max_steps + 1)


def trainer_loss_on(output_dir: str, chunks: torch.Tensor, config: dict, state: dict) -> dict:
    """The learner's Trainer of the test's model (GPT2Config(**config), weights `state`) over
    `chunks`: the batch its collator makes of the first four chunks, and `compute_loss` on
    it in eval mode."""
    model = _gpt2(config, state)
    trainer = _tiny_trainer(output_dir, chunks, model)
    batch = trainer.data_collator([{"input_ids": c} for c in chunks[:4]])
    model = trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
    return {"input_ids": plain(batch.get("input_ids")), "labels": plain(batch.get("labels")),
            "loss": float(loss.item())}


def optimisation_seen(output_dir: str, chunks: torch.Tensor, config: dict, state: dict, steps: int,
                      **arguments) -> dict | None:
    """What a Trainer (of a throwaway copy of the test's model) built from the learner's
    `training_arguments(output_dir, **arguments)` does: its optimizer's class, whether it is
    torch's AdamW, and its learning rate at steps 0 and 1 ({"optimizer", "adamw", "lrs"}).
    None where that cannot be seen (a diagnosis only)."""
    s7 = student(S7)
    args = call(s7.training_arguments, output_dir, **arguments)
    trainer = s7.build_trainer(_gpt2(config, state), args, chunks, tokenizer())
    try:
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate may wrap it
        return {"optimizer": type(opt).__name__, "adamw": isinstance(opt, torch.optim.AdamW),
                "lrs": _step_the_schedule(trainer, 2)}
    except Exception:  # noqa: BLE001 - a diagnosis only
        return None


def train_with_the_trainer(output_dir: str, chunks: torch.Tensor, config: dict, state: dict, **arguments) -> dict:
    """The test's model (GPT2Config(**config), weights `state`) trained by the learner's Trainer
    (`training_arguments(output_dir, **arguments)`) on `chunks`: its weights afterwards."""
    s7 = student(S7)
    model = _gpt2(config, state)
    args = call(s7.training_arguments, output_dir, **arguments)
    s7.build_trainer(model, args, chunks, tokenizer()).train()
    return {k: v for k, v in model.state_dict().items()}


# ------------------------------------------------------------------ the Trainer run


def trainer_run_loss(tier: str) -> dict:
    """Step 7's Trainer run on the tier (`kata.trainer_run.trainer_loss`, which loads the
    learner's step 7): {"loss", "seconds", "cached"}."""
    from kata.trainer_run import trainer_loss

    return plain(dict(call(trainer_loss, tier=tier)))
