"""Step 8's probes: the learner-facing half of tests/test_step8_*.py (see `_support.probe`).

Each function runs where the learner's code runs (the worker, in a separated grading),
takes and returns plain data, and decides nothing: the tests compare what it returns
with answers they compute themselves.

`pretrain_run` is the tiny run of the real pipeline that test_step8_pretrain.py grades
the loop on: `kata.pretrain.pretrain` with the reference steps 1-6 (the learner's own in
a handout without the reference) and the learner's `run_training`, with spies around
`train_step`, the optimizer, `lr_at` and `Run.log_train` / `evaluate` / `save` that
record what the loop did. It returns that record (the trace) and what the run left in
its folder as data.
"""
from __future__ import annotations

import csv
import importlib
import json
import math
import numbers
import shutil
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from _support import student

STEP_MODULES = {"step1": "step1_embeddings", "step3": "step3_blocks", "step5": "step5_train_loop", "step6": "step6_sampler"}
SCRATCH_PREFIX = "kata-step8-"


def _other_steps() -> tuple[SimpleNamespace, str]:
    """The reference steps 1-6 if this checkout has them, else the learner's own."""
    try:
        return SimpleNamespace(**{k: importlib.import_module(f"reference.{m}") for k, m in STEP_MODULES.items()}), ""
    except (ImportError, PermissionError):  # no reference/, or one the worker may not read (grader/worker.py)
        return SimpleNamespace(**{k: student(m) for k, m in STEP_MODULES.items()}), (
            " (this run also uses your own steps 1-6: if the traceback ends in one of them, the mistake may be "
            "there, in a case their own tests do not cover)"
        )


def _number(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError, RuntimeError):
        return math.nan


def _datum(x) -> object:
    """What the loop handed a spy, as data: None and tensors as they are, bools, strings and numbers
    as Python's own (numpy's too: the judge reads only plain data), anything else as its repr."""
    if x is None or isinstance(x, torch.Tensor):
        return x
    for kind, plain in ((bool, bool), (str, str), (numbers.Integral, int), (numbers.Real, float)):
        if isinstance(x, kind):  # numpy's numbers too, as Python's own
            return plain(x)
    return repr(x)


# --------------------------------------------------------------------------- the spies


@dataclass
class Update:
    """One train_step call: what it was given and what it returned."""

    lrs: list[float]  # every param group's lr when train_step ran
    max_grad_norm: object
    autocast_dtype: object
    scaler: object
    loss: float = math.nan
    grad_norm: float = math.nan


@dataclass
class Call:
    """A call of Run.log_train / evaluate / save: the step it was given, the updates done by then."""

    step: object
    done: int  # updates done when it was called (start_step + train_step calls so far)
    in_run: int  # train_step calls so far in this run
    loss: float = math.nan  # log_train's loss, as a number
    lr: object = None  # log_train's lr
    last: int = -1  # the index of the update just before the call (-1 before the first)


class Trace:
    """What the loop did, recorded by spies around the reference pieces and `Run`."""

    def __init__(self) -> None:
        self.start_step = 0  # run_training's start_step (a resumed run's: its checkpoint's step)
        self.updates: list[Update] = []
        self.in_train_step = False
        self.optimizer_steps_outside = 0  # optimizer steps not made by train_step
        self.schedule: list[tuple[object, object]] = []  # (step, total_steps) of each lr_at call
        self.logs: list[Call] = []
        self.evals: list[Call] = []
        self.saves: list[Call] = []
        self.run_scaler = None

    def call(self, step, **kw) -> Call:
        n = len(self.updates)
        return Call(step, self.start_step + n, n, last=n - 1, **kw)

    def optimizer_stepped(self, *_) -> None:
        if not self.in_train_step:
            self.optimizer_steps_outside += 1

    def data(self) -> dict:
        """The record as data (tests/test_step8_pretrain.py's `Trace` reads it back)."""
        def call(c: Call) -> dict:
            return {"step": _datum(c.step), "done": c.done, "in_run": c.in_run, "loss": c.loss, "lr": _datum(c.lr),
                    "last": c.last}

        return {
            "start_step": _datum(self.start_step),
            "updates": [{"lrs": [_number(x) for x in u.lrs], "max_grad_norm": _datum(u.max_grad_norm),
                         "autocast_dtype": str(u.autocast_dtype), "scaler": repr(u.scaler),
                         "scaler_is_the_runs": u.scaler is self.run_scaler, "loss": u.loss,
                         "grad_norm": u.grad_norm} for u in self.updates],
            "optimizer_steps_outside": self.optimizer_steps_outside,
            "schedule": [[_datum(s), _datum(t)] for s, t in self.schedule],
            "logs": [call(c) for c in self.logs],
            "evals": [call(c) for c in self.evals],
            "saves": [call(c) for c in self.saves],
        }


def _run_pretrain(run_cfg: dict, out_dir: Path, stop_after: int | None, resume: bool) -> tuple[dict, Trace]:
    import kata.pretrain as kp
    from kata.precision import Precision
    from kata.presets import preset

    s8 = student("step8_pretrain")
    steps, _ = _other_steps()
    trace = Trace()
    s5 = steps.step5

    def configure_optimizer(*a, **k):
        optimizer = s5.configure_optimizer(*a, **k)
        optimizer.register_step_post_hook(trace.optimizer_stepped)  # every step, whoever makes it
        return optimizer

    def run_training(model, optimizer, run, start_step=0):
        trace.start_step = start_step
        return s8.run_training(model, optimizer, run, start_step)

    steps.step5 = SimpleNamespace(**{**vars(s5), "configure_optimizer": configure_optimizer})
    steps.step8 = SimpleNamespace(run_training=run_training)

    def lr_at(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
        trace.schedule.append((step, total_steps))
        return s5.lr_at(step, max_lr, warmup_steps, total_steps, min_lr)

    def train_step(model, input_ids, optimizer, max_grad_norm=1.0, autocast_dtype=None, scaler=None):
        update = Update([g["lr"] for g in optimizer.param_groups], max_grad_norm, autocast_dtype, scaler)
        trace.updates.append(update)
        trace.in_train_step = True
        try:
            # The precision the loop passed is recorded above; the update itself runs in fp32 without a
            # scaler, as the CPU's policy does (CPU fp16 autocast is slow where it exists at all).
            loss, grad_norm = s5.train_step(model, input_ids, optimizer, max_grad_norm, None, None)
        finally:
            trace.in_train_step = False
        update.loss, update.grad_norm = _number(loss), _number(grad_norm)
        return loss, grad_norm

    init, log_train, evaluate, save = kp.Run.__init__, kp.Run.log_train, kp.Run.evaluate, kp.Run.save
    validation_loss, heldout_loss = kp.Run.validation_loss, kp.heldout_loss  # the verdict's loss (kata/heldout.py)

    def run_init(self, *a, **k):
        init(self, *a, **k)
        self.stop_after = stop_after
        # The run is dressed as an fp16 GPU's (kata/precision.py: the one precision with a gradient
        # scaler), so the loop must hand run.autocast_dtype and run.scaler on: on the CPU they are None,
        # and a loop that passes None regardless would look right. Only the loop sees this precision:
        # train_step's spy and every evaluation compute in fp32.
        self.precision = Precision(self.device, "fp16", "the step-8 test's marker precision")
        self.autocast_dtype = self.precision.autocast_dtype
        self.scaler = trace.run_scaler = self.precision.make_scaler()

    def run_validation_loss(self, model):
        dtype, self.autocast_dtype = self.autocast_dtype, None
        try:
            return validation_loss(self, model)
        finally:
            self.autocast_dtype = dtype

    def run_heldout_loss(model, chunks, batch_size=16, max_batches=None, autocast_dtype=None):
        return heldout_loss(model, chunks, batch_size, max_batches, None)

    def run_log_train(self, step, loss, lr):
        trace.logs.append(trace.call(step, loss=_number(loss), lr=lr))
        return log_train(self, step, loss, lr)

    def run_evaluate(self, model, step):
        trace.evals.append(trace.call(step))
        return evaluate(self, model, step)

    def run_save(self, model, optimizer, step):
        trace.saves.append(trace.call(step))
        return save(self, model, optimizer, step)

    patches = [
        (kp, "solution_steps", lambda solution=None: steps), (kp, "heldout_loss", run_heldout_loss),
        (s8, "lr_at", lr_at), (s8, "set_lr", s5.set_lr), (s8, "train_step", train_step),
        (kp.Run, "__init__", run_init), (kp.Run, "validation_loss", run_validation_loss),
        (kp.Run, "log_train", run_log_train), (kp.Run, "evaluate", run_evaluate), (kp.Run, "save", run_save),
    ]
    saved = [(obj, name, getattr(obj, name, None)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        summary = kp.pretrain(preset("smoke", out_dir=str(out_dir), resume=resume, **run_cfg), quiet=True)
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
    return summary, trace


def _folder(out_dir: Path) -> dict:
    """What a run left in its folder: its files, loss.csv's rows, the checkpoint's step, summary.json's
    steps (None for a file that is not there; a file that does not read, as the error it raised)."""
    def read(name: str, how):
        try:
            return how(out_dir / name) if (out_dir / name).exists() else None
        except Exception as e:  # noqa: BLE001 - the test that reads it reports it
            return f"unreadable ({type(e).__name__}: {e})"

    def loss_rows(path: Path) -> list[dict]:
        with path.open(newline="") as f:
            return [dict(r) for r in csv.DictReader(f)]

    return {
        "files": sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else [],
        "loss_rows": read("loss.csv", loss_rows),
        "checkpoint_step": read("checkpoint.pt", lambda p: _datum(torch.load(p, map_location="cpu",
                                                                             weights_only=False)["step"])),
        "summary_steps": read("summary.json", lambda p: _datum(json.loads(p.read_text())["steps"])),
    }


def scratch_folder() -> str:
    """A new folder for the runs, made where they run (the worker may be another user than the judge)."""
    return tempfile.mkdtemp(prefix=SCRATCH_PREFIX)


def remove_scratch_folder(path: str) -> None:
    if Path(path).name.startswith(SCRATCH_PREFIX):
        shutil.rmtree(path, ignore_errors=True)


def pretrain_run(run_cfg: dict, out_dir: str, stop_after: int | None = None, resume: bool = False) -> dict:
    """One tiny pretraining run with `run_cfg` in `out_dir`, stopped after `stop_after` updates or
    resumed from its checkpoint: {"summary", "trace"} or, where the run raised, {"error": {...}},
    with "folder" (what the run left in out_dir) either way. Errors a test reports itself (the
    learner's exception, a stub's NotImplementedError) come back as data, with the traceback's last
    frames; the tests' own failures and skips (an import error, waiting on a step) are raised."""
    folder = Path(out_dir)
    try:
        summary, trace = _run_pretrain(run_cfg, folder, stop_after, resume)
        result: dict = {"summary": json.loads(json.dumps(summary, default=repr)), "trace": trace.data()}
    except Exception as e:  # noqa: BLE001 — every test reports it with a hint
        _, dep = _other_steps()
        result = {"error": {"not_implemented": isinstance(e, NotImplementedError), "message": str(e),
                            "traceback": traceback.format_exc(limit=-4), "dep": dep}}
    result["folder"] = _folder(folder)
    return result


# --------------------------------------------------------------------------- test_step8_final


def _require_steps_1_to_6() -> None:
    from kata.final import first_unfinished_step

    unfinished = first_unfinished_step()
    if unfinished is not None:
        n, where = unfinished
        pytest.skip(f"waiting on step {n}: {where} still raises NotImplementedError; "
                    f"the final run trains your steps 1-6 together once they are all done")


def _writable(*folders: Path) -> str:
    """The first of `folders` this process may write in (made if need be), else a new temporary one."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder):
                pass
            return str(folder)
        except OSError:  # a separated grading's worker writes only to its scratch and the kata's cache
            continue
    return tempfile.mkdtemp(prefix="kata-final-")


def smoke_run(use_cache: bool = True) -> dict:
    """The graded smoke-tier run of the learner's steps 1-6 and 8 (`kata.final.grade_final`), or a
    skip "waiting on step N" while one of steps 1-6 is unfinished. Its loss curve, samples and
    summary go to runs/final/smoke/ as `python -m kata.final` writes them, or where this process
    may write (the kata's cache, a temporary folder)."""
    from kata.final import grade_final
    from kata.paths import REPO_ROOT, cache_dir

    _require_steps_1_to_6()
    out_dir = _writable(REPO_ROOT / "runs" / "final" / "smoke", cache_dir() / "final" / "runs" / "smoke")
    result = grade_final(tier="smoke", quiet=True, use_cache=use_cache, out_dir=out_dir)
    return json.loads(json.dumps(result, default=repr))
