"""Step 8 — the full pretraining run. `python -m reference.step8_pretrain --preset smoke`.

The learner writes the loop (`run_training`); data, model, resume, plots and samples
are scaffolding in `kata.pretrain`, shared with the exercises.
"""
from __future__ import annotations

from kata.pretrain import Run, main as _main
from .step5_train_loop import lr_at, set_lr, train_step


def run_training(model, optimizer, run: Run, start_step: int = 0) -> None:
    """Train from `start_step` up to `run.end_step` updates.

    Each step: learning rate from the schedule, the next batch, one `train_step`
    (which clips before it steps; pass it `run.autocast_dtype` and `run.scaler`, the
    device's precision), then the bookkeeping — log the loss, evaluate every
    `eval_interval` updates, checkpoint every `checkpoint_interval` and at the end.
    `step` counts updates already done, so after the update it is `step + 1`.
    """
    cfg = run.cfg
    batches = run.batches(start_step)
    for step in run.progress(start_step):
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, run.total_steps, cfg.min_lr)
        set_lr(optimizer, lr)
        loss, _ = train_step(model, next(batches), optimizer, cfg.max_grad_norm, run.autocast_dtype, run.scaler)
        done = step + 1
        run.log_train(done, loss, lr)
        if done % cfg.eval_interval == 0 and done < run.total_steps:
            run.evaluate(model, done)
        if done % cfg.checkpoint_interval == 0 or done == run.end_step:
            run.save(model, optimizer, done)


def main(argv: list[str] | None = None) -> int:
    return _main(argv, solution="reference")


if __name__ == "__main__":
    raise SystemExit(main())
