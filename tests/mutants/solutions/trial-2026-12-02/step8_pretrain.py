"""Step 8 — the full pretraining run. `python -m exercises.step8_pretrain --preset smoke`.

You write the loop (`run_training`); data, model, resume, plots and samples are
scaffolding in `kata.pretrain`, shared with the reference. `nox -s check -- --step 8`
grades the loop on a tiny run and then by the loss of the smoke-tier run.
"""
from __future__ import annotations

from kata.pretrain import Run, main as _main
from .step5_train_loop import lr_at, set_lr, train_step  # noqa: F401  (your step 5)


def run_training(model, optimizer, run: Run, start_step: int = 0) -> None:
    """Train from `start_step` (updates already done) up to `run.end_step` updates. Returns None.

    `run` holds everything besides the model and the optimizer: `run.cfg` (lr, min_lr,
    warmup_steps, max_grad_norm, eval_interval, checkpoint_interval, ...),
    `run.total_steps` (the schedule's length), `run.end_step`, `run.autocast_dtype` and
    `run.scaler` (the device's precision),
    `run.batches(start_step)` (an endless iterator of (B, T) batches on the device),
    `run.progress(start_step)` (the step numbers still to do, with a progress bar),
    `run.log_train(done, loss, lr)`, `run.evaluate(model, done)` and
    `run.save(model, optimizer, done)`; `done` is the number of updates done so far.
    Each update, in this order:
    - the optimizer, every one of its param groups, uses the learning rate of your
      step 5 schedule for this update (the schedule spans `run.total_steps`, also in
      a run that stops earlier at `run.end_step`; it peaks at cfg.lr, ends at cfg.min_lr);
    - one step 5 `train_step` on the next batch, with the configured clipping and
      the device's precision (`run.autocast_dtype`, `run.scaler`): that is the
      update, the optimizer steps nowhere else;
    - the bookkeeping, after the update: hand train_step's loss and the lr to
      `run.log_train` *every* update (it averages and writes every cfg.log_interval
      updates itself); evaluate when `done` is a multiple of cfg.eval_interval and
      below run.total_steps (the evaluation at the schedule's end is scaffolding; a
      run that stops earlier, at run.end_step, follows the same rule there); save
      one checkpoint when `done` is a multiple of cfg.checkpoint_interval or is
      run.end_step (after the last update).
    Why: a checkpoint after `done` updates is exactly what `--resume` continues from,
    so an interrupted run and an uninterrupted one end with the same weights.
    """
    cfg = run.cfg
    batches = run.batches(start_step)
    for step in run.progress(start_step):
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, run.total_steps, cfg.min_lr)
        set_lr(optimizer, lr)
        batch = next(batches)
        loss, _ = train_step(model, batch, optimizer, cfg.max_grad_norm, run.autocast_dtype, run.scaler)
        done = step + 1
        run.log_train(done, loss, lr)
        if cfg.eval_interval > 0 and done % cfg.eval_interval == 0 and done < run.total_steps:
            run.evaluate(model, done)
        if (cfg.checkpoint_interval > 0 and done % cfg.checkpoint_interval == 0) or done == run.end_step:
            run.save(model, optimizer, done)


def main(argv: list[str] | None = None) -> int:
    return _main(argv, solution=__package__)  # "exercises" or "reference": the package this file is in


if __name__ == "__main__":
    raise SystemExit(main())
