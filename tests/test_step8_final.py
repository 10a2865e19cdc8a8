"""Step 8, graded: your whole pipeline trains a model below the smoke tier's threshold.

These are the kata's only long tests (about 2 minutes each on 2 CPU cores). They run
once steps 1-6 are finished, and skip with "waiting on step N" before that. Both results
(the loop's and the Trainer's) are cached in `.kata_cache/final/` against a hash of the
step files they run (steps 1-8; the Trainer's includes step 7), so re-running unchanged
code does not retrain. The graded loss and its threshold are recorded
(`record_property`), so the grader's table shows them ("loss 6.35 < 6.8"). Thresholds and their calibration:
`kata/presets.py`, `benchmarks/CALIBRATION.md`.
"""
from __future__ import annotations

import pytest
import torch

from kata.final import first_unfinished_step, grade_final, trainer_loss
from kata.presets import preset
from kata.solution import load, solution_name
from kata.tokenizer import load_tokenizer

# The Trainer starts from other random weights and another batch order (it seeds and
# samples its own way) and its cosine schedule ends at 0 rather than min_lr, so the two
# runs differ like two seeds of one loop. Calibration (benchmarks/CALIBRATION.md): the
# reference loop over seeds 0-2 spread 0.12 in validation loss; the Trainer landed 0.05
# from the loop on seed 0. 0.25 is twice the seed spread; a 10x learning-rate slip in
# training_arguments costs far more than that.
TRAINER_MARGIN = 0.25


def _require_steps_1_to_6() -> None:
    unfinished = first_unfinished_step()
    if unfinished is not None:
        n, where = unfinished
        pytest.skip(f"waiting on step {n}: {where} still raises NotImplementedError; "
                    f"the final run trains your steps 1-6 together once they are all done")


@pytest.fixture(scope="module")
def smoke_result() -> dict:
    _require_steps_1_to_6()
    return grade_final(tier="smoke", quiet=True)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_smoke_run_reaches_the_threshold(smoke_result: dict, record_property) -> None:
    r = smoke_result
    if r["loss"] is not None:
        record_property("loss", round(float(r["loss"]), 4))
        record_property("threshold", float(r["threshold"]))
    record_property("cached", bool(r.get("cached")))
    if r["status"] == "error":
        pytest.fail(f"the smoke run crashed: {r['message']}. Run it yourself to see the traceback: "
                    f"python -m kata.final --tier smoke --solution {solution_name()} --no-cache", pytrace=False)
    assert r["status"] == "passed", (
        f"{r['message']}. The loss curve, samples and summary of this run are in {r['out_dir']}/ "
        f"(loss.png, samples.txt, summary.json)."
    )


def _require_step_7() -> None:
    s7 = load("step7_trainer")
    s1 = load("step1_embeddings")
    try:
        s7.hf_config(s1.GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=8))
        s7.training_arguments("/tmp/kata-probe", max_steps=1)
        s7.CausalLMCollator(load_tokenizer("bundled"))([{"input_ids": torch.tensor([1, 2, 3])}])
    except NotImplementedError as e:
        pytest.skip(f"waiting on step 7: {e}".splitlines()[0])
    except Exception:  # noqa: BLE001 - a broken step 7 shows up in the run itself
        pass


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_trainer_run_matches_the_manual_loop(smoke_result: dict, record_property) -> None:
    _require_step_7()
    manual = smoke_result["loss"]
    if manual is None:
        pytest.skip(f"the manual loop did not produce a loss: {smoke_result['message']}")
    seed = preset("smoke").seed
    trainer = trainer_loss(tier="smoke")
    hf = trainer["loss"]
    record_property("trainer_loss", round(float(hf), 4))
    record_property("cached", bool(trainer.get("cached")))
    assert abs(hf - manual) <= TRAINER_MARGIN, (
        f"on the smoke tier (same data, shape, hyper-parameters, seed {seed}) the Trainer reached validation "
        f"loss {hf:.3f} and your manual loop {manual:.3f}; they should agree within {TRAINER_MARGIN}. "
        + ("The Trainer learns much less: check training_arguments (the lab's learning rate, warm-up and cosine "
           "schedule, overrides passed through) and that CausalLMCollator's labels equal the input ids outside "
           "padding (step7_trainer.py)."
           if hf > manual else
           "The Trainer does much better than your loop: check your loop's schedule (the scheduled lr before "
           "every update) and clipping (run_training, step8_pretrain.py).")
    )


# ---- the grading machinery itself (fast; uses the reference, so not in the handout)

# No training happens in these: a small model and 2 evaluation batches keep them to seconds.
CHEAP = dict(n_layer=1, n_embd=32, block_size=32, eval_batches=2, samples=1, sample_tokens=2)

@pytest.mark.needs_reference
def test_verdict_uses_the_kata_loss_not_the_learners(monkeypatch) -> None:
    """A model that copies its input scores ~0 under an unshifted loss; the grade must not."""
    from kata.final import heldout_loss

    V = 16
    chunks = torch.randint(0, V, (8, 12), generator=torch.Generator().manual_seed(0))

    class Oracle(torch.nn.Module):
        def __init__(self, shift: int) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.shift = shift

        def forward(self, ids):
            # 30 * one-hot: softmax puts ~1 - 1e-12 on that token.
            target = ids.roll(-self.shift, dims=1) if self.shift else ids
            return torch.nn.functional.one_hot(target, V).float() * 30 + self.w, None

    # Predicting the next token is perfect under next-token scoring; copying is ~30 nats off.
    assert heldout_loss(Oracle(1), chunks, 4) < 1e-6, "a perfect next-token predictor must score ~0"
    assert heldout_loss(Oracle(0), chunks, 4) > 10, "a model that copies its input must not score well"


@pytest.mark.needs_reference
def test_lab_tier_on_cpu_needs_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the lab tier really runs here (nox -s final)")
    r = grade_final("reference", "lab")
    assert r["status"] == "needs-gpu" and "nox -s final" in r["message"], r


@pytest.mark.needs_reference
def test_a_loop_that_does_not_train_fails_with_the_verdict(monkeypatch, tmp_path) -> None:
    import reference.step8_pretrain as s8

    monkeypatch.setattr(s8, "run_training", lambda model, optimizer, run, start_step=0: None)
    r = grade_final("reference", "smoke", use_cache=False, out_dir=str(tmp_path), **CHEAP)
    assert r["status"] == "failed", r
    assert f"threshold {r['threshold']:g}" in r["message"] and "FAIL" in r["message"], r["message"]
    assert r["loss"] > 10, f"an untrained model should score about ln(50257) = 10.8, got {r['loss']}"


@pytest.mark.needs_reference
def test_an_unfinished_loop_fails_naming_run_training(monkeypatch, tmp_path) -> None:
    import reference.step8_pretrain as s8

    def stub(model, optimizer, run, start_step=0):
        raise NotImplementedError("step 8: write run_training")

    monkeypatch.setattr(s8, "run_training", stub)
    r = grade_final("reference", "smoke", use_cache=False, out_dir=str(tmp_path), **CHEAP)
    assert r["status"] == "failed" and "run_training" in r["message"], r
