"""Shared hypothesis strategies and small deterministic helpers for the step tests.

Strategies return plain data (dicts, ints, tensors), never a solution's objects, so the
same drawn example can be fed to the student's code and to a `@recorded` reference
function alike. Sizes are small on purpose: each step's tests must run in seconds on
2 CPU cores.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import strategies as st

# Tiny model shapes: a vocabulary of a few hundred at most, a few dozen dims.
SMALL_VOCAB = st.integers(min_value=5, max_value=300)
SEEDS = st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def gpt_configs(
    draw,
    *,
    max_vocab: int = 300,
    max_block: int = 16,
    max_layers: int = 2,
    min_heads: int = 1,
    max_heads: int = 4,
    attn_impls: tuple[str, ...] = ("manual", "sdpa"),
    dropouts: tuple[float, ...] = (0.0, 0.1),
) -> dict:
    """Keyword arguments for `GPTConfig`: a small, valid model shape.

    n_embd is drawn as n_head * head_dim so it is always divisible. Dropout is drawn
    non-zero too: tests run in eval mode, where dropout must be a no-op.
    """
    n_head = draw(st.integers(min_heads, max_heads))
    head_dim = draw(st.integers(2, 8))
    return dict(
        vocab_size=draw(st.integers(5, max_vocab)),
        block_size=draw(st.integers(2, max_block)),
        n_layer=draw(st.integers(1, max_layers)),
        n_head=n_head,
        n_embd=n_head * head_dim,
        dropout=draw(st.sampled_from(dropouts)),
        bias=draw(st.booleans()),
        attn_impl=draw(st.sampled_from(attn_impls)),
    )


@st.composite
def token_batches(draw, vocab_size: int, block_size: int, *, min_len: int = 1, max_batch: int = 3) -> torch.Tensor:
    """(B, T) int64 token ids with 1 <= B <= max_batch and min_len <= T <= block_size."""
    B = draw(st.integers(1, max_batch))
    T = draw(st.integers(min(min_len, block_size), block_size))
    g = torch.Generator().manual_seed(draw(SEEDS))
    return torch.randint(0, vocab_size, (B, T), generator=g)


def randn(*shape: int, seed: int, std: float = 1.0) -> torch.Tensor:
    """A deterministic float32 N(0, std²) tensor (its own generator: no global RNG)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * std


def _random_value(name: str, shape: torch.Size, g: torch.Generator, std: float,
                  layer_norms: set[str]) -> torch.Tensor:
    """One parameter's draw (see `random_state`): a LayerNorm weight 1 + N(0, 0.1²), a bias
    N(0, 0.1²), any other weight N(0, std²). One draw of `shape` from `g` whichever it is."""
    owner, _, leaf = name.rpartition(".")
    noise = torch.randn(shape, generator=g)
    if owner in layer_norms and leaf == "weight":
        return 1.0 + 0.1 * noise
    if leaf == "bias":
        return 0.1 * noise
    return std * noise


def module_layout(module: nn.Module) -> dict:
    """A module's parameter layout as plain data, for `random_state_from_layout`: each
    parameter's name and shape (`named_parameters(remove_duplicate=False)` order), the
    name it shares its Parameter object with (a tied matrix), and the LayerNorm modules.
    A probe returns it from the worker; the judge draws the values itself, so the values
    the learner's code is asked about never come from the learner's side."""
    first: dict[int, str] = {}
    params = []
    for name, p in module.named_parameters(remove_duplicate=False):
        params.append((name, tuple(p.shape), first.setdefault(id(p), name)))
    layer_norms = sorted(n for n, m in module.named_modules() if isinstance(m, nn.LayerNorm))
    return {"params": params, "layer_norms": layer_norms}


def random_state_from_layout(layout: dict, seed: int, std: float = 0.2) -> dict[str, torch.Tensor]:
    """`random_state`'s values for a module with this `module_layout`: the same draws in the
    same order, so `random_state_from_layout(module_layout(m), seed, std) == random_state(m, seed, std)`."""
    g = torch.Generator().manual_seed(seed)
    layer_norms = set(layout["layer_norms"])
    state: dict[str, torch.Tensor] = {}
    for name, shape, same_as in layout["params"]:
        state[name] = state[same_as] if same_as != name else _random_value(name, torch.Size(shape), g, std, layer_norms)
    return state


def random_state(module: nn.Module, seed: int, std: float = 0.2) -> dict[str, torch.Tensor]:
    """Deterministic random values for every parameter of `module`, by name.

    Weights ~ N(0, std²) (larger than GPT-2's 0.02 so attention patterns and mistakes
    are visible), biases ~ N(0, 0.1²), LayerNorm weights ~ 1 + N(0, 0.1²). A tied
    parameter (same object under two names) gets one value under both names. Only the
    names and shapes come from `module` (its `__init__` is given scaffolding), so the
    result is the same whoever's solution built it.
    """
    g = torch.Generator().manual_seed(seed)
    layer_norms = {n for n, m in module.named_modules() if isinstance(m, nn.LayerNorm)}
    state: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            state[name] = state[seen[id(p)]]
            continue
        seen[id(p)] = name
        state[name] = _random_value(name, p.shape, g, std, layer_norms)
    return state


def name_the_mistake(actual: torch.Tensor, candidates: dict[str, torch.Tensor], default: str,
                     atol: float = 1e-5, rtol: float = 1e-4) -> str:
    """The hint for the first known wrong answer `actual` matches, else `default`.

    `candidates` maps a hint ("the position embedding is missing") to what a solution
    with that mistake would return, computed by the test itself.
    """
    for hint, wrong in candidates.items():
        if wrong.shape == actual.shape and torch.allclose(actual.double(), wrong.double(), atol=atol, rtol=rtol, equal_nan=True):
            return f"Likely mistake: {hint}"
    return default


def expect(condition: bool, message: str) -> None:
    """Fail with just `message` (no assertion introspection dumping whole tensors)."""
    if not condition:
        pytest.fail(message, pytrace=False)


@pytest.fixture
def one_thread():
    """Run a test's tiny tensors on one thread, then restore the count.

    On these sizes an intra-op thread pool costs more than it saves, and on a busy
    2-core machine its synchronisation makes each small matmul ~50 ms instead of
    ~0.05 ms. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def dropout_mistake(train: torch.Tensor, eval_: torch.Tensor, p: float, where: str, fix: str) -> str | None:
    """What is wrong with a train-mode output whose eval-mode output is `eval_`, if it
    should be `Dropout(p)` applied to it; None if it is.

    Behaviour only, for any placement-equivalent code and any RNG use: a fraction ~p of
    the entries is exactly 0, and every other entry is the eval value / (1 - p).
    `eval_` must have no zeros (random weights: probability 0). With N entries the
    zero fraction's standard error is sqrt(p(1-p)/N); the tolerance is 7 of them.
    """
    t, e = train.detach().double(), eval_.detach().double()
    zero = t == 0
    frac = zero.double().mean().item()
    tol = 7 * (p * (1 - p) / t.numel()) ** 0.5
    kept = ~zero
    scaled = torch.isclose(t[kept], e[kept] / (1 - p), rtol=1e-5, atol=1e-6)
    if torch.equal(t, e):
        return (f"{where} in train mode equals the eval-mode output exactly: dropout (p={p}) is missing or "
                f"never active in training. {fix}")
    if abs(frac - p) > tol:
        return (f"{where} in train mode has {frac:.1%} of its entries exactly 0, expected about p = {p:.0%} "
                f"(dropout on that output zeroes each entry with probability p): "
                + ("no entry is zeroed, so dropout is applied somewhere else (or to only part of the sum). "
                   if frac < tol else "the dropout probability is not config.dropout, or dropout is applied twice. ")
                + fix)
    if bool(scaled.all()):
        return None
    unscaled = torch.isclose(t[kept], e[kept], rtol=1e-5, atol=1e-6)
    if bool(unscaled.all()):
        return (f"{where} in train mode keeps its entries unscaled: inverted dropout divides what it keeps by "
                f"1 - p = {1 - p} (nn.Dropout does), so the expected value equals the eval output. {fix}")
    return (f"{where} in train mode: the entries that are not zeroed should be the eval-mode values / (1 - p), "
            f"but {int((~scaled).sum())} of {int(kept.sum())} are not: dropout is applied somewhere else too, or "
            f"to only part of it. {fix}")


# What the given `__init__`s tie. `random_state` ties by object identity, so a solution
# whose own `tie_weights` is wrong (a copy, a second Parameter, no tie) would get other
# values, and a `@recorded` call keyed by them would meet no stored answer instead of
# grading the code. These ties are by name: the given layout fixes them.
TIED_PARAMETERS = {"TinyGPT": {"lm_head.weight": "embed.token.weight"}}


def random_state_by_name(module: nn.Module, seed: int, std: float = 0.2,
                         tied: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """`random_state`'s values, decided by the parameters' names and shapes only.

    Every parameter name of `module` (`named_parameters(remove_duplicate=False)`, so a
    tied matrix is listed under both names) gets a draw in that order, except the names
    in `tied`, which take the values of the name they map to (`{"lm_head.weight":
    "embed.token.weight"}`: the output layer shows the token embedding's values). Which
    Parameter objects the module shares never matters, so a module built by the given
    `__init__` yields the same state whoever's step 1 tied (or failed to tie) it; for a
    correctly tied module it equals `random_state(module, seed, std)`.
    """
    tied = tied or {}
    g = torch.Generator().manual_seed(seed)
    layer_norms = {n for n, m in module.named_modules() if isinstance(m, nn.LayerNorm)}
    params = list(module.named_parameters(remove_duplicate=False))
    names = {name for name, _ in params}
    for name, source in tied.items():
        if name not in names or source not in names:
            raise ValueError(f"random_state_by_name: {module.__class__.__name__} has no parameter {name!r} or "
                             f"{source!r} to tie; its names: {sorted(names)}")
    state: dict[str, torch.Tensor] = {}
    for name, p in params:
        if name in tied or name in state:
            continue
        state[name] = _random_value(name, p.shape, g, std, layer_norms)
    for name, source in tied.items():
        state[name] = state[source]
    return {name: state[name] for name, _ in params}
