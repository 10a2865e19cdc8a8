"""Calibrate step 8's thresholds: the reference over several seeds, and mutants that ruin training.

Each run is a separate process (one at a time: on a shared machine, parallel runs
would only slow each other down) that calls `kata.final.grade_final` with the
reference solution, so the loss is measured exactly as a learner's is graded. A
mutant is a copy of `reference/` in a temporary folder with one find/replace applied,
put first on PYTHONPATH; `reference/` itself is never edited.

    python -m benchmarks.calibrate --tier smoke --seeds 0 1 2 --mutants all
    python -m benchmarks.calibrate --tier smoke --seeds 0 --corpus wikitext2 --data-dir ../shared/data/wikitext-2

Results are appended, one JSON object a line, to `--out` as each run finishes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kata.paths import REPO_ROOT

# name -> (file in reference/, old text, new text, what the mistake is)
MUTANTS: dict[str, tuple[str, str, str, str]] = {
    "unshifted-loss": (
        "step4_loss.py",
        "shift_labels = F.pad(labels[:, 1:], (0, 1), value=ignore_index)",
        "shift_labels = labels",
        "step 4 scores the logits at t against the token at t (no shift): the model learns to copy",
    ),
    "normal-init": (
        "step1_embeddings.py",
        "        elif isinstance(m, nn.Embedding):\n            nn.init.normal_(m.weight, mean=0.0, std=0.02)\n",
        "        elif isinstance(m, nn.Embedding):\n            pass  # mutant: PyTorch's default N(0, 1)\n",
        "embeddings (and so the tied LM head) left at PyTorch's N(0, 1) init instead of N(0, 0.02)",
    ),
    "lr-10x-low": (
        "step5_train_loop.py",
        '        group["lr"] = lr\n',
        '        group["lr"] = lr / 10  # mutant\n',
        "every learning rate the schedule sets is 10x too low",
    ),
}


def make_mutant(name: str, root: Path) -> Path:
    """Copy reference/ under `root/name/` with the mutant's one edit; returns the PYTHONPATH entry."""
    filename, old, new, _ = MUTANTS[name]
    dest = root / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "reference", dest / "reference", ignore=shutil.ignore_patterns("__pycache__"))
    path = dest / "reference" / filename
    text = path.read_text()
    if text.count(old) != 1:
        raise RuntimeError(f"mutant {name}: expected the text to replace exactly once in reference/{filename}")
    path.write_text(text.replace(old, new))
    return dest


def child(spec: dict) -> None:
    """Runs in the subprocess: one graded run, its result as JSON on the last line."""
    from kata.final import grade_final

    overrides = {k: spec[k] for k in ("seed", "corpus", "data_dir", "out_dir") if spec.get(k) is not None}
    t0 = time.time()
    if spec["variant"] == "trainer":
        from kata.trainer_run import trainer_loss

        overrides.pop("out_dir", None)
        result = {"status": "trainer", **trainer_loss("reference", spec["tier"], use_cache=False, **overrides)}
    else:
        result = grade_final("reference", spec["tier"], use_cache=False, quiet=True, **overrides)
    result["wall_s"] = round(time.time() - t0, 1)
    print("RESULT " + json.dumps(result))


def run_one(spec: dict, pythonpath: str) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-P", "-m", "benchmarks.calibrate", "--child", json.dumps(spec)],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {**spec, "status": "error", "message": proc.stderr[-2000:], "wall_s": round(time.time() - t0, 1)}
    return {**spec, **json.loads(lines[-1][len("RESULT "):])}


def table(path: Path) -> str:
    """The runs of a results file as a markdown table (for benchmarks/CALIBRATION.md)."""
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    out = ["| run | corpus | seed | validation loss | own evaluate() | grade run wall (s) | finished |",
           "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        what = r["variant"] if r["variant"] in ("reference", "trainer") else f"mutant: {r['variant']}"
        loss = "—" if r.get("loss") is None else f"{r['loss']:.3f}"
        own = "—" if r.get("own_eval_loss") is None else f"{r['own_eval_loss']:.3f}"
        out.append(f"| {what} | {r.get('corpus') or 'shakespeare'} | {r['seed']} | {loss} | {own} | "
                   f"{r.get('wall_s', '—')} | {r.get('finished', '')} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--table", help="print a results file as a markdown table and exit")
    p.add_argument("--tier", default="smoke")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--mutants", nargs="*", default=[], help=f"'all' or some of: {', '.join(MUTANTS)}")
    p.add_argument("--mutant-seed", type=int, default=0)
    p.add_argument("--trainer-seeds", type=int, nargs="*", default=[],
                   help="also run step 7's Trainer (reference) on the tier with these seeds")
    p.add_argument("--corpus", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / f"calibration-{platform.node()}.jsonl"))
    args = p.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    if args.table:
        print(table(Path(args.table)))
        return 0
    mutants = list(MUTANTS) if args.mutants == ["all"] else args.mutants
    runs = ([(m, args.mutant_seed) for m in mutants] + [("reference", s) for s in args.seeds]
            + [("trainer", s) for s in args.trainer_seeds])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="kata-mutants-"))
    base_path = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for variant, seed in runs:
        pythonpath = base_path if variant in ("reference", "trainer") else os.pathsep.join([str(make_mutant(variant, tmp)), base_path])
        spec = {"tier": args.tier, "variant": variant, "seed": seed, "corpus": args.corpus, "data_dir": args.data_dir,
                "out_dir": str(tmp / "runs" / f"{variant}-{args.corpus or 'default'}-s{seed}")}
        res = run_one(spec, pythonpath)
        res.update(machine=platform.node(), processor=platform.processor() or platform.machine(),
                   cpus=os.cpu_count(), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        with out.open("a") as f:
            f.write(json.dumps(res) + "\n")
        print(f"{variant:16s} seed {seed} corpus {args.corpus or 'default':12s} loss {res.get('loss')} "
              f"(own eval {res.get('own_eval_loss')}) {res.get('status')} in {res.get('wall_s')}s", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
