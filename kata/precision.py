"""Which device a run uses and in which precision: the one policy for every training path.

The manual loop (`kata.pretrain`, the learner's `train_step`) and the Trainer path
(`kata.trainer_run`, `kata.trainer_run.trainer_loss`) both ask `policy(device, mixed)` and do
what it says, so "bf16 on an A100, fp16 with gradient scaling on a T4" is decided here
and nowhere else.

| device                              | precision                       | why |
|-------------------------------------|---------------------------------|-----|
| CUDA, compute capability >= 8.0     | bf16 autocast                   | native bf16 tensor cores (A100, H100, H200, RTX 30xx/40xx); bf16 has fp32's 8-bit exponent, so gradients do not underflow and need no scaling |
| CUDA 7.x (V100 7.0, T4 7.5)         | fp16 autocast + gradient scaling | fp16 tensor cores: V100 125 vs 15.7 fp32 TFLOPS, T4 65 vs 8.1 (vendor figures); fp16's 5-bit exponent flushes small gradients to 0, so the loss is scaled up for backward |
| CUDA 6.0 (P100)                     | fp16 autocast + gradient scaling | no tensor cores, but 18.7 fp16 vs 9.3 fp32 TFLOPS: twice the peak, half the memory traffic |
| other CUDA < 7.0 (GTX 10xx, P4/P40, Maxwell) | fp32                   | their fp16 arithmetic runs at 1/64 of the fp32 rate; fp32 is faster |
| Apple Silicon (`mps`)               | fp32                            | Apple GPUs run fp16 at the fp32 rate (no gain to pay fp16's gradient scaling for); bf16 autocast needs macOS 14 |
| CPU                                 | fp32                            | bf16 autocast is slower than fp32 on CPUs without AMX; every CPU figure and threshold of the kata is fp32 |

`mixed=False` (`--bf16 false`) asks for fp32 everywhere. None of the GPU rows was
measured for this kata (no GPU was lent while writing it): the choices follow the
vendors' figures above, and `benchmarks/gpu_check.py` measures the bf16 vs fp32 gap.
`KATA_PRECISION=fp32|bf16|fp16` forces one precision on any device that can run it
(checks and experiments: e.g. fp16 with gradient scaling on an A100).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_DESCRIBE = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast with gradient scaling"}


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> CUDA if present, else Apple's MPS, else the CPU; a named device must exist.

    Raises ValueError with one line naming the fix when `cuda` or `mps` is asked for
    on a machine without it (the run's `main` turns that into exit status 2).
    """
    kind = torch.device(name).type if name != "auto" else "auto"
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but PyTorch sees no CUDA GPU: use --device auto or cpu")
    if kind == "mps" and not mps_available():
        raise ValueError(f"--device {name} was asked for but this PyTorch has no MPS (Apple Silicon GPU): "
                         f"use --device auto or cpu")
    if kind not in ("cuda", "mps", "cpu"):
        raise ValueError(f"--device {name}: choose one of {', '.join(DEVICES)}")
    return torch.device(name)


@dataclass(frozen=True)
class Precision:
    """What a run on `device` computes in.

    `name` is "bf16", "fp16" or "fp32"; `autocast_dtype` is what `torch.autocast` gets
    (None: no autocast, fp32); fp16 comes with gradient scaling (`make_scaler()`).
    `note` is one line for the log when the request could not be honoured as asked.
    """

    device: torch.device
    name: str
    reason: str
    note: str | None = None

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _DTYPES[self.name]

    @property
    def grad_scaling(self) -> bool:
        return self.name == "fp16"

    def describe(self) -> str:
        return _DESCRIBE[self.name]

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh `torch.amp.GradScaler` for fp16, else None (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device.type) if self.grad_scaling else None

    def trainer_kwargs(self) -> dict:
        """The same choice as `TrainingArguments` fields: `bf16`, `fp16`, `use_cpu`.

        The Trainer picks CUDA, then MPS, then the CPU itself when `use_cpu` is False,
        and its fp16 mode brings its own gradient scaler (through Accelerate).
        """
        return {"bf16": self.name == "bf16", "fp16": self.name == "fp16", "use_cpu": self.device.type == "cpu"}


def cuda_capability(device: torch.device) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def _gpu_name(device: torch.device) -> str:
    try:
        return torch.cuda.get_device_name(device)
    except Exception:  # noqa: BLE001 - a name is only for the message
        return "this GPU"


def default_precision(device: torch.device) -> tuple[str, str]:
    """(precision, why) of the table in this module's docstring, for mixed precision asked."""
    if device.type == "cuda":
        major, minor = cuda_capability(device)
        cc = f"compute capability {major}.{minor}"
        if major >= 8:
            return "bf16", f"{cc}: native bf16"
        if major == 7 or (major, minor) == (6, 0):
            return "fp16", f"{cc}: no native bf16, fast fp16 (tensor cores on 7.x, 2x fp32 on P100)"
        return "fp32", f"{cc}: no native bf16 and fp16 at 1/64 of the fp32 rate"
    if device.type == "mps":
        return "fp32", "Apple GPUs run fp16 no faster than fp32"
    return "fp32", "CPU"


def policy(device: torch.device | str, mixed: bool = True, force: str | None = None) -> Precision:
    """The precision a run on `device` uses.

    `mixed` is the run's `bf16` setting (default True): mixed precision where the
    device profits from it (the table above), fp32 when False. `force` (default:
    `$KATA_PRECISION`) picks "fp32", "bf16" or "fp16" outright; ValueError if the
    device cannot run it (bf16 on a GPU without native bf16).
    """
    device = torch.device(device)
    force = force if force is not None else (os.environ.get("KATA_PRECISION") or None)
    if force is not None:
        if force not in PRECISIONS:
            raise ValueError(f"KATA_PRECISION={force!r}: choose one of {', '.join(PRECISIONS)}")
        if force == "bf16" and device.type == "cuda" and cuda_capability(device)[0] < 8:
            raise ValueError(f"KATA_PRECISION=bf16: {_gpu_name(device)} (compute capability "
                             f"{'.'.join(map(str, cuda_capability(device)))}) has no native bf16: use fp16 or fp32")
        return Precision(device, force, f"forced by KATA_PRECISION={force}")
    if not mixed:
        return Precision(device, "fp32", "--bf16 false")
    name, why = default_precision(device)
    note = None
    if device.type == "cuda" and name != "bf16":
        note = (f"--bf16: {_gpu_name(device)} ({why.split(':')[0]}) has no native bf16; "
                f"using {_DESCRIBE[name]} instead")
    elif device.type == "mps":
        note = f"--bf16 is not used on mps: training in fp32 ({why})"
    return Precision(device, name, why, note)


def main(argv: list[str] | None = None) -> int:
    """`python -m kata.precision [--device auto]`: print this machine's choice as JSON."""
    import argparse
    import json

    p = argparse.ArgumentParser(description="Show the device and precision a run would use here.")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--bf16", default="true", choices=("true", "false"))
    args = p.parse_args(argv)
    try:
        device = resolve_device(args.device)
        prec = policy(device, args.bf16 == "true")
    except ValueError as e:
        print(f"error: {e}", flush=True)
        return 2
    info = {"device": str(device), "precision": prec.name, "describe": prec.describe(), "reason": prec.reason,
            "note": prec.note, "torch": torch.__version__,
            "gpu": _gpu_name(device) if device.type == "cuda" else None,
            "capability": list(cuda_capability(device)) if device.type == "cuda" else None}
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
