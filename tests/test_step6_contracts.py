"""Step 6 — contracts found by mutation testing (tests/mutants/MUTATION.md, `nox -s mutmut`).

Each test here kills mutants of the reference that the main step-6 tests let through.
The learner's code runs in the probes of tests/_probes_step6.py (see `_support.probe`).
"""
from __future__ import annotations

import pytest
import torch

import _probes_step6 as P
from _step6_checks import TableModel, run_generate, value, wire
from _support import probe
from strategies import expect


def generate(*args, **kwargs):
    """The learner's generate; an exception is reported with its line, and a sampler bug as one."""
    return run_generate(*args, **kwargs)


def _chain_table() -> torch.Tensor:
    """1 -> eos 6 at once; 2 -> 3 -> 4 -> eos; 5 -> 5 for ever; after eos, 1 (so a finished row that
    is not padded shows). Each next token has probability 1 - ~1e-25 at temperature 1."""
    tab = torch.full((7, 7), -30.0)
    for a, b in {0: 1, 1: 6, 2: 3, 3: 4, 4: 6, 5: 5, 6: 1}.items():
        tab[a, b] = 30.0
    return tab


DEVICE_CASES = {  # id: (prompt, keyword arguments of generate)
    "greedy, eos, rows end at steps 1 and 3": ([[0, 1], [0, 2]], dict(temperature=0.0, eos_id=6)),
    "sampled with top_k, eos, one row never ends": ([[0, 1], [5, 5], [0, 2]], dict(temperature=1.0, top_k=2,
                                                                                   eos_id=6)),
    "sampled, no eos": ([[0, 2], [5, 5]], dict(temperature=1.0)),
}


@pytest.mark.parametrize("case", DEVICE_CASES)
def test_generate_keeps_every_tensor_on_the_prompt_device(case: str) -> None:
    """Bookkeeping made without the prompt's device (a finished-rows mask, a padding column)
    sits on the CPU; on a GPU the first op that meets it with the GPU's samples raises. The
    model and prompt sit on a fake GPU here (tests/_fake_device.py): tensors that claim
    cuda:0 and hold real data, so any correct code runs on them (sampling only the rows
    still going, boolean masks, `.item()`), and an op that mixes them with a CPU tensor
    (other than a 0-dim scalar) raises, as on a GPU. No generator is passed: a CPU
    generator with GPU tensors is the caller's mistake, not generate's."""
    prompt, kw = DEVICE_CASES[case]
    call = f"generate(model, a {tuple(torch.tensor(prompt).shape)} prompt, max_new_tokens=5, " + ", ".join(
        f"{k}={v!r}" for k, v in kw.items()) + ")"
    # The probe runs generate on the fake GPU and says how it went: {"out"}, {"mixed"} (a DeviceMixError and
    # its line) or {"unsupported"} (any other error and its line).
    ran = probe(P.generate_on_fake_gpu, _chain_table(), 8, torch.tensor(prompt), 5, wire(kw))
    if "out" in ran:
        out = value(ran["out"])
        expect(isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == len(prompt)
               and 2 < out.shape[1] <= 7 and torch.equal(out[:, :2], torch.tensor(prompt)), (
            f"{call}, with the model and prompt on a GPU, should return ({len(prompt)}, 2 + n), 1 <= n <= 5, "
            f"starting with the prompt; got {out.tolist() if isinstance(out, torch.Tensor) else out!r}. Look at "
            f"generate (step6_sampler.py)"))
        return
    if "unsupported" in ran:  # not a device error: is it generate's own, on the CPU as well?
        run_generate(TableModel(_chain_table(), block_size=8), torch.tensor(prompt), 5, **kw)  # fails if it raises
        pytest.skip(f"the fake GPU could not run this generate ({ran['unsupported']}), which runs on the CPU: its "
                    f"device placement is not checked here")
    pytest.fail(
        f"{call}, with the model and prompt on a GPU, raised {ran['mixed']}. A tensor made inside "
        f"generate without the prompt's device sits on the CPU, and the GPU refuses to mix it with the "
        f"prompt's tensors. (These tests run on a fake GPU that holds real data: a real GPU raises the same at "
        f"that line; on a CPU the mistake does not show.) Look at generate (step6_sampler.py)", pytrace=False)


def _table(V: int = 7) -> torch.Tensor:
    """Logits with one clear favourite per previous token (t -> t + 1) and real mass elsewhere."""
    table = torch.zeros(V, V)
    table[torch.arange(V), (torch.arange(V) + 1) % V] = 1.0
    return table


def test_generate_with_eos_works_when_the_batch_and_prompt_lengths_differ() -> None:
    """One finished flag per row (B of them), whatever the prompt length T0."""
    model = TableModel(_table(), block_size=16)
    prompt = torch.tensor([[0, 1, 2], [3, 4, 0]])  # B = 2 rows, T0 = 3 tokens
    g = torch.Generator().manual_seed(0)
    out = generate(model, prompt, 4, temperature=0.0, generator=g, eos_id=6, hint=(
        "With eos_id, generate tracks which rows have finished: one flag per row of the prompt (B of them), "
        "not one per prompt token (T0 of them); a record of the wrong size shows only when B != T0, as here. "
        "Look at generate (step6_sampler.py)"))
    expect(out.shape[0] == 2 and 3 < out.shape[1] <= 7 and torch.equal(out[:, :3], prompt), (
        f"generate on a (2, 3) prompt with max_new_tokens=4 should return (2, 3 + n), 1 <= n <= 4, "
        f"starting with the prompt; got {tuple(out.shape)}: {out.tolist()}"
    ))


def test_generate_passes_top_k_on_to_the_sampler() -> None:
    """top_k=1 leaves only the most likely token: at temperature 1 generate must then be
    greedy; ignoring top_k would draw the other tokens (each ~1/(6 + e) likely here)."""
    model = TableModel(_table(), block_size=16)
    prompt = torch.zeros(3, 1, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    out = generate(model, prompt, 20, temperature=1.0, top_k=1, generator=g)
    greedy = generate(model, prompt, 20, temperature=0.0)
    expect(torch.equal(out, greedy), (
        f"generate(..., top_k=1) drew tokens other than the most likely one: got {out[0].tolist()}, "
        f"greedy gives {greedy[0].tolist()}: the top_k given to generate did not reach the sampler, at every "
        f"step. Look at generate (step6_sampler.py)"
    ))


def test_generate_stops_once_every_row_has_produced_eos_even_at_different_steps() -> None:
    """Greedy on the table t -> t + 1 (mod 7), eos 6: row 0 (prompt 5) produces eos at the
    first step, row 1 (prompt 2) at the fourth. A row stays finished once it has produced
    eos, so generation stops after 4 steps, not 1 (any row) and not 10 (max_new_tokens)."""
    model = TableModel(_table(), block_size=16)
    prompt = torch.tensor([[5], [2]])
    out = generate(model, prompt, 10, temperature=0.0, eos_id=6)
    n = out.shape[1] - 1
    expect(n == 4, (
        f"rows that produce eos_id at steps 1 and 4 should stop generation after 4 new tokens; got {n}: "
        f"{out.tolist()}: "
        + ("generation stopped when the first row finished, while the other row was still going" if n == 1 else
           "a row that has produced eos_id stays finished, and generation stops once every row has")
        + ". Look at generate (step6_sampler.py)"
    ))
