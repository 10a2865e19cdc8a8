"""Step 8 — the full pretraining run. `python -m reference.step8_pretrain --preset smoke`.

The learner writes the loop (`run_training`); data, model, resume, plots and samples
are scaffolding in `kata.pretrain`, shared with the exercises.
"""
from __future__ import annotations

import sys
import time

import torch
from tqdm.auto import tqdm

from kata.pretrain import Run, main as _main
from .step5_train_loop import evaluate, iterate_batches, lr_at, set_lr, train_step


def run_training(model, optimizer, train_chunks: torch.Tensor, val_chunks: torch.Tensor, run: Run, start_step: int = 0) -> None:
    """Train from `start_step` to `run.total_steps`: schedule, step, log, evaluate, checkpoint.

    Losses stay on the device and are read back (`.item()`, which waits for the GPU)
    only every `log_interval` steps, so the GPU never idles on the Python loop.
    """
    cfg = run.cfg
    batches = iterate_batches(train_chunks, cfg.batch_size, cfg.seed, start_step)
    end = run.total_steps if run.stop_after is None else min(run.total_steps, run.stop_after)
    tokens_per_step = cfg.batch_size * cfg.block_size
    bar = tqdm(range(start_step, end), initial=start_step, total=run.total_steps, desc="train",
               unit="step", dynamic_ncols=True, disable=None, file=sys.stdout)
    loss_sum = torch.zeros((), device=run.device)
    n, t_last = 0, time.time()
    for step in bar:
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, run.total_steps, cfg.min_lr)
        set_lr(optimizer, lr)
        batch = next(batches).to(run.device, non_blocking=True)
        loss, _ = train_step(model, batch, optimizer, cfg.max_grad_norm, run.autocast_dtype)
        loss_sum += loss
        n += 1
        done = step + 1
        if done % cfg.log_interval == 0 or done == end:
            mean = (loss_sum / n).item()  # the only host sync in the loop
            tps = n * tokens_per_step / max(time.time() - t_last, 1e-9)
            run.log.log(done, done * tokens_per_step, "train", mean, lr, tps)
            bar.set_postfix(loss=f"{mean:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
            loss_sum.zero_()
            n, t_last = 0, time.time()
        if done % cfg.eval_interval == 0 and done < run.total_steps:
            val = evaluate(model, val_chunks, cfg.batch_size, cfg.eval_batches, run.autocast_dtype)
            run.log.log(done, done * tokens_per_step, "validation", val["loss"])
            t_last = time.time()  # evaluation time is not training throughput
        if done % cfg.checkpoint_interval == 0 or done == end:
            run.save(model, optimizer, done)


def main(argv: list[str] | None = None) -> int:
    return _main(argv, solution="reference")


if __name__ == "__main__":
    raise SystemExit(main())
