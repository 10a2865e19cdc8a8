"""Checkpoints that resume a run exactly: weights, optimizer, step, RNG state, configs,
and the fp16 gradient scaler's state when the run has one."""
from __future__ import annotations

from pathlib import Path

import torch

from kata.paths import atomic_path


def save_checkpoint(path: str | Path, model, optimizer, step: int, model_config: dict, run_config: dict,
                    *, scaler: torch.amp.GradScaler | None = None) -> None:
    """Write atomically (temp file + rename): a crash never leaves a truncated checkpoint.

    `scaler`: the run's fp16 gradient scaler, if any; its scale and growth tracker are
    saved under "scaler" (None without one) so a resumed run does not restart at 65536."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    raw = getattr(raw, "module", raw)  # unwrap DistributedDataParallel
    state = {
        "model": raw.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "model_config": model_config,
        "run_config": run_config,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        # A disabled scaler's state_dict() is {}, which load_state_dict() refuses: save None.
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, model_config: dict) -> dict:
    """Read a checkpoint and check it was written for the same model shape."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}: run without --resume to start a new run")
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("model_config", {})
    diff = {k: (saved.get(k), v) for k, v in model_config.items() if k != "dropout" and saved.get(k) != v}
    if diff:
        pretty = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"checkpoint {path} was written for a different model ({pretty}); "
            f"use the same preset and overrides as the run that wrote it, or a new --out-dir"
        )
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["rng_cpu"])
    if state.get("rng_cuda") is not None and torch.cuda.is_available():
        # A checkpoint from a machine with more GPUs (a torchrun run) has more states.
        torch.cuda.set_rng_state_all(state["rng_cuda"][: torch.cuda.device_count()])


def restore_scaler(scaler: torch.amp.GradScaler | None, state: dict) -> bool:
    """Load the checkpoint's gradient-scaler state into `scaler`; True when it did.

    Nothing happens (False) when this run has no scaler (bf16 or fp32 here, whatever the
    run that wrote the checkpoint used: the saved scale is simply not needed) or the
    checkpoint has no scaler state (written before checkpoints kept it, or by a bf16 or
    fp32 run): the scaler then starts afresh, as a new fp16 run does."""
    saved = state.get("scaler")
    if scaler is None or not scaler.is_enabled() or not saved:
        return False
    scaler.load_state_dict(saved)
    return True
