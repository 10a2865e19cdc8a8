"""The six training set-ups the benchmark compares, each as `setup(shape, data, device) -> step()`.

1. `seed`: the lab's model exactly as the seed writes it (`nn.TransformerEncoder`,
   fp32), with its loop: a shuffled `DataLoader`, `loss.item()` every step.
2. `reference`: the kata's TinyGPT and `train_step`, eager fp32, step 2's explicit
   mask (`attn_impl="manual"`), for-each AdamW, each batch copied from host memory,
   the loss read back every step (a first working loop).
3. `tuned`: (2) with fused attention (`scaled_dot_product_attention`), bf16 autocast
   (CUDA), fused AdamW, the whole training set preloaded on the device, batches
   indexed there, and no host sync inside the loop.
4. `compiled`: (3) with `torch.compile`.
5. `trainer`: the Hugging Face Trainer on a same-shaped `GPT2LMHeadModel`, defaults.
6. `trainer-tuned`: the Trainer with documented arguments: bf16, fused AdamW,
   `torch_compile`, `logging_nan_inf_filter=False` (no per-step NaN check, which
   syncs), dataloader workers, pinned memory.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

VARIANTS = ("seed", "reference", "tuned", "compiled", "trainer", "trainer-tuned")
TITLES = {
    "seed": "1. seed lab (nn.TransformerEncoder, fp32, its loop)",
    "reference": "2. reference loop, eager fp32",
    "tuned": "3. reference tuned (bf16, fused AdamW, SDPA, preloaded, no sync)",
    "compiled": "4. tuned + torch.compile",
    "trainer": "5. HF Trainer, defaults",
    "trainer-tuned": "6. HF Trainer, tuned arguments",
}


@dataclass
class Shape:
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 192
    block_size: int = 256
    batch_size: int = 16
    dropout: float = 0.1
    vocab_size: int = 50257
    lr: float = 3e-4
    weight_decay: float = 0.01


# ------------------------------------------------------------- 1. the seed's model

class SeedTinyGPT(nn.Module):
    """The seed lab's TinyGPT, verbatim apart from indentation (and no print)."""

    def __init__(self, config: Shape) -> None:
        super().__init__()
        self.config = config
        self.token_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=config.n_embd, nhead=config.n_head,
            dim_feedforward=config.n_embd * 4, dropout=config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers=config.n_layer)
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.token_emb.weight

    def forward(self, input_ids, labels=None):
        B, T = input_ids.shape
        positions = torch.arange(T, device=input_ids.device).unsqueeze(0)
        x = self.drop(self.token_emb(input_ids) + self.pos_emb(positions))
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=input_ids.device)
        x = self.transformer(x, mask=mask, is_causal=True)
        x = self.ln_f(x)
        logits = self.lm_head(x)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits[:, :-1].contiguous().view(-1, logits.size(-1)),
                labels[:, 1:].contiguous().view(-1),
            )
        return logits, loss


def _endless(loader):
    while True:
        yield from loader


def setup_seed(shape: Shape, chunks: torch.Tensor, device: torch.device, opts: dict) -> tuple[Callable, nn.Module]:
    model = SeedTinyGPT(shape).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=shape.lr, weight_decay=shape.weight_decay)
    loader = torch.utils.data.DataLoader(chunks, batch_size=shape.batch_size, shuffle=True, drop_last=True)
    it = _endless(loader)

    def step() -> None:
        ids = next(it).to(device)
        _, loss = model(ids, labels=ids)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()  # the seed accumulates total_loss += loss.item() every step

    return step, model


# ------------------------------------------------------------ 2-4. the kata's loop

def _reference_model(shape: Shape, attn_impl: str, device: torch.device):
    from reference.step1_embeddings import GPTConfig
    from reference.step3_blocks import TinyGPT

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=shape.vocab_size, block_size=shape.block_size, n_layer=shape.n_layer,
                    n_head=shape.n_head, n_embd=shape.n_embd, dropout=shape.dropout, attn_impl=attn_impl)
    return TinyGPT(cfg).to(device)


def setup_reference(shape: Shape, chunks: torch.Tensor, device: torch.device, opts: dict):
    from reference.step5_train_loop import configure_optimizer, iterate_batches, train_step

    model = _reference_model(shape, "manual", device)
    optimizer = configure_optimizer(model, shape.lr, shape.weight_decay, fused=False)
    batches = iterate_batches(chunks, shape.batch_size, seed=0)

    def step() -> None:
        loss, _ = train_step(model, next(batches).to(device), optimizer, 1.0, None)
        loss.item()

    return step, model


def setup_tuned(shape: Shape, chunks: torch.Tensor, device: torch.device, opts: dict, compile: bool = False):
    from reference.step5_train_loop import configure_optimizer, train_step

    model = _reference_model(shape, "sdpa", device)
    cuda = device.type == "cuda"
    # Fused AdamW: one kernel for all parameters (CUDA; CPU falls back to for-each).
    optimizer = configure_optimizer(model, shape.lr, shape.weight_decay, fused=cuda)
    autocast = torch.bfloat16 if cuda else None  # CPU bf16 autocast is slower than fp32 on most CPUs
    train_model = torch.compile(model) if compile else model
    data = chunks.to(device)  # 2.7M tokens of int64 = 21 MB: the whole set fits on any GPU
    g = torch.Generator(device=device).manual_seed(0)
    per_epoch = len(data) // shape.batch_size
    state = {"perm": torch.randperm(len(data), device=device, generator=g), "i": 0}
    running = torch.zeros((), device=device)

    def step() -> None:
        if state["i"] == per_epoch:
            state["perm"], state["i"] = torch.randperm(len(data), device=device, generator=g), 0
        i = state["i"]
        idx = state["perm"][i * shape.batch_size : (i + 1) * shape.batch_size]
        state["i"] += 1
        loss, _ = train_step(train_model, data[idx], optimizer, 1.0, autocast)
        running.add_(loss)  # stays on the device: read back only when logging

    return step, model


def setup_compiled(shape, chunks, device, opts):
    return setup_tuned(shape, chunks, device, opts, compile=True)


# ---------------------------------------------------------------- 5-6. the Trainer

def _trainer(shape: Shape, chunks: torch.Tensor, device: torch.device, total_steps: int, tuned: bool, timer):
    from transformers import TrainerCallback

    from kata.tokenizer import load_tokenizer
    from reference.step1_embeddings import GPTConfig
    from reference.step7_trainer import build_hf_model, build_trainer, training_arguments

    cuda = device.type == "cuda"
    cfg = GPTConfig(vocab_size=shape.vocab_size, block_size=shape.block_size, n_layer=shape.n_layer,
                    n_head=shape.n_head, n_embd=shape.n_embd, dropout=shape.dropout)
    model = build_hf_model(cfg)
    common = dict(max_steps=total_steps, per_device_train_batch_size=shape.batch_size, learning_rate=shape.lr,
                  weight_decay=shape.weight_decay, warmup_steps=0, disable_tqdm=True, use_cpu=not cuda)
    if tuned:
        extra = dict(bf16=cuda, optim="adamw_torch_fused" if cuda else "adamw_torch", torch_compile=cuda,
                     logging_nan_inf_filter=False, dataloader_num_workers=2, dataloader_persistent_workers=True,
                     dataloader_pin_memory=cuda, logging_steps=10**9)
    else:
        # The Trainer's own defaults, apart from the lab's batch size and optimiser settings.
        extra = dict(optim="adamw_torch", logging_nan_inf_filter=True, dataloader_num_workers=0, logging_steps=500,
                     adam_beta2=0.999, lr_scheduler_type="linear", max_grad_norm=1.0)
    args = training_arguments("/tmp/kata-bench-trainer", **common, **extra)
    trainer = build_trainer(model, args, chunks, load_tokenizer("bundled"))

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            timer(state.global_step)

    trainer.add_callback(Clock())
    return trainer, model


# ---------------------------------------------------------------------- measuring

def flops_per_token(shape: Shape, n_params_matmul: int) -> float:
    """6N for the weights (forward + backward) + 12·L·T·C for attention scores (PaLM, app. B)."""
    return 6 * n_params_matmul + 12 * shape.n_layer * shape.block_size * shape.n_embd


def matmul_params(shape: Shape) -> int:
    """Parameters that take part in a matmul: all of them but the position table (a lookup).

    The tied token matrix counts once, as the LM head's matmul (its embedding lookup is free).
    """
    C, L, V = shape.n_embd, shape.n_layer, shape.vocab_size
    per_block = (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C) + 4 * C
    return V * C + L * per_block + 2 * C


PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}


def peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """Dense bf16 peak of a known GPU (datasheet, no sparsity); None on CPU / unknown."""
    if device.type != "cuda":
        return None, "n/a on CPU"
    name = torch.cuda.get_device_name(device)
    for key, val in PEAK_BF16_TFLOPS.items():  # "H100 PCIe" is listed before "H100"
        if key.replace(" ", "").lower() in name.replace(" ", "").lower():
            return val, f"{name}: {val:g} TFLOP/s dense bf16"
    return None, f"{name}: peak unknown"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: the process's peak RSS


def measure(variant: str, shape: Shape, chunks: torch.Tensor, device: torch.device, steps: int, warmup: int) -> dict:
    """Run `warmup` untimed steps, then `steps` timed ones; figures for one variant."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    if variant.startswith("trainer"):
        marks: dict[int, float] = {}

        def timer(step: int) -> None:
            if step in (warmup, warmup + steps):
                _sync(device)
                marks[step] = time.perf_counter()

        trainer, model = _trainer(shape, chunks, device, warmup + steps, variant == "trainer-tuned", timer)
        trainer.train()
        elapsed = marks[warmup + steps] - marks[warmup]
    else:
        setup = {"seed": setup_seed, "reference": setup_reference, "tuned": setup_tuned, "compiled": setup_compiled}[variant]
        step, model = setup(shape, chunks, device, {})
        for _ in range(warmup):
            step()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        elapsed = time.perf_counter() - t0
    tokens = steps * shape.batch_size * shape.block_size
    tps = tokens / elapsed
    n = matmul_params(shape)
    peak, _ = peak_tflops(device)
    achieved = flops_per_token(shape, n) * tps
    return {
        "variant": variant,
        "title": TITLES[variant],
        "tokens_per_s": tps,
        "step_ms": 1000 * elapsed / steps,
        "peak_memory_mb": _peak_memory_mb(device),
        "achieved_tflops": achieved / 1e12,
        "mfu": None if peak is None else achieved / (peak * 1e12),
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "warmup": warmup,
    }


def two_epoch_seconds(tokens_per_epoch: int, tps: float) -> float:
    return 2 * tokens_per_epoch / tps if tps > 0 else math.inf
