"""Bonus 2: `Batch` — shifted target, source padding mask, target mask (causal AND padding), ntokens.

Masks are boolean and compared exactly: there is no tolerance to give.
The learner's code runs only in the probes (tests/_probes_bonus2.py): the tests get its
masks and the Batch's attributes back as data.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import _probes_bonus2 as P
from _support import probe
from strategies import expect

PAD = 0

# Hand-made batch: two targets of different lengths, [BOS=1, ..., EOS=2, PAD...].
SRC = torch.tensor([[5, 6, 7, 2, 0], [8, 2, 0, 0, 0]])
TGT = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 2, 0, 0, 0]])
# tgt_in = TGT[:, :-1] = [[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]]: row 1 has padded keys 3, 4.
TGT_MASK = torch.tensor(
    [
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]],
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]],
    ],
    dtype=torch.bool,
)


class NotData:
    """A value of the learner's that is not data, as the probe described it (`P.returned`): its
    repr() reads as the object's did, and reading a tensor's attribute off it fails as it did."""

    def __init__(self, described: dict) -> None:
        self.type_name, self.text = described[P.NOT_DATA], described["repr"]

    def __repr__(self) -> str:
        return self.text

    def __getattr__(self, name: str):
        raise AttributeError(f"{self.type_name!r} object has no attribute {name!r}")


def seen_value(x: object) -> object:
    """A probe's report of a learner's value: the data itself, or a `NotData` stand-in."""
    return NotData(x) if isinstance(x, dict) and P.NOT_DATA in x else x


def own(t: torch.Tensor | None) -> torch.Tensor | None:
    """A copy of the test's tensor for the learner's code, as a separated grading sends one: a
    solution that writes into its argument fails the in-place check in the probe, and the
    test's own constants (SRC, TGT) stay as they are for the tests after it."""
    return None if t is None else t.clone()


def call(name: str, ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The learner's mask function `name(ids, pad_id)`, which must return a tensor."""
    got = seen_value(probe(P.mask, name, own(ids), pad_id))
    kind = got.type_name if isinstance(got, NotData) else type(got).__name__
    expect(isinstance(got, torch.Tensor), f"{name} should return a torch.Tensor, got {kind}: {got!r}"[:500])
    return got


class SeenBatch:
    """The learner's Batch as the probe saw it (`P.batch`): `b.src`, `b.ntokens`, ... read as the
    object's attributes did (an attribute it lacks raises AttributeError), `b.type_name("ntokens")`
    is the value's type ("builtins.int") and `b.shown("ntokens")` its repr."""

    def __init__(self, seen: dict) -> None:
        self._seen = seen

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self._seen:
            raise AttributeError(f"'Batch' object has no attribute {name!r}")
        return seen_value(self._seen[name]["value"])

    def type_name(self, name: str) -> str:
        return self._seen[name]["type"] if name in self._seen else "(missing)"

    def shown(self, name: str) -> str:
        return self._seen[name]["repr"] if name in self._seen else "(missing)"


def make_batch(src: torch.Tensor, tgt: torch.Tensor | None = None, pad_id: int = PAD) -> SeenBatch:
    """The learner's `Batch(src, tgt, pad_id=pad_id)`, as `SeenBatch`."""
    return SeenBatch(probe(P.batch, own(src), own(tgt), pad_id))


def describe_mask_mistake(got: torch.Tensor, tgt_in: torch.Tensor) -> str:
    """Name the likely mistake by comparing with the usual wrong masks."""
    T = tgt_in.size(1)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    keys = (tgt_in != PAD).unsqueeze(-2)
    wrong = {
        "the OR of the causal and padding masks: a query may attend only where BOTH allow it, so every padded "
        "key and every future key must be False": keys | causal,
        "only the causal mask: padded keys are still attended to": causal.expand_as(got),
        "only the padding mask: every query sees the future": keys.expand_as(got),
        "the upper triangle (each query sees the future, not the past): query t may attend to keys s <= t":
            keys & torch.ones(T, T, dtype=torch.bool).triu(),
        "padding applied to the queries (rows) instead of the keys (columns): a padded position must not be "
        "READ by anyone (its column is False)": (tgt_in != PAD).unsqueeze(-1) & causal,
    }
    for text, m in wrong.items():
        if got.shape == m.shape and torch.equal(got, m):
            return f"it equals {text}"
    return ("query t may attend to key s iff s <= t AND tgt_in[b, s] != pad. Look at target_mask (bonus2_batch.py); "
            "stuck? `nox -s hint -- bonus 2`")


def test_src_padding_mask_marks_real_tokens_with_a_query_axis_of_one():
    got = call("src_padding_mask", SRC, PAD)
    want = torch.tensor([[[1, 1, 1, 1, 0]], [[1, 1, 0, 0, 0]]], dtype=torch.bool)
    assert got.dtype == torch.bool and got.shape == want.shape, (
        f"src_padding_mask of a (2, 5) source should be a (2, 1, 5) bool tensor (the 1 broadcasts over the "
        f"queries); got {tuple(got.shape)} {got.dtype}"
    )
    if torch.equal(got, ~want):
        pytest.fail("src_padding_mask is inverted: True must mean 'a real token, attend to it', False 'padding'",
                    pytrace=False)
    assert torch.equal(got, want), f"src_padding_mask of {SRC.tolist()}: expected {want.int().tolist()}, got {got.int().tolist()}"


def test_target_mask_is_the_and_of_causal_and_padding():
    tgt_in = TGT[:, :-1]
    got = call("target_mask", tgt_in, PAD)
    assert got.dtype == torch.bool and got.shape == TGT_MASK.shape, (
        f"target_mask of a (2, 5) decoder input should be (2, 5, 5) bool (batch, query, key); "
        f"got {tuple(got.shape)} {got.dtype}"
    )
    if not torch.equal(got, TGT_MASK):
        pytest.fail(
            f"target_mask of tgt_in={tgt_in.tolist()}:\nexpected {TGT_MASK.int().tolist()}\n"
            f"got      {got.int().tolist()}\n{describe_mask_mistake(got, tgt_in)}",
            pytrace=False,
        )


@given(B=st.integers(1, 4), T=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_target_mask_matches_its_definition_on_random_padded_batches(B, T, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    tgt_in = torch.randint(3, 20, (B, T), generator=g)
    tgt_in[:, 0] = 1  # BOS first: never padding
    tgt_in[torch.arange(T).unsqueeze(0) >= lengths.unsqueeze(1)] = PAD
    got = call("target_mask", tgt_in, PAD)
    want = torch.tensor(
        [[[s <= t and int(tgt_in[b, s]) != PAD for s in range(T)] for t in range(T)] for b in range(B)],
        dtype=torch.bool,
    )
    if got.shape != want.shape or not torch.equal(got, want):
        pytest.fail(
            f"target_mask of tgt_in={tgt_in.tolist()} is wrong: {describe_mask_mistake(got, tgt_in)}"
            if got.shape == want.shape else
            f"target_mask of a ({B}, {T}) input must be ({B}, {T}, {T}); got {tuple(got.shape)}",
            pytrace=False,
        )


def test_batch_shifts_the_target_right_for_the_input_and_left_for_the_output():
    b = make_batch(SRC, TGT)
    assert torch.equal(b.src, SRC), "Batch.src must be the source ids unchanged"
    assert b.tgt_in is not None and b.tgt_out is not None, "Batch(src, tgt) must set tgt_in and tgt_out"
    if b.tgt_in.shape == TGT.shape or b.tgt_out.shape == TGT.shape:
        pytest.fail(
            f"tgt_in / tgt_out have the full target's shape {tuple(TGT.shape)}: the target is not shifted. "
            f"tgt_in is what the decoder reads (BOS first) and tgt_out what each position must predict (the "
            f"token after it), each one column shorter than tgt; without the shift the decoder learns to copy "
            f"its input. Look at Batch.__init__ (bonus2_batch.py)",
            pytrace=False,
        )
    if torch.equal(b.tgt_out, TGT[:, :-1]):
        pytest.fail("tgt_out equals the decoder's own input: position t would be trained to output the token it "
                    "reads, not the one after it", pytrace=False)
    assert torch.equal(b.tgt_in, TGT[:, :-1]), (
        f"tgt_in of tgt={TGT.tolist()} should be {TGT[:, :-1].tolist()} (BOS first, last column dropped); "
        f"got {b.tgt_in.tolist()}"
    )
    assert torch.equal(b.tgt_out, TGT[:, 1:]), (
        f"tgt_out of tgt={TGT.tolist()} should be {TGT[:, 1:].tolist()} (token t+1 for position t); "
        f"got {b.tgt_out.tolist()}"
    )


def test_batch_masks_are_the_padding_and_target_masks():
    b = make_batch(SRC, TGT)
    want_src = (SRC != PAD).unsqueeze(-2)
    assert b.src_mask.shape == want_src.shape and torch.equal(b.src_mask, want_src), (
        f"Batch.src_mask should be src_padding_mask(src): {want_src.int().tolist()}, got {b.src_mask.int().tolist()}"
    )
    assert b.tgt_mask.shape == TGT_MASK.shape and torch.equal(b.tgt_mask, TGT_MASK), (
        f"Batch.tgt_mask should be target_mask(tgt_in) — of the decoder INPUT, (2, 5, 5): "
        f"{TGT_MASK.int().tolist()}; got {b.tgt_mask.int().tolist()}"
    )


def test_ntokens_counts_the_real_tokens_the_loss_is_taken_on():
    b = make_batch(SRC, TGT)
    # tgt_out = [[5, 6, 7, 2, 0], [8, 2, 0, 0, 0]]: 4 + 2 real tokens.
    want = 6
    got = int(b.ntokens)
    hints = {
        8: "that counts the real tokens of tgt_in or of the unshifted target (BOS included), not of tgt_out",
        10: "that counts every position of tgt_out, padding included",
        12: "that counts every position of the whole unshifted target",
    }
    assert got == want, (
        f"ntokens should be the number of real tokens of tgt_out = {TGT[:, 1:].tolist()}, i.e. {want}; got {got}. "
        + hints.get(got, "the loss is divided by it, so it must count what the loss is summed over")
    )
    expect(b.type_name("ntokens") == "builtins.int", (
        f"ntokens has the right value but is a {b.type_name('ntokens')}, not a "
        f"Python int (the docstring's type; a bool is not a count either): the loss and the logs divide by it, "
        f"and a tensor count turns every number derived from it into a tensor (on the batch's device)"))


def test_inference_batch_has_masks_but_no_target():
    b = make_batch(SRC)
    assert b.tgt_in is None and b.tgt_out is None and b.tgt_mask is None, (
        "Batch(src) with no target (inference) must leave tgt_in, tgt_out and tgt_mask as None"
    )
    assert torch.equal(b.src_mask, (SRC != PAD).unsqueeze(-2)), "Batch(src).src_mask must still be set"
    expect(b.type_name("ntokens") == "builtins.int" and b.ntokens == 0, (
        f"Batch(src) with no target must have ntokens = 0, a Python int (nothing to score); got {b.shown('ntokens')}"))


# Another padding id: 9 pads, and 0 is a real token. The padding layout is SRC's and TGT's.
PAD9 = 9
SRC9 = torch.tensor([[0, 6, 7, 2, 9], [8, 2, 9, 9, 9]])
TGT9 = torch.tensor([[1, 0, 6, 7, 2, 9], [1, 8, 2, 9, 9, 9]])


def test_masks_and_counts_use_the_pad_id_they_are_given():
    want_src = torch.tensor([[[1, 1, 1, 1, 0]], [[1, 1, 0, 0, 0]]], dtype=torch.bool)
    hint = ("with pad_id=9, the token 9 is the padding and the token 0 a real token (every id is a valid pad_id): "
            "the masks and the count must use the pad_id passed in, not the default 0")
    got = call("src_padding_mask", SRC9, PAD9)
    expect(got.shape == want_src.shape and torch.equal(got, want_src), (
        f"src_padding_mask({SRC9.tolist()}, pad_id=9): expected {want_src.int().tolist()}, got "
        f"{got.int().tolist()}; {hint}"))
    got = call("target_mask", TGT9[:, :-1], PAD9)
    expect(got.shape == TGT_MASK.shape and torch.equal(got, TGT_MASK), (
        f"target_mask({TGT9[:, :-1].tolist()}, pad_id=9): expected {TGT_MASK.int().tolist()}, got "
        f"{got.int().tolist()}; {hint}"))
    b = make_batch(SRC9, TGT9, pad_id=PAD9)
    for name, value, want in (("src_mask", b.src_mask, want_src), ("tgt_mask", b.tgt_mask, TGT_MASK)):
        expect(isinstance(value, torch.Tensor) and value.shape == want.shape and torch.equal(value, want), (
            f"Batch(src, tgt, pad_id=9).{name} should be {want.int().tolist()}, got "
            f"{value.int().tolist() if isinstance(value, torch.Tensor) else value!r}: the Batch builds its masks "
            f"with its own pad_id, not the functions' default one. {hint}"))
    expect(b.ntokens == 6 and b.pad_id == PAD9, (
        f"Batch(src, tgt, pad_id=9): expected ntokens 6 (the real tokens of tgt_out "
        f"{TGT9[:, 1:].tolist()}) and pad_id 9, got ntokens {b.shown('ntokens')} and pad_id {b.shown('pad_id')}. "
        f"{hint}"))
