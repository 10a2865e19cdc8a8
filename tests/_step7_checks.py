"""Diagnoses for step 7's tests: what a wrong hf_config, collator or TrainingArguments did,
worked out from what the learner's objects compute, for the failure messages.

Each function only describes (it returns text, or None when it finds nothing); the tests
decide what fails. None of them may raise on a learner's odd object: a diagnosis that
cannot be made returns None and the test keeps its general message.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from _support import not_implemented_guard

# ------------------------------------------------------------------ hf_config: shapes

# copy_into_hf's table: GPT2LMHeadModel's name -> (TinyGPT's name, stored transposed),
# and what each part is, for a message about a size that does not fit.
_BLOCK_PARTS = {
    "ln_1": ("ln_1", False, "the blocks' first LayerNorm (its size is the width)"),
    "ln_2": ("ln_2", False, "the blocks' second LayerNorm (its size is the width)"),
    "attn.c_attn": ("attn.qkv", True, "the attention's query/key/value projection (width x 3 widths)"),
    "attn.c_proj": ("attn.proj", True, "the attention's output projection (width x width)"),
    "mlp.c_fc": ("mlp.fc", True, "the MLP's hidden layer (width x the MLP's hidden width)"),
    "mlp.c_proj": ("mlp.proj", True, "the MLP's output layer (the MLP's hidden width x width)"),
}
_TOP_PARTS = {
    "transformer.wte.weight": ("embed.token.weight", "the token embedding (vocabulary x width)"),
    "transformer.wpe.weight": ("embed.position.weight", "the position table (context length x width)"),
    "transformer.ln_f.weight": ("ln_f.weight", "the final LayerNorm (its size is the width)"),
    "transformer.ln_f.bias": ("ln_f.bias", "the final LayerNorm (its size is the width)"),
}


def _expected_shapes(sd: dict, n_layer: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """GPT2LMHeadModel's parameter name -> (the shape TinyGPT's weights give it, what it is)."""
    out = {theirs: (tuple(sd[ours].shape), what) for theirs, (ours, what) in _TOP_PARTS.items()}
    for i in range(n_layer):
        for theirs, (ours, transpose, what) in _BLOCK_PARTS.items():
            for leaf in ("weight", "bias"):
                key = f"blocks.{i}.{ours}.{leaf}"
                if key in sd:
                    shape = tuple(sd[key].shape)
                    out[f"transformer.h.{i}.{theirs}.{leaf}"] = (
                        shape[::-1] if transpose and leaf == "weight" else shape, what)
    return out


def shape_mismatches(sd: dict, n_layer: int, hf_model: torch.nn.Module) -> list[str]:
    """Where TinyGPT's weights do not fit `hf_model`: one line per part (the first parameter
    of it that does not fit), what the part is, its shape there and TinyGPT's."""
    try:
        have = {k: tuple(v.shape) for k, v in hf_model.state_dict().items()}
        lines: list[str] = []
        blocks = len(hf_model.transformer.h)
        if blocks != n_layer:
            lines.append(f"GPT2LMHeadModel has {blocks} block(s), TinyGPT {n_layer} (the depth)")
        seen: set[str] = set()
        for name, (want, what) in _expected_shapes(sd, n_layer).items():
            got = have.get(name)
            if got is None or got == want or what in seen:
                continue
            seen.add(what)
            lines.append(f"{what}: {name} is {got} in GPT2LMHeadModel, {want} in TinyGPT")
        return lines
    except Exception:  # noqa: BLE001 - a diagnosis only
        return []


# -------------------------------------------------------------- hf_config: attention


def _attention_inputs_and_outputs(hf_model: torch.nn.Module, ids: torch.Tensor) -> list[tuple]:
    """(attention module, its input, its output) for every block, from one eval forward pass."""
    seen: list[tuple] = []

    def hook(module, args, kwargs, output):
        x = args[0] if args else kwargs.get("hidden_states")
        seen.append((module, x.detach().clone(), (output[0] if isinstance(output, tuple) else output).detach().clone()))

    handles = [block.attn.register_forward_hook(hook, with_kwargs=True) for block in hf_model.transformer.h]
    try:
        with torch.no_grad():
            hf_model(ids)
    finally:
        for h in handles:
            h.remove()
    return seen


def _causal_attention(module: torch.nn.Module, x: torch.Tensor, n_head: int, scale: float) -> torch.Tensor:
    """Causal multi-head self-attention with the module's own weights (HF's Conv1D: x @ W + b),
    its scores multiplied by `scale`: what TinyGPT computes when `scale` is 1/sqrt(head size)."""
    B, T, C = x.shape
    qkv = x @ module.c_attn.weight + module.c_attn.bias
    q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in qkv.split(C, dim=-1))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    y = y.transpose(1, 2).reshape(B, T, C)
    return y @ module.c_proj.weight + module.c_proj.bias


def attention_mistakes(hf_model: torch.nn.Module, ids: torch.Tensor, n_head: int) -> list[str]:
    """The blocks whose attention is not TinyGPT's causal softmax(q k^T / sqrt(D)) v on the
    model's own weights, each with what its scores were scaled by where a usual scale fits.
    fp32: the same computation matches to ~1e-6; 1e-4 separates it from any other scale
    on the test's weights (std 0.2: the scores are O(1), a 2x scale moves the output by O(0.1))."""
    try:
        lines = []
        for i, (module, x, got) in enumerate(_attention_inputs_and_outputs(hf_model, ids)):
            D = x.shape[-1] // n_head

            def close(scale: float) -> bool:
                return torch.allclose(got, _causal_attention(module, x, n_head, scale), atol=1e-4, rtol=1e-4)

            if close(D ** -0.5):
                continue
            usual = {
                f"by 1/({i + 1} * sqrt(D)): also divided by the layer's number, {i + 1}": D ** -0.5 / (i + 1),
                "by 1: not scaled at all": 1.0,
                "by 1/D instead of 1/sqrt(D)": 1.0 / D,
            }
            how = next((what for what, s in usual.items() if s != D ** -0.5 and close(s)), None)
            lines.append(f"block {i}'s attention scores are scaled {how}" if how else
                         f"block {i}'s attention is not causal softmax(q k^T / sqrt(D)) v on its own weights "
                         f"(D = head size = {D})")
        return lines
    except Exception:  # noqa: BLE001 - a diagnosis only
        return []


# ------------------------------------------------------------------------ collator


def snapshot_examples(examples: list) -> list:
    """What the caller's examples hold now: the list, each dict's identity, keys and values."""
    return [(ex, {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in ex.items()}) for ex in examples]


def example_changes(snapshot: list, examples: list) -> list[str]:
    """How `examples` differ from their `snapshot`: a list shortened or reordered, keys added
    or removed, a value replaced by another (or changed in place)."""
    changes = []
    if len(examples) != len(snapshot) or any(ex is not old for ex, (old, _) in zip(examples, snapshot)):
        changes.append(f"the list of {len(snapshot)} examples now holds {len(examples)}, or other dicts")
    for i, (ex, before) in enumerate(snapshot):
        added, removed = sorted(set(ex) - set(before)), sorted(set(before) - set(ex))
        if added:
            changes.append(f"example {i} gained the key(s) {added}")
        if removed:
            changes.append(f"example {i} lost the key(s) {removed}")
        for k in set(ex) & set(before):
            now, was = ex[k], before[k]
            if isinstance(was, torch.Tensor):
                same = (isinstance(now, torch.Tensor) and now.dtype == was.dtype and now.shape == was.shape
                        and torch.equal(now, was))
            else:
                same = type(now) is type(was) and now == was
            if not same:
                changes.append(f"example {i}['{k}'] was changed (it was {_show(was)}, it is now {_show(now)})")
    return changes


def _show(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor {v.tolist()}"
    return f"a {type(v).__name__} {v!r}"[:120]


def examples_message(changes: list[str], raised: BaseException | None = None) -> str:
    what = "; ".join(changes[:4]) + ("; ..." if len(changes) > 4 else "")
    return (
        f"CausalLMCollator.torch_call changed the caller's examples ({what})"
        + (f", and then raised {type(raised).__name__}: {str(raised)[:300].rstrip('.')}" if raised is not None else "")
        + ". The docstring: the examples belong to the caller and are not modified (a caller may collate them "
        "again, or keep them). Look at CausalLMCollator.torch_call (step7_trainer.py)"
    )


def collate_examples(collator, examples: list[dict]) -> dict:
    """`collator.torch_call(examples)`; when it raises after changing the caller's examples,
    the failure names that change (the error itself is a symptom of it: e.g. labels put into
    the examples make the stock collator's padding fail with "excessive nesting")."""
    before = snapshot_examples(examples)
    try:
        return not_implemented_guard(collator.torch_call, examples)
    except Exception as e:  # noqa: BLE001 - reported as a diagnosis when the examples changed
        changes = example_changes(before, examples)
        if not changes:
            raise
        error = e
    pytest.fail(examples_message(changes, error), pytrace=False)


# -------------------------------------------------------------- training_arguments


def optimisation_mistakes(trainer, learning_rate: float, warmup_steps: int, steps: int) -> list[str]:
    """What the Trainer built from training_arguments does against the loop's optimisation:
    torch's AdamW, and a learning rate at step 0 that follows `warmup_steps` (the peak when it
    is 0, peak / warmup_steps after a warm-up of that many steps)."""
    try:
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate may wrap it
        lines = []
        if not isinstance(opt, torch.optim.AdamW):
            lines.append(f"the Trainer optimises with {type(opt).__name__}, not torch's AdamW (the loop's optimizer)")
        lrs = []
        with warnings.catch_warnings():  # stepping the schedule alone is the point here
            warnings.filterwarnings("ignore", message="Detected call of")
            for _ in range(2):
                lrs.append(opt.param_groups[0]["lr"])
                trainer.lr_scheduler.step()
        # HF's warm-up: lr(t) = peak * t / warmup_steps for t < warmup_steps, then the decay from the peak.
        if warmup_steps == 0:
            ok = math.isclose(lrs[0], learning_rate, rel_tol=1e-3)
        else:
            ok = lrs[0] == 0 and math.isclose(lrs[1], learning_rate / warmup_steps, rel_tol=1e-3)
        if not ok:
            lines.append(f"with warmup_steps={warmup_steps} and learning_rate={learning_rate:g}, the Trainer's "
                         f"learning rate at steps 0 and 1 is {lrs[0]:.3g}, {lrs[1]:.3g}: "
                         f"{warmup_story(lrs, learning_rate)}, not the warm-up of the given warmup_steps")
        return lines
    except Exception:  # noqa: BLE001 - a diagnosis only
        return []


def warmup_story(lrs: list[float], peak: float) -> str:
    """What a learning rate that starts at lrs[0], lrs[1] says about the warm-up it follows."""
    if lrs[0] == 0 and lrs[1] > 0:
        return f"a linear warm-up of {peak / lrs[1]:.0f} steps"
    if lrs[0] == 0:
        return "the learning rate stays 0"
    if math.isclose(lrs[0], peak, rel_tol=1e-3):
        return "it starts at the peak, with no warm-up"
    return f"it starts at {lrs[0] / peak:.3g} of the peak"
