"""Run settings for step 8: presets and a command line that can override every field."""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields, replace


@dataclass
class RunConfig:
    # data
    corpus: str = "shakespeare"  # "shakespeare" (offline) or "wikitext2"
    data_dir: str | None = None  # folder with wiki.{train,valid}.{raw,tokens}
    tokenizer: str = "bundled"  # "bundled" (offline GPT-2 BPE) or "hub"
    # model (GPTConfig fields)
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 192
    block_size: int = 256
    dropout: float = 0.1
    attn_impl: str = "sdpa"
    # optimisation (the lab: AdamW 3e-4, wd 0.01, clip 1.0, batch 16, 2 epochs)
    batch_size: int = 16
    lr: float = 3e-4
    min_lr: float = 3e-5
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    warmup_steps: int = 100
    epochs: float = 2.0
    max_steps: int | None = None  # a fixed step count overrides epochs
    seed: int = 0
    # bookkeeping
    log_interval: int = 50
    eval_interval: int = 500
    eval_batches: int | None = None  # None: the whole validation split
    checkpoint_interval: int = 1000
    out_dir: str = "runs/lab"
    resume: bool = False
    # speed
    device: str = "auto"  # auto: cuda, else mps (Apple Silicon), else cpu; or name one: cuda, mps, cpu
    # Mixed precision by the device's policy (kata/precision.py): bf16 autocast on GPUs with
    # native bf16 (compute capability >= 8.0), fp16 autocast + gradient scaling on T4/V100/P100,
    # fp32 on other GPUs, MPS and CPU. False: fp32 everywhere.
    bf16: bool = True
    compile: bool = False
    # what the learner sees at the end
    threshold: float | None = None
    samples: int = 3
    sample_tokens: int = 60


PRESETS: dict[str, dict] = {
    # The seed lab's run, plus warmup + cosine decay. Step 8's GPU tier. Threshold from full
    # runs (benchmarks/CALIBRATION.md): reference seeds 0 and 1 reached 5.010 and 5.006;
    # 5.25 is the worst plus the rule's minimum margin of 0.2, rounded up; the LR/10 mutant
    # reached 6.477 at the same length.
    "lab": dict(out_dir="runs/lab", threshold=5.25),
    # The seed's stretch goal: twice the depth, twice the width.
    "lab-large": dict(n_layer=12, n_head=6, n_embd=384, out_dir="runs/lab-large"),
    # Step 8's graded tier (CI, `nox -s check`, Gradescope): 100 steps of a 3.3M-parameter
    # model on the offline corpus, 256 tokens a step (the tied 50,257-word head is nearly
    # all the cost, so tokens, not layers, set the time: ~30 s on one CPU core, and the
    # logits stay small enough for a 768 MB autograder). A fixed step count (not seconds)
    # so the loss does not depend on the machine's speed. Threshold: benchmarks/CALIBRATION.md.
    "smoke": dict(
        n_layer=2, n_head=2, n_embd=64, block_size=32, dropout=0.0, batch_size=8,
        lr=3e-3, min_lr=3e-4, warmup_steps=20, max_steps=100, log_interval=10,
        eval_interval=50, eval_batches=8, checkpoint_interval=100, out_dir="runs/smoke",
        sample_tokens=30, threshold=7.1,  # correct runs 6.68-6.78, ruinous mutants >= 9.4 (CALIBRATION.md)
    ),
}


def preset(name: str, **overrides) -> RunConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return replace(RunConfig(**PRESETS[name]), **overrides)


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _parse_optional(kind):
    def parse(s: str):
        return None if s.lower() == "none" else kind(s)
    return parse


def parse_args(argv: list[str] | None = None) -> tuple[str, RunConfig]:
    """`--preset NAME` plus `--field value` for any RunConfig field (`--n-layer 4`)."""
    p = argparse.ArgumentParser(description="Pretrain TinyGPT (step 8 of tinygpt-kata).")
    p.add_argument("--preset", default="lab", help=f"one of {', '.join(PRESETS)} (default lab)")
    types = {"int": int, "float": float, "str": str, "bool": _parse_bool}
    helps = {
        "device": "auto (default): cuda, else mps (Apple Silicon), else cpu; or cuda, mps, cpu",
        "bf16": "mixed precision by the device (kata/precision.py): bf16 autocast on GPUs with native bf16, "
                "fp16 + gradient scaling on T4/V100/P100, fp32 on MPS and CPU; false: fp32 everywhere",
    }
    for f in fields(RunConfig):
        t = str(f.type).replace(" | None", "")
        parse = types[t] if "None" not in str(f.type) else _parse_optional(types[t])
        if f.type == "bool":
            p.add_argument(f"--{f.name.replace('_', '-')}", type=_parse_bool, nargs="?", const=True, default=argparse.SUPPRESS,
                           help=helps.get(f.name))
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=parse, default=argparse.SUPPRESS, help=helps.get(f.name))
    ns = vars(p.parse_args(argv))
    name = ns.pop("preset")
    # Only flags given on the command line are in `ns` (SUPPRESS), so `--threshold none`
    # really overrides a preset's threshold with None.
    overrides = ns
    try:
        return name, preset(name, **overrides)
    except ValueError as e:
        p.error(str(e))
        raise  # unreachable: p.error exits


def to_dict(run: RunConfig) -> dict:
    return asdict(run)
