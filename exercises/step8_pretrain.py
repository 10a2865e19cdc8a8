"""Step 8 — the full pretraining run. `python -m exercises.step8_pretrain --preset smoke`.

You write the loop (`run_training`); data, model, resume, plots and samples are
scaffolding in `kata.pretrain`. `pytest -k step8` checks the loop on a tiny run.
"""
from __future__ import annotations

from kata.pretrain import Run, main as _main
from .step5_train_loop import lr_at, set_lr, train_step  # noqa: F401  (your step 5)


def run_training(model, optimizer, run: Run, start_step: int = 0) -> None:
    """Train from `start_step` up to `run.end_step` updates.

    `run` gives everything besides the model and optimizer: `run.cfg` (lr, min_lr,
    warmup_steps, max_grad_norm, eval_interval, checkpoint_interval), `run.total_steps`,
    `run.end_step`, `run.autocast_dtype` and `run.scaler` (pass both to `train_step`),
    `run.batches(start_step)` (an iterator of (B, T) batches on the device),
    `run.progress(start_step)` (the steps to do, with a progress bar), `run.log_train(done, loss, lr)`, `run.evaluate(model, done)` and
    `run.save(model, optimizer, done)`.
    Each step: the learning rate from `lr_at(step, ...)` with `run.total_steps`, set it
    with `set_lr`, one `train_step` on the next batch (it clips before it steps), then
    with done = step + 1 (updates done so far): log the loss, evaluate when done is a
    multiple of eval_interval (and done < total_steps: the final evaluation is
    scaffolding), save when done is a multiple of checkpoint_interval or done == run.end_step.
    A checkpoint after `done` updates is what `--resume` continues from.
    """
    raise NotImplementedError(
        "run_training is not written yet (step 8): its docstring states what it must do; "
        "`nox -s check -- --step 8` grades it"
    )


def main(argv: list[str] | None = None) -> int:
    return _main(argv, solution="exercises")


if __name__ == "__main__":
    raise SystemExit(main())
