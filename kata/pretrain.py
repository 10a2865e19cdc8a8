"""Step 8's scaffolding: data, model, resume, final evaluation, plot, samples, verdict.

The training loop itself (`run_training`) is the learner's, in `stepN` modules of the
chosen solution; this module wires the learner's steps 1-6 together around it.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from kata import distributed
from kata.checkpoint import load_checkpoint, restore_rng, restore_scaler, save_checkpoint
from kata.corpus import load_corpus
from kata.heldout import heldout_loss
from kata.precision import policy
from kata.presets import RunConfig, parse_args
from kata.progress import Progress
from kata.runlog import RunLog
from kata.solution import load
from kata.tokenizer import load_tokenizer
from kata.tokens import tokenize_documents

PROMPTS = ("The history of", "In recent years", "Scientists discovered")
STEP_MODULES = ("step1_embeddings", "step3_blocks", "step5_train_loop", "step6_sampler", "step8_pretrain")


def solution_steps(solution: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(**{m.split("_")[0]: load(m, solution) for m in STEP_MODULES})


def prepare_data(run: RunConfig, tokenizer, steps: SimpleNamespace) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenised (cached) corpus -> (N, block_size) train and validation chunks."""
    corpus = load_corpus(run.corpus, run.data_dir)
    out = []
    for split in ("train", "validation"):
        docs = tokenize_documents(corpus[split], tokenizer, name=f"{run.corpus}-{split}")
        stream = steps.step5.join_documents(docs, tokenizer.eos_token_id)
        try:
            out.append(steps.step5.chunk_tokens(stream, run.block_size))
        except ValueError as e:
            raise ValueError(f"{split} split of {run.corpus}: {e}") from None
    return out[0], out[1]


def kata_chunks(run: RunConfig, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """The same (N, block_size) train and validation chunks as `prepare_data` with a correct
    step 5, made by the kata itself: every document followed by end-of-text, one stream,
    whole blocks. For runs that grade something else than step 5 (step 7's Trainer run),
    so an unfinished or wrong step 5 cannot change their data."""
    corpus = load_corpus(run.corpus, run.data_dir)
    out = []
    for split in ("train", "validation"):
        docs = tokenize_documents(corpus[split], tokenizer, name=f"{run.corpus}-{split}")
        eos = np.int64(tokenizer.eos_token_id)
        stream = np.concatenate([np.append(d.astype(np.int64), eos) for d in docs]) if docs else np.zeros(0, np.int64)
        n = len(stream) // run.block_size
        if n == 0:
            raise ValueError(f"{split} split of {run.corpus}: {len(stream)} tokens, fewer than one block of "
                             f"block_size={run.block_size}")
        out.append(torch.from_numpy(stream[: n * run.block_size]).view(n, run.block_size))
    return out[0], out[1]


def total_steps(run: RunConfig, num_chunks: int) -> int:
    if run.max_steps is not None:
        return run.max_steps
    per_epoch = num_chunks // run.batch_size
    if per_epoch == 0:
        raise ValueError(f"{num_chunks} chunks are fewer than one batch of {run.batch_size}")
    return max(1, int(run.epochs * per_epoch))


class Run:
    """Everything `run_training` needs besides the model and optimizer.

    It hides the plumbing a learner should not have to write: batches on the right
    device, a progress bar, the CSV log (losses read back from the GPU only every
    `log_interval` steps), evaluation and checkpoints. Under `torchrun` it is also
    where ranks split each global batch and only rank 0 logs and saves.
    """

    def __init__(self, cfg: RunConfig, model_config: dict, device: torch.device, total: int, log: RunLog,
                 train_chunks: torch.Tensor, val_chunks: torch.Tensor, steps: SimpleNamespace,
                 quiet: bool = False) -> None:
        self.cfg = cfg
        self.model_config = model_config
        self.device = device
        self.total_steps = total
        self.log = log
        self.train_chunks = train_chunks
        self.val_chunks = val_chunks
        self._steps = steps
        # The device's precision policy (kata/precision.py): bf16 autocast on recent
        # GPUs, fp16 autocast with a gradient scaler on older ones, fp32 elsewhere.
        self.precision = policy(device, cfg.bf16)
        self.autocast_dtype = self.precision.autocast_dtype
        self.scaler = self.precision.make_scaler()  # a torch.amp.GradScaler for fp16, else None
        self.checkpoint_path = Path(cfg.out_dir) / "checkpoint.pt"
        self.stop_after: int | None = None  # tests interrupt a run here to try resuming
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        if cfg.batch_size % self.world_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} is the global batch and must split evenly over "
                f"{self.world_size} ranks: use a multiple of {self.world_size}"
            )
        self._loss_sum = torch.zeros((), device=device)
        self._n = 0
        self._t_last = time.time()
        self._bar: Progress | None = None
        self.quiet = quiet  # no progress output at all (graded runs, tests)

    @property
    def end_step(self) -> int:
        return self.total_steps if self.stop_after is None else min(self.total_steps, self.stop_after)

    def progress(self, start_step: int) -> Progress:
        """The steps `start_step .. end_step - 1`, showing step, loss, tokens/s on rank 0:
        a tqdm bar on a terminal, a plain line every 30 s (and at the first and last
        step) when stdout is a file or a pipe, where tqdm would show nothing."""
        mode = "off" if self.quiet or self.rank != 0 else None
        self._bar = Progress(start_step, self.end_step, self.total_steps, "train", mode=mode,
                             tokens_per_step=self.cfg.batch_size * self.cfg.block_size, file=sys.stdout)
        self._t_last = time.time()
        return self._bar

    def batches(self, start_step: int):
        """This rank's (batch_size / world_size, block_size) training batches on the device.

        `batch_size` is the *global* batch: every rank draws the same global batch
        from the same seeded order and keeps its own contiguous slice of rows, so the
        data, the step count and the LR schedule do not depend on the number of ranks
        (and a checkpoint resumes under any world size).
        """
        per_rank = self.cfg.batch_size // self.world_size
        rows = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        for batch in self._steps.step5.iterate_batches(self.train_chunks, self.cfg.batch_size, self.cfg.seed, start_step):
            yield batch[rows].to(self.device, non_blocking=True)

    def log_train(self, step: int, loss: torch.Tensor, lr: float) -> None:
        """Record the loss after `step` updates; every `log_interval` steps, write it out."""
        self._loss_sum += loss.detach().float()
        self._n += 1
        if step % self.cfg.log_interval and step != self.end_step:
            return
        # Each rank's loss is the mean over its own rows; their mean is the global
        # batch's loss (every row has the same number of tokens).
        mean = distributed.all_reduce_mean(self._loss_sum / self._n).item()  # the loop's only host-GPU sync
        tokens_per_step = self.cfg.batch_size * self.cfg.block_size
        tps = self._n * tokens_per_step / max(time.time() - self._t_last, 1e-9)
        if self.rank == 0:
            self.log.log(step, step * tokens_per_step, "train", mean, lr, tps)
            if self._bar is not None:
                self._bar.set(loss=mean, lr=lr, tok_s=tps)
        self._loss_sum.zero_()
        self._n, self._t_last = 0, time.time()

    def evaluate(self, model, step: int) -> float:
        """Validation loss (on `eval_batches` batches), logged at `step`."""
        val = self.validation_loss(model)
        if self.rank == 0:
            self.log.log(step, step * self.cfg.batch_size * self.cfg.block_size, "validation", val["loss"])
        self._t_last = time.time()  # evaluation time is not training throughput
        return val["loss"]

    def validation_loss(self, model) -> dict[str, float]:
        """{"loss", "perplexity"} on the first `eval_batches` validation batches, the same on every rank.

        Under torchrun each rank scores a contiguous share of those chunks with the
        plain model (no DDP forward) and the (loss x chunks) sums are all-reduced, so
        N ranks give the 1-rank number up to float rounding, N times faster.
        """
        evaluate = self._steps.step5.evaluate
        if self.world_size == 1:
            return evaluate(model, self.val_chunks, self.cfg.batch_size, self.cfg.eval_batches, self.autocast_dtype)
        n = len(self.val_chunks)
        if self.cfg.eval_batches is not None:
            n = min(n, self.cfg.eval_batches * self.cfg.batch_size)
        mine = self.val_chunks[:n].tensor_split(self.world_size)[self.rank]
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # (sum of chunk losses, chunks)
        if len(mine):
            val = evaluate(distributed.unwrap(model), mine, self.cfg.batch_size // self.world_size, None, self.autocast_dtype)
            sums += torch.tensor([val["loss"] * len(mine), len(mine)], dtype=torch.float64, device=self.device)
        total, count = distributed.all_reduce_sum(sums).tolist()
        return {"loss": total / count, "perplexity": math.exp(min(total / count, 700.0))}

    def save(self, model, optimizer, step: int) -> None:
        """Checkpoint *after* `step` updates (a resumed run continues with step `step`)."""
        if self.rank == 0:
            save_checkpoint(self.checkpoint_path, model, optimizer, step, self.model_config, asdict(self.cfg),
                            scaler=self.scaler)


def pretrain(run: RunConfig, solution: str | None = None, quiet: bool = False) -> dict:
    """Train, evaluate, plot and sample; returns the summary also written to summary.json."""
    steps = solution_steps(solution)
    torch.manual_seed(run.seed)
    info = distributed.setup(run.device)  # under torchrun: join the group, this rank's GPU
    device = info.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    say = (lambda *a: None) if quiet or not info.is_main else (lambda *a: print(*a, flush=True))

    tokenizer = load_tokenizer(run.tokenizer)
    t0 = time.time()
    with distributed.main_first():  # rank 0 fills the token cache, the others read it
        train_chunks, val_chunks = prepare_data(run, tokenizer, steps)
    say(f"data: {run.corpus}: {train_chunks.numel():,} train / {val_chunks.numel():,} validation tokens "
        f"in blocks of {run.block_size} ({time.time() - t0:.1f}s)")

    config = steps.step1.GPTConfig(
        vocab_size=len(tokenizer), block_size=run.block_size, n_layer=run.n_layer, n_head=run.n_head,
        n_embd=run.n_embd, dropout=run.dropout, attn_impl=run.attn_impl,
    )
    model = steps.step3.TinyGPT(config).to(device)
    optimizer = steps.step5.configure_optimizer(model, run.lr, run.weight_decay)
    total = total_steps(run, len(train_chunks))

    start_step = 0
    state = None
    ckpt_path = Path(run.out_dir) / "checkpoint.pt"
    if run.resume:
        # Rank 0 reads the file and sends it to the others: on several machines only
        # rank 0's machine has it (rank 0 wrote it). Any world size may have written it.
        state = distributed.broadcast_object(load_checkpoint(ckpt_path, asdict(config)) if info.is_main else None)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng(state)
        start_step = state["step"]
        say(f"resumed from {ckpt_path} at step {start_step}")
    log = RunLog(run.out_dir, resume_step=start_step if run.resume else None) if info.is_main else None
    if info.rank > 0:  # each rank its own dropout masks, as rows of one batch have theirs
        torch.manual_seed(run.seed + 1_000_003 * info.rank + start_step)
    n_params = sum(p.numel() for p in model.parameters())
    train_model = distributed.wrap_ddp(model, info)  # the model itself on a single process
    train_model = torch.compile(train_model) if run.compile else train_model
    ctx = Run(run, asdict(config), device, total, log, train_chunks, val_chunks, steps, quiet=quiet)
    if ctx.precision.note:
        say(f"note: {ctx.precision.note}")
    # The scaler comes with the Run (the device's precision): restored only now.
    if state is not None and restore_scaler(ctx.scaler, state):
        say(f"restored the fp16 loss scale ({ctx.scaler.get_scale():g}) from the checkpoint")
    say(f"model: {n_params / 1e6:.2f}M parameters ({run.n_layer} layers, {run.n_head} heads, {run.n_embd} dims) "
        f"on {device} in {ctx.precision.describe()}; {total} steps")
    if info.world_size > 1:
        say(f"data parallel: {info.world_size} ranks x {run.batch_size // info.world_size} rows "
            f"= global batch {run.batch_size}; logs, plots and checkpoints from rank 0")
    if start_step == 0:
        init = ctx.validation_loss(model)
        if log is not None:
            log.log(0, 0, "validation", init["loss"])
        say(f"initial validation loss {init['loss']:.3f} (ln V = {math.log(config.vocab_size):.3f})")
    t1 = time.time()
    steps.step8.run_training(train_model, optimizer, ctx, start_step)
    train_time = time.time() - t1

    final = ctx.validation_loss(model)
    # The verdict uses the kata's own next-token loss on the same batches, not the
    # learner's step 4: an unshifted loss would otherwise grade itself near 0.
    graded = heldout_loss(model, val_chunks, run.batch_size, run.eval_batches, ctx.autocast_dtype)
    last_step = ctx.end_step
    passed = None if run.threshold is None else graded < run.threshold
    if not info.is_main:  # rank 0 alone writes the log, plot, samples and summary
        return {"val_loss": final["loss"], "graded_val_loss": graded, "steps": last_step, "passed": passed}
    log.log(last_step, last_step * run.batch_size * run.block_size, "validation", final["loss"])
    png = log.plot(threshold=run.threshold)
    samples = {
        p: steps.step6.complete(model, tokenizer, p, run.sample_tokens, seed=run.seed + i)
        for i, p in enumerate(PROMPTS[: run.samples])
    }
    summary = {
        "val_loss": final["loss"],
        "val_perplexity": final["perplexity"],
        "steps": last_step,
        "train_seconds": round(train_time, 2),
        "tokens_per_s": round((last_step - start_step) * run.batch_size * run.block_size / max(train_time, 1e-9), 1),
        "parameters": n_params,
        "device": str(device),
        "precision": ctx.precision.name,
        "threshold": run.threshold,
        "graded_val_loss": graded,
        "passed": passed,
        "samples": samples,
        "config": asdict(run),
    }
    (Path(run.out_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    (Path(run.out_dir) / "samples.txt").write_text("".join(f"=== {p}\n{s}\n\n" for p, s in samples.items()))
    say(f"validation loss {final['loss']:.4f}, perplexity {final['perplexity']:.1f}")
    for p, s in samples.items():
        say(f"--- {p!r}: {s!r}")
    say(f"wrote {log.csv_path}, {png}, {ckpt_path if ckpt_path.exists() else '(no checkpoint)'}")
    if run.threshold is not None:
        verdict = "PASS" if summary["passed"] else "FAIL"
        say(f"verdict: {verdict}: validation loss {graded:.4f} "
            f"{'<' if summary['passed'] else '>='} threshold {run.threshold:g}")
    return summary


def main(argv: list[str] | None = None, solution: str | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    name, run = parse_args(argv)
    try:
        summary = pretrain(run, solution)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        distributed.teardown(wait_for_all=False)  # the other ranks may never arrive
        return 2
    distributed.teardown()  # under torchrun: wait until every rank is done, then leave
    return 0 if summary["passed"] in (None, True) else 1
