"""Scale-out: the step 8 run and the step 7 Trainer under `torchrun`, 2 CPU processes over gloo.

What must hold (docs/scale-out.md shows the same commands):
- 2 ranks x 4 rows follow the same loss trajectory as 1 rank x 8 rows (`--batch-size`
  is the global batch), with the same seed and data;
- only rank 0 logs and writes files; the logged tokens count the global batch;
- the checkpoint the 2-rank run writes is the plain model (no DDP `module.` prefix); it
  resumes on 1 rank exactly as the 1-rank run's checkpoint resumes on 2 ranks;
- the Trainer entry point runs unchanged under torchrun and matches 1 process.

Why the runs can agree at all: each rank's loss is the mean over its 4 rows and DDP
averages the ranks' gradients, which is the gradient of the mean over all 8 rows (every
row has the same number of tokens); clipping and AdamW then see identical gradients.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kata.paths import REPO_ROOT
from _support import oracle

pytestmark = [pytest.mark.infra, pytest.mark.needs_reference]

# The tiny run of docs/scale-out.md ("Check it on a laptop"): 1 layer, 32 dims, 10 steps.
# 1.6M parameters, nearly all the 50257 x 32 embedding; ~5 s of training on 2 cores.
TINY = [
    "--preset", "smoke", "--device", "cpu", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
    "--block-size", "32", "--max-steps", "10", "--dropout", "0", "--batch-size", "8",
    "--log-interval", "1", "--eval-interval", "5", "--eval-batches", "2", "--warmup-steps", "2",
    "--samples", "1", "--sample-tokens", "5", "--threshold", "none",  # 10 steps cannot pass a verdict
]
# fp32 on CPU. The only difference between the runs is the order of float additions
# (gloo sums two half-batch gradients, one process sums eight rows), ~1e-7 relative per
# step; measured max |loss difference| over 10 steps: 3e-6. 1e-4 keeps 30x headroom
# and is still 100x smaller than one step's loss change (~1e-2), so a rank that trains
# on the wrong rows, or a loss logged from one rank only, cannot pass.
LOSS_ATOL = 1e-4
# The same rounding in the weights after 10 steps of AdamW (lr 3e-3 per step).
WEIGHT_ATOL = 1e-4


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    return env


def _torchrun(module: str, args: list[str], nproc: int = 2, timeout: float = 90, **env: str) -> str:
    """`torchrun --standalone --nproc_per_node N -m module args` (torchrun is torch.distributed.run)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", module, *args]
    return _run(cmd, timeout, **env)


def _run(cmd: list[str], timeout: float, **env: str) -> str:
    p = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(**env), capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        pytest.fail(f"`{' '.join(cmd[1:])}` exited with {p.returncode}; its output ends with:\n"
                    f"{(p.stdout + p.stderr)[-3000:]}", pytrace=False)
    return p.stdout


def _one_rank(args: list[str]) -> None:
    """`python -m reference.step8_pretrain args`, in this process (saves a Python start-up)."""
    with torch.random.fork_rng():  # the run seeds the global RNG; leave other tests' alone
        rc = oracle("step8_pretrain").main(args)
    assert rc == 0, f"python -m reference.step8_pretrain {' '.join(args)} exited with {rc}"


def _losses(out_dir: Path) -> dict[tuple[int, str], tuple[float, int]]:
    """(step, split) -> (loss, tokens) from loss.csv; fails on a row written twice."""
    rows: dict[tuple[int, str], tuple[float, int]] = {}
    with (out_dir / "loss.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            key = (int(r["step"]), r["split"])
            assert key not in rows, (
                f"{out_dir / 'loss.csv'} has step {key[0]} ({key[1]}) twice: more than one rank is writing "
                f"the log. Only rank 0 may log (Run.log_train / Run.evaluate check self.rank)."
            )
            rows[key] = (float(r["loss"]), int(r["tokens"]))
    return rows


def _compare(ddp: dict, single: dict, what: str) -> float:
    assert ddp.keys() == single.keys(), (
        f"{what}: the 2-rank log has rows {sorted(ddp.keys() - single.keys())} the 1-rank log lacks and "
        f"lacks {sorted(single.keys() - ddp.keys())}: both runs must log and evaluate at the same steps"
    )
    worst = 0.0
    for key in sorted(single):
        (a, ta), (b, tb) = ddp[key], single[key]
        assert ta == tb, (f"{what}: step {key[0]} ({key[1]}) counts {ta} tokens on 2 ranks but {tb} on 1: "
                          f"the log must count the global batch (batch_size x block_size per step)")
        assert abs(a - b) <= LOSS_ATOL, (
            f"{what}: at step {key[0]} ({key[1]}) 2 ranks x 4 rows logged loss {a:.6f}, 1 rank x 8 rows {b:.6f} "
            f"(|diff| {abs(a - b):.2g} > {LOSS_ATOL}). Look at Run.batches (each rank its own contiguous "
            f"rows of the same global batch), Run.log_train (all-reduce mean) and the DDP wrap in pretrain()."
        )
        worst = max(worst, abs(a - b))
    return worst


@pytest.mark.slow
@pytest.mark.timeout(240)  # ~40 s of CPU; the margin is for a 2-core machine shared with other jobs
def test_two_ranks_follow_one_rank_and_checkpoints_resume_across_world_sizes(tmp_path, capsys):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    # An empty cache, as on a fresh checkout: both ranks build the tokenizer and the
    # token cache at the same moment (this once failed CI: a shared temp file name).
    fresh = tmp_path / "fresh-cache"
    out = _torchrun("reference.step8_pretrain", [*TINY, "--out-dir", str(ddp)], KATA_CACHE_DIR=str(fresh))
    leftovers = sorted(p.name for p in fresh.rglob("*") if ".tmp" in p.name)
    assert (fresh / "tokenizer" / "gpt2-bundled.json").exists() and not leftovers, (
        f"2 ranks building an empty cache at once should leave complete files and no temp files; left: {leftovers}"
    )
    assert out.count("data parallel: 2 ranks x 4 rows = global batch 8") == 1, (
        f"expected rank 0 alone to announce the 2-rank split once; the output was:\n{out[-2000:]}"
    )
    _one_rank([*TINY, "--out-dir", str(single)])

    worst = _compare(_losses(ddp), _losses(single), "10 steps from scratch")
    assert json.loads((ddp / "summary.json").read_text())["steps"] == 10

    a = torch.load(ddp / "checkpoint.pt", map_location="cpu", weights_only=False)
    b = torch.load(single / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert list(a["model"]) == list(b["model"]), (
        f"the 2-rank checkpoint's weight names {list(a['model'])[:3]}... differ from 1 rank's "
        f"{list(b['model'])[:3]}...: save the unwrapped model (a `module.` prefix means DDP's wrapper was saved)"
    )
    assert a["step"] == b["step"] == 10
    for name in b["model"]:
        diff = (a["model"][name] - b["model"][name]).abs().max().item()
        assert diff <= WEIGHT_ATOL, f"weight {name} after 10 steps: 2 ranks vs 1 rank differ by {diff:.2g} > {WEIGHT_ATOL}"

    # Swap world sizes and run 4 more steps (the LR schedule now ends at 14): the 2-rank
    # checkpoint resumed on 1 rank must continue like the 1-rank checkpoint on 2 ranks.
    more = [*TINY, "--max-steps", "14", "--resume"]
    _one_rank([*more, "--out-dir", str(ddp)])
    out = _torchrun("reference.step8_pretrain", [*more, "--out-dir", str(single)])
    assert "resumed from" in out and "at step 10" in out, f"the 2-rank run did not report resuming:\n{out[-2000:]}"
    resumed = _losses(ddp)
    assert (14, "train") in resumed and (11, "train") in resumed, f"the resumed run logged only steps {sorted(resumed)}"
    worst = max(worst, _compare(resumed, _losses(single), "2-rank checkpoint resumed on 1 rank vs 1-rank checkpoint on 2"))
    with capsys.disabled():  # the figure the docs and the issue quote
        print(f"\n[distributed] max |loss(2 ranks x 4) - loss(1 rank x 8)| over 14 steps: {worst:.2g}")


def test_ranks_split_each_global_batch_into_contiguous_rows():
    """Run.batches on rank r of N yields rows [r*B/N, (r+1)*B/N) of the 1-rank batch."""
    from kata.presets import preset
    from kata.pretrain import Run, solution_steps

    steps = solution_steps("reference")
    chunks = torch.arange(40 * 4).view(40, 4)
    cfg = preset("smoke", batch_size=8, seed=3)
    runs = [Run(cfg, {}, torch.device("cpu"), 10, None, chunks, chunks, steps) for _ in range(3)]
    runs[1].rank, runs[1].world_size = 0, 2
    runs[2].rank, runs[2].world_size = 1, 2
    whole, r0, r1 = (list(zip(range(7), r.batches(3))) for r in runs)
    for (step, full), (_, a), (_, b) in zip(whole, r0, r1):
        assert a.shape == b.shape == (4, 4), f"each of 2 ranks should get 4 of the 8 rows, got {tuple(a.shape)}"
        assert torch.equal(torch.cat([a, b]), full), (
            f"batch {step}: rank 0 + rank 1 rows should be the 1-rank batch in order; "
            f"got first tokens {a[:, 0].tolist()} + {b[:, 0].tolist()} vs {full[:, 0].tolist()}"
        )


def test_a_global_batch_that_does_not_split_evenly_is_refused(monkeypatch):
    from kata import distributed
    from kata.presets import preset
    from kata.pretrain import Run, solution_steps

    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    with pytest.raises(ValueError, match="multiple of 4"):
        Run(preset("smoke", batch_size=6), {}, torch.device("cpu"), 10, None,
            torch.zeros(40, 4, dtype=torch.long), torch.zeros(40, 4, dtype=torch.long), solution_steps("reference"))


@pytest.mark.slow
@pytest.mark.timeout(240)  # ~35 s of CPU; the margin is for a 2-core machine shared with other jobs
def test_trainer_entry_point_runs_under_torchrun_and_accelerate_like_one_process(tmp_path):
    from kata.trainer_run import main as trainer_main

    # step 8's flags minus the ones only step 8 has (in-loop evaluation, samples)
    trainer_args = [*TINY[:TINY.index("--eval-interval")], "--eval-batches", "2", "--warmup-steps", "2",
                    "--solution", "reference"]
    _torchrun("kata.trainer_run", [*trainer_args, "--out-dir", str(tmp_path / "torchrun")])
    # docs/scale-out.md's accelerate command on CPU: `--multi_gpu` picks accelerate's DDP
    # launcher (`--cpu` would start a single process); the flags after it keep a user's
    # own accelerate config file from changing the run.
    _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
          "-m", "kata.trainer_run", *trainer_args, "--out-dir", str(tmp_path / "accelerate")], timeout=90)
    # `python -m kata.trainer_run ...` in this process (saves a Python start-up)
    with torch.random.fork_rng():
        assert trainer_main([*trainer_args, "--out-dir", str(tmp_path / "single")]) == 0
    single = json.loads((tmp_path / "single" / "trainer_summary.json").read_text())
    for launcher in ("torchrun", "accelerate"):
        ddp = json.loads((tmp_path / launcher / "trainer_summary.json").read_text())
        assert (ddp["world_size"], ddp["per_device_batch_size"]) == (2, 4), (
            f"under {launcher} with 2 processes the Trainer should see world size 2 and 4 rows per device, got {ddp}"
        )
        assert [s for s, _ in ddp["train_loss"]] == [s for s, _ in single["train_loss"]] == list(range(1, 11))
        for (step, a), (_, b) in zip(ddp["train_loss"], single["train_loss"]):
            assert abs(a - b) <= LOSS_ATOL, (
                f"Trainer step {step} under {launcher}: 2 processes x 4 rows logged {a:.6f}, 1 process x 8 rows "
                f"{b:.6f}: per_device_train_batch_size must be batch_size / world_size (kata/trainer_run.py)"
            )
        assert abs(ddp["val_loss"] - single["val_loss"]) <= LOSS_ATOL, (
            f"validation loss under {launcher} {ddp['val_loss']:.6f} vs 1 process {single['val_loss']:.6f}"
        )
