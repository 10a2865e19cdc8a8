"""Grading step 8, the final run: train the learner's own steps, compare the loss.

`grade_final(solution, tier)` trains the chosen solution's steps 1-6 and 8 through
`kata.pretrain.pretrain` with the tier's preset, measures the validation loss with the
kata's own next-token loss (not the learner's step 4, which could be wrong in the
learner's favour), and compares it with the tier's calibrated threshold
(`kata.presets`, calibration in `benchmarks/CALIBRATION.md`).

Tiers:
- `smoke`: offline corpus, a 2-layer model, a fixed number of steps, well under a
  minute on one CPU core. Runs anywhere (CI, `nox -s check`).
- `lab`: the seed's full run (6L/6H/192, 2 epochs). Needs CUDA; without it the result
  is "needs-gpu" (neither passed nor failed) with the command to run it elsewhere.

Results are cached in `.kata_cache/final/` under a hash of the solution's step files,
the preset and the scaffolding, so re-checking unchanged code does not retrain; so is
step 7's Trainer run on the same tier (`trainer_loss`, in kata/trainer_run.py), which
step 7's grade compares with the reference loop's loss, under a hash of step 7's files.

    python -m kata.final --tier smoke --solution reference
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from kata.paths import REPO_ROOT, atomic_path, cache_dir
from kata.presets import RunConfig, preset
from kata.pretrain import pretrain
from kata.solution import load, solution_name
from kata.unfinished import stub_site

TIERS = ("smoke", "lab")
# Steps the final run executes (step 7, the Trainer, is graded separately).
GRADED_MODULES = (
    "step1_embeddings", "step2_causal_mask", "step3_blocks", "step4_loss",
    "step5_train_loop", "step6_sampler", "step8_pretrain",
)
# The scaffolding the run goes through: a change there can change the loss too.
SCAFFOLDING = ("kata/pretrain.py", "kata/final.py", "kata/presets.py", "kata/corpus.py", "kata/tokens.py",
               "kata/precision.py", "kata/heldout.py")
GPU_COMMAND = "nox -s final  (on a machine with a CUDA GPU; or: python -m kata.final --tier lab)"


# ---------------------------------------------------------------- readiness probe

_STEP_FILE = re.compile(r"step(\d+)_\w+\.py$")


def _probe_calls(solution: str) -> list[tuple[int, object]]:
    """(step, thunk) pairs that touch every function of steps 1-6 on a toy model."""
    s1, s2, s3, s4, s5, s6 = (load(m, solution) for m in GRADED_MODULES[:6])
    tiny = dict(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.0)

    def step1():
        cfg = s1.GPTConfig(**tiny)
        s1.Embeddings(cfg)(torch.zeros(1, 4, dtype=torch.long))
        s1.init_weights(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Embedding(3, 2)), 1)
        s1.tie_weights(torch.nn.Linear(2, 3, bias=False), torch.nn.Embedding(3, 2))

    def step2():
        q = torch.zeros(1, 1, 4, 2)
        s2.masked_attention_scores(q, q, s2.causal_mask(4))

    def step3():
        s3.TinyGPT(s1.GPTConfig(**tiny, attn_impl="manual"))(torch.zeros(1, 4, dtype=torch.long))

    def step4():
        s4.next_token_loss(torch.zeros(1, 4, 32), torch.zeros(1, 4, dtype=torch.long))

    def step5():
        stream = s5.join_documents([[1, 2, 3], [4, 5]], 31)
        chunks = s5.chunk_tokens(stream, 3)
        s5.lr_at(0, 1e-3, 2, 10)
        model = s3.TinyGPT(s1.GPTConfig(**tiny))
        opt = s5.configure_optimizer(model, 1e-3, 0.01)
        s5.train_step(model, chunks[:1], opt, 1.0)
        s5.evaluate(model, chunks, 1)

    def step6():
        s6.sample_next(torch.zeros(1, 32), 1.0, 5)
        s6.crop_context(torch.zeros(1, 10, dtype=torch.long), 8)
        model = s3.TinyGPT(s1.GPTConfig(**tiny))
        s6.generate(model, torch.zeros(1, 2, dtype=torch.long), 2)

    return [(1, step1), (2, step2), (3, step3), (4, step4), (5, step5), (6, step6)]


def _stub_location(exc: BaseException, solution: str) -> tuple[int, str] | None:
    """(step, "exercises/stepN_x.py: Class.method") of the kata stub that raised `exc`, or None
    when `exc` is not one of the kata's stubs (torch's own NotImplementedError, say)."""
    site = stub_site(exc, solution)
    m = _STEP_FILE.search(site[0].name) if site is not None else None
    return (int(m.group(1)), f"{solution}/{site[0].name}: {site[2]}") if m else None


def first_unfinished_step(solution: str | None = None) -> tuple[int, str] | None:
    """(N, what) for the first of steps 1-6 that still raises NotImplementedError, else None.

    Cheap (a toy model, well under a second): every function of steps 1-6 is called
    once in learning order. The step is the one whose file raised, so a finished step 3
    that calls an unfinished step 2 reports step 2. Other errors are left to that
    step's tests and to the run itself.
    """
    solution = solution_name(solution)
    for step, call in _probe_calls(solution):
        try:
            call()
        except Exception as e:  # noqa: BLE001 - a wrong step is its own tests' business
            where = _stub_location(e, solution)
            if where is not None:
                return where
            continue
    return None


# ------------------------------------------------------------------------- cache

def _module_file(solution: str, module: str) -> Path:
    spec = importlib.util.find_spec(f"{solution}.{module}")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{solution}/{module}.py is missing")
    return Path(spec.origin)


def cache_key(solution: str, run: RunConfig, modules: tuple[str, ...] = GRADED_MODULES,
              scaffolding: tuple[str, ...] = SCAFFOLDING) -> str:
    """Hash of the solution's step files, the run settings (threshold aside) and scaffolding."""
    h = hashlib.sha256()
    for m in modules:
        h.update(m.encode() + b"\0" + _module_file(solution, m).read_bytes() + b"\0")
    for rel in scaffolding:
        p = REPO_ROOT / rel
        h.update(rel.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    settings = asdict(replace(run, threshold=None, out_dir=""))
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(torch.__version__.encode())
    h.update(os.environ.get("KATA_PRECISION", "").encode())  # a forced precision trains another model
    return h.hexdigest()[:20]


def _cache_path(solution: str, tier: str, key: str) -> Path:
    return cache_dir() / "final" / f"{solution}-{tier}-{key}.json"


def _cached(path: Path) -> dict | None:
    """The stored result at `path`, or one stored under another solution's name for the same
    key: the key hashes the files' contents, not where they live, so the learner handout's
    copy of the reference (CI grades one) reuses the reference's run instead of training twice."""
    name = path.name.split("-", 1)[1]
    for p in [path, *sorted(path.parent.glob(f"*-{name}"))]:
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return None


# ------------------------------------------------------------------------- grade

def tier_config(tier: str, **overrides) -> RunConfig:
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    run = preset(tier, **overrides)
    if run.threshold is None:
        raise ValueError(f"preset {tier!r} has no threshold: set one in kata/presets.py (see benchmarks/CALIBRATION.md)")
    return run


def _verdict(result: dict) -> dict:
    loss, thr = result["loss"], result["threshold"]
    passed = loss < thr
    result["status"] = "passed" if passed else "failed"
    result["message"] = (
        f"{result['tier']} tier: validation loss {loss:.4f} {'<' if passed else '>='} threshold {thr:g}"
        f" -> {'PASS' if passed else 'FAIL'}"
    )
    own = result.get("own_eval_loss")
    if own is not None and abs(own - loss) > 0.05:
        # 0.05: both evaluate the same batches in fp32; anything larger is a different loss.
        result["message"] += (
            f". Your step 5 evaluate() reported {own:.4f}, the kata's next-token loss is {loss:.4f}: "
            f"check step 4 (logits at t must be scored against the token at t+1)"
        )
    elif not passed:
        result["message"] += (
            ". A correct solution lands well below the threshold (benchmarks/CALIBRATION.md): check the "
            "GPT-2 init (std 0.02, embeddings too), the learning-rate schedule (lr_at/set_lr) and clipping"
        )
    return result


def grade_final(
    solution: str | None = None,
    tier: str = "smoke",
    *,
    use_cache: bool = True,
    quiet: bool = True,
    allow_cpu: bool = False,
    **overrides,
) -> dict:
    """Train the solution on the tier's preset and grade its validation loss.

    Returns {"status", "tier", "solution", "loss", "threshold", "message", "cached",
    "seconds", "out_dir"}; status is one of "passed", "failed", "waiting" (a step 1-6
    is unfinished: nothing is trained), "needs-gpu" (lab tier without CUDA) or "error"
    (the run raised; message says where). `overrides` change RunConfig fields (tests
    and calibration only: a graded run uses the preset as is).
    """
    solution = solution_name(solution)
    overrides.setdefault("out_dir", str(REPO_ROOT / "runs" / "final" / tier))
    run = tier_config(tier, **overrides)
    base = {"tier": tier, "solution": solution, "loss": None, "threshold": run.threshold,
            "cached": False, "seconds": 0.0, "out_dir": run.out_dir}

    unfinished = first_unfinished_step(solution)
    if unfinished is not None:
        n, where = unfinished
        return {**base, "status": "waiting",
                "message": f"waiting on step {n}: {where} still raises NotImplementedError "
                           f"(the final run needs steps 1-6 finished)"}
    if tier == "lab" and not torch.cuda.is_available() and not allow_cpu and run.device in ("auto", "cuda"):
        return {**base, "status": "needs-gpu",
                "message": f"lab tier needs a GPU (2 epochs of a 10M model; hours on CPU). Run: {GPU_COMMAND}"}

    key = cache_key(solution, run)
    path = _cache_path(solution, tier, key)
    cached = _cached(path) if use_cache else None
    if cached is not None:
        return _verdict({**base, **cached, "threshold": run.threshold, "cached": True})

    t0 = time.time()
    try:
        summary = pretrain(run, solution, quiet=quiet)
    except Exception as e:  # noqa: BLE001 - reported, not hidden: the message carries the error
        where = _stub_location(e, solution)
        if where is not None:
            return {**base, "status": "failed", "seconds": round(time.time() - t0, 1),
                    "message": f"{where[1]} still raises NotImplementedError: "
                               f"implement it (step 8 is run_training in {solution}/step8_pretrain.py)"}
        return {**base, "status": "error", "seconds": round(time.time() - t0, 1),
                "message": f"the final run raised {type(e).__name__}: {e}"}
    result = {
        "tier": tier,
        "threshold": run.threshold,  # what it was graded against (the report shows the last lab run)
        "loss": summary.get("graded_val_loss", summary["val_loss"]),
        "own_eval_loss": summary["val_loss"],
        "steps": summary["steps"],
        "seconds": round(time.time() - t0, 1),
        "tokens_per_s": summary["tokens_per_s"],
        "device": summary["device"],
        "seed": run.seed,
    }
    if use_cache:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return _verdict({**base, **result})


def main(argv: list[str] | None = None) -> int:
    """`python -m kata.final [--tier smoke|lab|auto] [--solution ...]`; exit 0 pass, 1 fail."""
    p = argparse.ArgumentParser(description="Grade step 8: the final training run against its threshold.")
    p.add_argument("--tier", default="auto", choices=("auto", *TIERS),
                   help="auto (default): lab on a CUDA machine, smoke otherwise")
    p.add_argument("--solution", default=None, help="exercises (default) or reference")
    p.add_argument("--no-cache", action="store_true", help="retrain even if this code was graded before")
    p.add_argument("--seed", type=int, default=None, help="calibration only: another seed than the preset's")
    args = p.parse_args(argv)
    tier = args.tier if args.tier != "auto" else ("lab" if torch.cuda.is_available() else "smoke")
    if args.tier == "auto" and tier == "smoke":
        print(f"no CUDA here: grading the smoke tier; the lab tier needs a GPU ({GPU_COMMAND})")
    extra = {} if args.seed is None else {"seed": args.seed}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    result = grade_final(args.solution, tier, use_cache=not args.no_cache, quiet=False, **extra)
    if result["cached"]:
        print(f"(cached result for unchanged code: {result['out_dir']} holds that run's plot and samples)")
    print(f"step 8 [{result['status']}] {result['message']}")
    return {"passed": 0, "needs-gpu": 0}.get(result["status"], 1)


if __name__ == "__main__":
    raise SystemExit(main())
