"""Step 7 — the same model, trained by the Hugging Face Trainer.

`GPT2LMHeadModel` with our shape is the same architecture as step 3's TinyGPT
(pre-norm blocks, tanh-GELU, tied head), so the two runs are directly comparable.

You write `hf_config`, `CausalLMCollator.torch_call` and `training_arguments`;
`nox -s check -- --step 7` grades them. The dataset, model builder, weight copy and
Trainer wiring are given.
"""
from __future__ import annotations

import copy

import torch
from transformers import (
    DataCollatorForLanguageModeling,
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainingArguments,
)

from .step1_embeddings import GPTConfig


def hf_config(config: GPTConfig, eos_id: int = 50256) -> GPT2Config:
    """The `GPT2Config` of the model TinyGPT(config) is: same shape, same function.

    Contract: a GPT2LMHeadModel built from it, given TinyGPT's weights (`copy_into_hf`),
    computes the same logits, whatever those weights are (not only at initialisation).
    So it has the same vocabulary size, context length (block_size), width, depth,
    number of heads and MLP width (4 * n_embd); the same attention (causal, every
    layer's scores scaled by 1/sqrt(head size)); the same dropout probability in
    all three places TinyGPT drops (embeddings, attention weights, residual outputs);
    the same activation (GPT-2's tanh-approximate GELU, as step 3's MLP uses); the
    same LayerNorm epsilon (nn.LayerNorm's default); tied input and output
    embeddings; and `eos_id` as both its beginning- and end-of-text token.
    Why: only then is the Trainer run a fair comparison with your own loop.
    """
    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=4 * config.n_embd,
        activation_function="gelu_new",
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=1e-5,
        scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False,
        reorder_and_upcast_attn=False,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )


def build_hf_model(config: GPTConfig, seed: int = 0) -> GPT2LMHeadModel:
    """A freshly initialised GPT2LMHeadModel (HF applies the same GPT-2 init as step 1)."""
    torch.manual_seed(seed)
    return GPT2LMHeadModel(hf_config(config))


class ChunkDataset(torch.utils.data.Dataset):
    """(N, T) token chunks as a map-style dataset of {"input_ids": (T,)} rows."""

    def __init__(self, chunks: torch.Tensor) -> None:
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.chunks[i]}


class CausalLMCollator(DataCollatorForLanguageModeling):
    """`DataCollatorForLanguageModeling(mlm=False)` that keeps real end-of-text labels.

    The stock collator sets every label equal to `pad_token_id` to -100. With the
    usual `pad_token = eos_token` that also hides every real <|endoftext|>, and the
    model never learns to end a document.
    """

    def __init__(self, tokenizer, **kwargs) -> None:
        if tokenizer.pad_token is None:
            # The stock collator refuses to run without a pad token; end-of-text is
            # safe to pad with here because labels follow the attention mask.
            tokenizer = copy.deepcopy(tokenizer)
            tokenizer.pad_token = tokenizer.eos_token
        super().__init__(tokenizer=tokenizer, mlm=False, **kwargs)

    def torch_call(self, examples):
        """A list of {"input_ids": ...} rows -> a batch dict of (B, T) int64 tensors.

        The batch is what the stock collator builds (padded `input_ids`, its
        `attention_mask`), except `labels`: a copy of input_ids that is -100 exactly
        where the attention mask says the position is padding, whatever the pad token
        is. Every real token keeps its label, end-of-text included; a batch without an
        attention mask has no padding to hide. Our equal-length chunks have none.
        The examples belong to the caller and are not modified: the list, its dicts
        and their tensors are as they were (no key added, none changed).
        """
        from collections.abc import Mapping

        rows = [dict(e) if isinstance(e, Mapping) else e for e in examples]  # the caller's dicts stay as they are
        batch = super().torch_call(rows)
        labels = batch["input_ids"].clone()
        mask = batch.get("attention_mask")
        if mask is not None:
            labels = labels.masked_fill(mask == 0, -100)
        batch["labels"] = labels
        return batch


def training_arguments(
    output_dir: str,
    num_train_epochs: float = 2,
    per_device_train_batch_size: int = 16,
    learning_rate: float = 3e-4,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    warmup_steps: int = 100,
    max_steps: int = -1,
    seed: int = 0,
    **overrides,
) -> TrainingArguments:
    """The lab's hyper-parameters as `TrainingArguments`: the Trainer must train like your loop.

    The behaviours that must match step 5/8's manual loop (find each setting's name in
    the TrainingArguments documentation):
    - torch's AdamW with the given learning rate and weight decay, the same betas as
      `configure_optimizer`'s default and the same epsilon (torch's default, 1e-8),
      gradients clipped to `max_grad_norm`; the loss is the model's own next-token loss;
    - the same schedule: linear warmup over `warmup_steps`, then cosine decay;
    - one optimizer step per batch of `per_device_train_batch_size` rows (no gradient
      accumulation), every batch full (a short last batch is dropped, as
      `epoch_batches` does), for `num_train_epochs` (or `max_steps` when it is > 0);
    - the given `seed`; evaluation batches of the training batch size.
    And a run without side effects: everything under `output_dir`, no checkpoints
    saved, no report to experiment trackers (wandb, tensorboard), no evaluation during
    training, the loss logged every 50 steps. Any keyword in `overrides` (e.g.
    use_cpu=True, logging_steps=3) replaces the setting it names.
    The device and precision are the caller's (the kata's Trainer run passes its
    precision policy's `use_cpu`, `bf16`, `fp16`): without a `use_cpu` override,
    nothing forces the CPU (`use_cpu` stays False, and the Trainer picks CUDA, then
    Apple's MPS, then the CPU itself).
    Why: the seed lab's "identical" Trainer run used a linear decay and no weight
    decay; the comparison only means something when the optimisation is the same.
    """
    settings = dict(
        output_dir=output_dir,
        num_train_epochs=num_train_epochs,
        max_steps=max_steps,
        per_device_train_batch_size=per_device_train_batch_size,
        per_device_eval_batch_size=per_device_train_batch_size,
        gradient_accumulation_steps=1,
        dataloader_drop_last=True,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        optim="adamw_torch",
        adam_beta1=0.9,
        adam_beta2=0.95,
        adam_epsilon=1e-8,
        lr_scheduler_type="cosine",
        warmup_steps=warmup_steps,
        seed=seed,
        save_strategy="no",
        report_to="none",
        eval_strategy="no",
        logging_strategy="steps",
        logging_steps=50,
        use_cpu=False,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


def build_trainer(
    model: GPT2LMHeadModel,
    args: TrainingArguments,
    train_chunks: torch.Tensor,
    tokenizer,
    val_chunks: torch.Tensor | None = None,
) -> Trainer:
    """A Trainer over fixed-length chunks with the EOS-safe collator."""
    return Trainer(
        model=model,
        args=args,
        train_dataset=ChunkDataset(train_chunks),
        eval_dataset=ChunkDataset(val_chunks) if val_chunks is not None else None,
        data_collator=CausalLMCollator(tokenizer),
    )


def copy_into_hf(model: torch.nn.Module, hf_model: GPT2LMHeadModel) -> GPT2LMHeadModel:
    """Load a TinyGPT's weights into a same-shaped GPT2LMHeadModel.

    HF's GPT-2 uses `Conv1D` layers that store weights as (in, out), the transpose of
    `nn.Linear`; everything else maps one to one.
    """
    sd = model.state_dict()
    out = {"transformer.wte.weight": sd["embed.token.weight"], "transformer.wpe.weight": sd["embed.position.weight"]}
    for i in range(len(model.blocks)):
        p, q = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs, transpose in (
            ("ln_1", "ln_1", False), ("ln_2", "ln_2", False),
            ("attn.qkv", "attn.c_attn", True), ("attn.proj", "attn.c_proj", True),
            ("mlp.fc", "mlp.c_fc", True), ("mlp.proj", "mlp.c_proj", True),
        ):
            w = sd[f"{p}{ours}.weight"]
            out[f"{q}{theirs}.weight"] = w.t() if transpose else w
            if f"{p}{ours}.bias" in sd:
                out[f"{q}{theirs}.bias"] = sd[f"{p}{ours}.bias"]
    out["transformer.ln_f.weight"] = sd["ln_f.weight"]
    out["transformer.ln_f.bias"] = sd["ln_f.bias"]
    missing, unexpected = hf_model.load_state_dict(out, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to wte
    if missing or unexpected:
        raise RuntimeError(f"weight copy mismatch: missing {missing}, unexpected {unexpected}")
    return hf_model
