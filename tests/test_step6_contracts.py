"""Step 6 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-6 tests let through.
"""
from __future__ import annotations

import torch

from _device_check import run_recording_devices
from _step6_checks import MODULE, run_generate
from _support import not_implemented_guard, student
from _tiny_lm import TableLM, TinyLM
from strategies import expect


def generate(*args, **kwargs):
    """The learner's generate; an exception is reported with its line, and a sampler bug as one."""
    return run_generate(*args, **kwargs)


def raw_generate(*args, **kwargs):
    """The learner's generate, its exceptions left as they are (run_recording_devices reads them)."""
    return not_implemented_guard(student(MODULE).generate, *args, **kwargs)


def test_generate_keeps_every_tensor_on_the_prompt_device() -> None:
    """Bookkeeping made without `device=` (e.g. the finished-rows mask) sits on the CPU;
    on a GPU, updating it with the CUDA samples raises. The model and prompt are on the
    `meta` device here, where any op mixing devices is recorded (greedy decoding, up to
    the first time generate reads a value, which meta tensors do not have)."""
    model = TinyLM(vocab_size=13, block_size=8).to("meta")
    prompt = torch.zeros(2, 3, dtype=torch.long, device="meta")
    _, mixed = run_recording_devices(raw_generate, model, prompt, 4, temperature=0.0, eos_id=5, until_item=True)
    expect(not mixed, (
        f"generate(..., eos_id=5) mixed devices: {mixed[:3]} (the model and prompt were on 'meta'). A tensor "
        f"made inside generate landed on the CPU: create it on the prompt's device (device=idx.device), "
        f"or it fails on a GPU"
    ))


def _table(V: int = 7) -> torch.Tensor:
    """Logits with one clear favourite per previous token (t -> t + 1) and real mass elsewhere."""
    table = torch.zeros(V, V)
    table[torch.arange(V), (torch.arange(V) + 1) % V] = 1.0
    return table


def test_generate_with_eos_works_when_the_batch_and_prompt_lengths_differ() -> None:
    """One finished flag per row (B of them), whatever the prompt length T0."""
    model = TableLM(_table(), block_size=16)
    prompt = torch.tensor([[0, 1, 2], [3, 4, 0]])  # B = 2 rows, T0 = 3 tokens
    g = torch.Generator().manual_seed(0)
    out = generate(model, prompt, 4, temperature=0.0, generator=g, eos_id=6, hint=(
        "With eos_id, generate keeps one finished flag per row: B of them (B = idx.size(0)), not one per "
        "prompt token, so a flag of the wrong size shows only when B != T0, as here. Look at generate "
        "(step6_sampler.py)"))
    expect(out.shape[0] == 2 and 3 < out.shape[1] <= 7 and torch.equal(out[:, :3], prompt), (
        f"generate on a (2, 3) prompt with max_new_tokens=4 should return (2, 3 + n), 1 <= n <= 4, "
        f"starting with the prompt; got {tuple(out.shape)}: {out.tolist()}"
    ))


def test_generate_passes_top_k_on_to_the_sampler() -> None:
    """top_k=1 leaves only the most likely token: at temperature 1 generate must then be
    greedy; ignoring top_k would draw the other tokens (each ~1/(6 + e) likely here)."""
    model = TableLM(_table(), block_size=16)
    prompt = torch.zeros(3, 1, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    out = generate(model, prompt, 20, temperature=1.0, top_k=1, generator=g)
    greedy = generate(model, prompt, 20, temperature=0.0)
    expect(torch.equal(out, greedy), (
        f"generate(..., top_k=1) drew tokens other than the most likely one: got {out[0].tolist()}, "
        f"greedy gives {greedy[0].tolist()}. Pass top_k on to sample_next at every step"
    ))


def test_generate_stops_once_every_row_has_produced_eos_even_at_different_steps() -> None:
    """Greedy on the table t -> t + 1 (mod 7), eos 6: row 0 (prompt 5) produces eos at the
    first step, row 1 (prompt 2) at the fourth. A row stays finished once it has produced
    eos, so generation stops after 4 steps, not 1 (any row) and not 10 (max_new_tokens)."""
    model = TableLM(_table(), block_size=16)
    prompt = torch.tensor([[5], [2]])
    out = generate(model, prompt, 10, temperature=0.0, eos_id=6)
    n = out.shape[1] - 1
    expect(n == 4, (
        f"rows that produce eos_id at steps 1 and 4 should stop generation after 4 new tokens; got {n}: "
        f"{out.tolist()}. Remember which rows have finished (done |= next == eos_id) and stop when all have"
        + (" (stopping when *any* row finished is wrong)" if n == 1 else "")
    ))
