"""Step 7 as a run: the Hugging Face Trainer on the lab's data, launched any way you like.

    python -m kata.trainer_run --preset smoke --solution reference
    torchrun --nproc_per_node 4 -m kata.trainer_run --preset lab --solution reference
    accelerate launch --multi_gpu --num_processes 4 -m kata.trainer_run --preset lab --solution reference

The same file runs unchanged on one process or many: the Trainer reads the launcher's
environment (RANK, WORLD_SIZE, LOCAL_RANK), wraps the model in DDP and gives every
rank its own shard of each batch itself. It takes step 8's flags (`--preset`, and
`--n-layer 4` etc. for any field of `kata.presets.RunConfig`) so the two runs are
comparable; as in step 8, `--batch-size` is the *global* batch, split evenly over the
ranks (`per_device_train_batch_size = batch_size / world_size`). Device and precision
follow the manual loop's policy (`kata.precision`: bf16 on GPUs with native bf16, fp16
on older ones, fp32 on MPS and CPU) as `bf16=`/`fp16=`/`use_cpu=`; on the CPU the ranks
talk over gloo instead of NCCL. Commands for
several machines: docs/scale-out.md.
Rank 0 writes `<out_dir>/trainer_summary.json` (train losses, final validation loss).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from kata.final import SCAFFOLDING, _cached, cache_key, tier_config
from kata.heldout import heldout_loss
from kata.paths import atomic_path, cache_dir
from kata.precision import policy, resolve_device
from kata.presets import RunConfig, parse_args
from kata.pretrain import kata_chunks
from kata.solution import SOLUTIONS, load, solution_name
from kata.tokenizer import load_tokenizer


def world_size() -> int:
    """The number of processes the launcher started (torchrun and accelerate both set it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def train_with_trainer(run: RunConfig, solution: str | None = None) -> dict:
    """Train step 7's GPT2LMHeadModel with step 7's Trainer on `run`'s data; rank 0's summary."""
    from kata.pretrain import prepare_data, solution_steps

    steps = solution_steps(solution)
    step1, step7 = steps.step1, load("step7_trainer", solution)
    n = world_size()
    if run.batch_size % n:
        raise ValueError(f"batch_size {run.batch_size} is the global batch: use a multiple of the {n} processes")
    # The manual loop's device and precision policy (kata/precision.py), as TrainingArguments
    # fields: bf16 on recent GPUs, fp16 (the Trainer brings its own gradient scaler) on older.
    precision = policy(resolve_device(run.device), run.bf16)
    if precision.note and int(os.environ.get("RANK", "0")) == 0:
        print(f"note: {precision.note}", flush=True)

    # TrainingArguments joins the launcher's process group, so it comes first.
    args = step7.training_arguments(
        run.out_dir,
        num_train_epochs=run.epochs,
        per_device_train_batch_size=run.batch_size // n,
        learning_rate=run.lr,
        weight_decay=run.weight_decay,
        max_grad_norm=run.max_grad_norm,
        warmup_steps=run.warmup_steps,
        max_steps=run.max_steps if run.max_steps is not None else -1,
        seed=run.seed,
        logging_steps=run.log_interval,
        **precision.trainer_kwargs(),  # bf16=, fp16=, use_cpu=
        disable_tqdm=True,
        # Every parameter gets a gradient every step; the Trainer's default (True for a
        # PreTrainedModel) makes DDP walk the autograd graph again each step to look for
        # unused ones.
        ddp_find_unused_parameters=False,
    )
    tokenizer = load_tokenizer(run.tokenizer)
    with args.main_process_first(local=True, desc="tokenising"):  # one writer per machine's token cache
        train_chunks, val_chunks = prepare_data(run, tokenizer, steps)
    if run.eval_batches is not None:
        val_chunks = val_chunks[: run.eval_batches * run.batch_size]
    config = step1.GPTConfig(
        vocab_size=len(tokenizer), block_size=run.block_size, n_layer=run.n_layer, n_head=run.n_head,
        n_embd=run.n_embd, dropout=run.dropout, attn_impl=run.attn_impl,
    )
    model = step7.build_hf_model(config, seed=run.seed)
    trainer = step7.build_trainer(model, args, train_chunks, tokenizer, val_chunks)
    t0 = time.time()
    result = trainer.train()
    seconds = time.time() - t0
    val = trainer.evaluate()  # every rank scores its shard; the Trainer gathers the mean
    summary = {
        "world_size": n,
        "precision": precision.name,
        "per_device_batch_size": run.batch_size // n,
        "steps": result.global_step,
        "train_seconds": round(seconds, 2),
        "tokens_per_s": round(result.global_step * run.batch_size * run.block_size / max(seconds, 1e-9), 1),
        "train_loss": [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h],
        "val_loss": val["eval_loss"],
        "val_perplexity": math.exp(min(val["eval_loss"], 700.0)),
    }
    if trainer.is_world_process_zero():
        Path(run.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(run.out_dir) / "trainer_summary.json").write_text(json.dumps(summary, indent=2))
        print(f"trainer: {n} process(es) x {run.batch_size // n} rows, {result.global_step} steps, "
              f"validation loss {val['eval_loss']:.4f}, {summary['tokens_per_s']:,.0f} tokens/s", flush=True)
    return summary



# --------------------------------------------------------------- step 7's graded run

# Step 7's Trainer run trains HF's GPT-2 built from step 7's config (step 1's GPTConfig
# gives the shape) on the kata's own chunks: nothing else of the learner's runs in it.
TRAINER_MODULES = ("step1_embeddings", "step7_trainer")
TRAINER_SCAFFOLDING = (*SCAFFOLDING, "kata/tokenizer.py", "kata/trainer_run.py")


def trainer_loss(solution: str | None = None, tier: str = "smoke", *, use_cache: bool = True, **overrides) -> dict:
    """Step 7's Trainer on the tier's data, model shape, hyper-parameters and seed.

    Returns {"loss", "seconds", "cached"}: the validation loss measured exactly as `grade_final`
    measures the manual loop's (same batches, the kata's own next-token loss), so the
    two can be compared. The Trainer's cosine schedule ends at 0 rather than `min_lr`,
    and it draws its own batch order and initial weights: the margin in step 7's test
    allows for that (benchmarks/CALIBRATION.md). The data are the kata's own chunks
    (`kata.pretrain.kata_chunks`), so only step 7 (and step 1's GPTConfig) is the
    learner's here. Cached like `grade_final`, keyed on those two files, the scaffolding
    and the run settings.
    """
    solution = solution_name(solution)
    run = tier_config(tier, **overrides)
    path = cache_dir() / "final" / f"{solution}-{tier}-trainer-{cache_key(solution, run, TRAINER_MODULES, TRAINER_SCAFFOLDING)}.json"
    cached = _cached(path) if use_cache else None
    if cached is not None:
        return {**cached, "cached": True}
    result = _trainer_run(solution, run)
    if use_cache:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return {**result, "cached": False}


def _trainer_run(solution: str, run: RunConfig) -> dict:
    s7 = load("step7_trainer", solution)
    s1 = load("step1_embeddings", solution)
    tokenizer = load_tokenizer(run.tokenizer)
    train_chunks, val_chunks = kata_chunks(run, tokenizer)
    config = s1.GPTConfig(
        vocab_size=len(tokenizer), block_size=run.block_size, n_layer=run.n_layer, n_head=run.n_head,
        n_embd=run.n_embd, dropout=run.dropout,
    )
    model = s7.build_hf_model(config, seed=run.seed)
    precision = policy(resolve_device(run.device), run.bf16)  # the manual loop's policy, as TrainingArguments
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        args = s7.training_arguments(
            tmp, max_steps=run.max_steps, per_device_train_batch_size=run.batch_size, learning_rate=run.lr,
            weight_decay=run.weight_decay, max_grad_norm=run.max_grad_norm, warmup_steps=run.warmup_steps,
            seed=run.seed, logging_steps=run.log_interval, disable_tqdm=True, **precision.trainer_kwargs(),
        )
        s7.build_trainer(model, args, train_chunks, tokenizer).train()
    loss = heldout_loss(model, val_chunks, run.batch_size, run.eval_batches, precision.autocast_dtype)
    return {"loss": loss, "seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--solution", choices=SOLUTIONS, default=None,
                     help="whose step 7 runs: exercises (default, or $KATA_SOLUTION) or reference")
    known, rest = pre.parse_known_args(argv)
    _, run = parse_args(rest)
    try:
        train_with_trainer(run, known.solution)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():  # the Trainer joined the group; leave it cleanly
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
