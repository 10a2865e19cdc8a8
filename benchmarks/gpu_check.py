"""One command for a borrowed GPU: lab-tier runs, the speed table, the precision checks.

    bash benchmarks/gpu_check.sh                  # on one GPU, ~10 minutes: writes benchmarks/results/gpu-<name>/
    bash benchmarks/gpu_check.sh --budget-s 420   # less time: later parts are skipped, and say so
    bash benchmarks/gpu_check.sh --dry-run        # print the plan (plan.json), run nothing
    bash benchmarks/gpu_check.sh --cpu-smoke      # every part, tiny and on the CPU (the kata's test of this script)

In order, each part only if the time left allows it (a part that does not fit is
recorded as skipped with the reason):
1. `policy`: this machine's device and precision (`python -m kata.precision`);
2. `lab-seed0`: the reference's lab tier, seed 0, in the GPU's precision
   (`python -m reference.step8_pretrain --preset lab`): loss, verdict, tokens/s;
3. `precision`: the same short run (lab shape, `--precision-steps` steps) in bf16, fp32
   and fp16 with gradient scaling (`KATA_PRECISION`), each on the same seed and data:
   the validation-loss differences and tokens/s;
4. `bench`: `python -m benchmarks` (the six set-ups side by side) into the same folder;
5. `lab-seed1`: the lab tier again on seed 1 (the seed spread the threshold needs);
6. `lab-wikitext2`: seed 0 on WikiText-2, only if `data/wikitext-2/` (ignored by git)
   holds `wiki.{train,valid}.{raw,tokens}`; the default corpus is the offline one.

Writes `report.md` and `report.json` (every part's command, status, seconds and figures),
and each run's `summary.json`, `loss.csv`, `loss.png`, `samples.txt` (no checkpoints).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from kata.paths import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results"
WIKITEXT = REPO_ROOT / "data" / "wikitext-2"
# The tiny shape of --cpu-smoke: every part runs end to end in seconds per process.
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "8",
        "--warmup-steps", "2", "--log-interval", "2", "--eval-batches", "2", "--samples", "1", "--sample-tokens", "5",
        "--device", "cpu"]
# Seconds a part is expected to need on an H200/A100-class GPU, to decide whether it fits
# (not measured: no GPU was lent while writing this; a lab run's own time replaces the guess
# once seed 0 has run).
GUESS_S = {"policy": 20, "lab": 150, "precision": 120, "bench": 240}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
    return names[0] if out.returncode == 0 and names else None


def wikitext_present() -> bool:
    return all(any((WIKITEXT / f"wiki.{s}.{k}").exists() for k in ("raw", "tokens")) for s in ("train", "valid"))


def plan(out: Path, cpu_smoke: bool, precision_steps: int) -> list[dict]:
    """The parts in order: name, command, environment, and the run folder (if any)."""
    py = sys.executable
    step8 = [py, "-m", "reference.step8_pretrain"]
    if cpu_smoke:
        lab = [*step8, "--preset", "smoke", *TINY, "--max-steps", "4", "--eval-interval", "1000", "--threshold", "none"]
        short = [*step8, "--preset", "smoke", *TINY, "--max-steps", str(precision_steps), "--eval-interval", "1000",
                 "--samples", "0", "--threshold", "none"]
        bench = [py, "-m", "benchmarks", "--quick", "--steps", "1", "--warmup", "0", "--variants", "reference",
                 "--device", "cpu"]
    else:
        lab = [*step8, "--preset", "lab", "--checkpoint-interval", "1000000"]
        # The lab model and data, a fixed short run; evaluated on 20 validation batches.
        short = [*step8, "--preset", "lab", "--max-steps", str(precision_steps), "--eval-interval", "1000000",
                 "--eval-batches", "20", "--samples", "0", "--threshold", "none", "--checkpoint-interval", "1000000"]
        bench = [py, "-m", "benchmarks"]
    parts = [{"name": "policy", "cmd": [py, "-m", "kata.precision"], "env": {}}]
    parts.append({"name": "lab-seed0", "cmd": [*lab, "--seed", "0", "--out-dir", str(out / "lab-seed0")],
                  "env": {}, "run_dir": "lab-seed0"})
    for prec in ("bf16", "fp32", "fp16"):
        parts.append({"name": f"precision-{prec}", "group": "precision",
                      "cmd": [*short, "--seed", "0", "--out-dir", str(out / f"precision-{prec}")],
                      "env": {"KATA_PRECISION": prec}, "run_dir": f"precision-{prec}"})
    # benchmarks writes results/<name>.md; an absolute name puts bench.md/.json in this folder.
    parts.append({"name": "bench", "cmd": [*bench, "--name", str(out / "bench")], "env": {}})
    parts.append({"name": "lab-seed1", "cmd": [*lab, "--seed", "1", "--out-dir", str(out / "lab-seed1")],
                  "env": {}, "run_dir": "lab-seed1"})
    if wikitext_present():
        parts.append({"name": "lab-wikitext2", "cmd": [*lab, "--seed", "0", "--corpus", "wikitext2", "--data-dir",
                                                       str(WIKITEXT), "--out-dir", str(out / "lab-wikitext2")],
                      "env": {}, "run_dir": "lab-wikitext2"})
    return parts


def _guess(part: dict, lab_seconds: float | None) -> float:
    if part["name"].startswith("lab-"):
        return lab_seconds * 1.1 if lab_seconds else GUESS_S["lab"]
    if part.get("group") == "precision":
        return GUESS_S["precision"] / 3
    return GUESS_S.get(part["name"], 60)


def run_part(part: dict, out: Path, timeout: float) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", **part["env"],
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.time()
    try:
        proc = subprocess.run(part["cmd"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        status, rc, output = ("ok" if proc.returncode in (0, 1) else "error"), proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        status, rc = "timeout", None
        output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    result = {"name": part["name"], "status": status, "returncode": rc, "seconds": round(time.time() - t0, 1),
              "command": " ".join(f"{k}={v}" for k, v in part["env"].items()).strip() + " " + " ".join(part["cmd"][1:])}
    (out / f"{part['name']}.log").write_text(output)
    if part["name"] == "policy" and status == "ok":
        result["policy"] = json.loads(output[output.index("{"):])
    run_dir = out / part["run_dir"] if part.get("run_dir") else None
    if run_dir is not None:
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # tens of MB, and not a result
        summary = run_dir / "summary.json"
        if summary.exists():
            s = json.loads(summary.read_text())
            result.update({k: s.get(k) for k in ("val_loss", "graded_val_loss", "passed", "threshold", "steps",
                                                 "train_seconds", "tokens_per_s", "device", "precision")})
    if status != "ok":
        result["tail"] = output.strip().splitlines()[-5:]
    return result


def precision_table(results: list[dict]) -> dict:
    rows = {r["name"].split("-", 1)[1]: r for r in results if r["name"].startswith("precision-") and "val_loss" in r}
    out = {"runs": {k: {f: r.get(f) for f in ("val_loss", "tokens_per_s", "precision", "steps")} for k, r in rows.items()}}
    if "fp32" in rows:
        for k in ("bf16", "fp16"):
            if k in rows:
                out[f"{k}_minus_fp32"] = rows[k]["val_loss"] - rows["fp32"]["val_loss"]
    return out


def write_report(out: Path, meta: dict, results: list[dict]) -> None:
    report = {**meta, "parts": results, "precision_check": precision_table(results)}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    lines = [f"# GPU check on {meta['gpu'] or 'no GPU'}", "",
             f"{meta['date']}, `{meta['command']}`, budget {meta['budget_s']:.0f} s, used {meta['used_s']:.0f} s. "
             f"Mode: {meta['mode']}. Corpus: offline Shakespeare" + (" (+ WikiText-2 from data/)" if meta["wikitext2"] else "")
             + ".", ""]
    pol = next((r.get("policy") for r in results if r["name"] == "policy" and r.get("policy")), None)
    if pol:
        lines += [f"Precision policy here: **{pol['describe']}** on {pol['device']} ({pol['reason']}).", ""]
    lines += ["| part | status | s | validation loss | graded | threshold | verdict | tokens/s | precision |",
              "|---|---|---:|---:|---:|---:|---|---:|---|"]
    for r in results:
        def f(k, spec=".4f"):
            return "—" if r.get(k) is None else format(r[k], spec)
        verdict = "—" if r.get("passed") is None else ("PASS" if r["passed"] else "FAIL")
        lines.append(f"| {r['name']} | {r['status']}{': ' + r['why'] if r.get('why') else ''} | {r.get('seconds', 0):.0f} | "
                     f"{f('val_loss')} | {f('graded_val_loss')} | {f('threshold', 'g')} | {verdict} | "
                     f"{f('tokens_per_s', ',.0f')} | {r.get('precision') or '—'} |")
    pc = report["precision_check"]
    lines += ["", "Precision check (same seed, data and steps): "
              + (", ".join(f"{k.replace('_minus_', ' − ')} = {v:+.4f}" for k, v in pc.items() if k != "runs") or "not measured")
              + ".", "", "Speed table: `bench.md` in this folder (when the bench part ran)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Lab-tier runs, benchmark and precision checks on one GPU.")
    p.add_argument("--budget-s", type=float, default=600, help="wall-clock seconds for everything (default 600)")
    p.add_argument("--out", type=Path, default=None,
                   help="default benchmarks/results/gpu-<name>/ (--cpu-smoke: runs/gpu-check-cpu-smoke/)")
    p.add_argument("--precision-steps", type=int, default=None, help="steps of each precision run (300 GPU, 3 CPU smoke)")
    p.add_argument("--skip", nargs="*", default=[], help="parts to leave out: policy lab-seed0 precision bench lab-seed1 ...")
    p.add_argument("--dry-run", action="store_true", help="write plan.json and print the commands; run nothing")
    p.add_argument("--cpu-smoke", action="store_true", help="every part, tiny and on the CPU (seconds per part)")
    args = p.parse_args(argv)
    name = gpu_name()
    if name is None and not (args.cpu_smoke or args.dry_run):
        print("error: no NVIDIA GPU here (nvidia-smi found none): run on the GPU machine, or use --cpu-smoke / --dry-run",
              file=sys.stderr)
        return 2
    # Tiny CPU runs measure nothing about a GPU: they go to the ignored runs/, not results/.
    default = REPO_ROOT / "runs" / "gpu-check-cpu-smoke" if args.cpu_smoke else RESULTS / f"gpu-{_slug(name or 'unknown')}"
    out = (args.out or default).resolve()
    steps = args.precision_steps or (3 if args.cpu_smoke else 300)
    parts = [q for q in plan(out, args.cpu_smoke, steps) if q["name"] not in args.skip and q.get("group") not in args.skip]
    out.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        (out / "plan.json").write_text(json.dumps({"gpu": name, "out": str(out), "parts": parts}, indent=2))
        for q in parts:
            print(" ".join([*(f"{k}={v}" for k, v in q["env"].items()), *q["cmd"]]))
        print(f"(dry run: nothing ran; plan in {out / 'plan.json'})")
        return 0
    t_start, results, lab_seconds = time.time(), [], None
    for q in parts:
        left = args.budget_s - (time.time() - t_start)
        need = _guess(q, lab_seconds)
        if left < need and not args.cpu_smoke:
            results.append({"name": q["name"], "status": "skipped", "seconds": 0,
                            "why": f"{left:.0f} s left, ~{need:.0f} s needed"})
            print(f"[{q['name']}] skipped: {left:.0f} s left, about {need:.0f} s needed", flush=True)
            continue
        print(f"[{q['name']}] {' '.join(q['cmd'][1:])}", flush=True)
        r = run_part(q, out, timeout=max(left, 30))
        if q["name"] == "lab-seed0" and r["status"] == "ok":
            lab_seconds = r["seconds"]
        results.append(r)
        print(f"[{q['name']}] {r['status']} in {r['seconds']:.0f} s"
              + (f": validation loss {r['val_loss']:.4f}" if r.get("val_loss") is not None else ""), flush=True)
    meta = {"gpu": name, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "bash benchmarks/gpu_check.sh " + " ".join(argv if argv is not None else sys.argv[1:]),
            "budget_s": args.budget_s, "used_s": round(time.time() - t_start, 1),
            "mode": "cpu-smoke (tiny runs on the CPU: no GPU figure)" if args.cpu_smoke else "gpu",
            "wikitext2": wikitext_present()}
    write_report(out, meta, results)
    print(f"wrote {out / 'report.md'} and report.json")
    return 0 if all(r["status"] in ("ok", "skipped") for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
