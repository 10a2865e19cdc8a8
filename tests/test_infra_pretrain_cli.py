"""`python -m reference.step8_pretrain`: outputs, and bad input that stops with a clear error."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kata.presets import parse_args, preset

pytestmark = [pytest.mark.infra, pytest.mark.needs_reference]

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "smoke", "--threshold", "none", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
        "--batch-size", "8", "--max-steps", "30", "--warmup-steps", "5", "--log-interval", "5",
        "--eval-interval", "10", "--eval-batches", "4", "--checkpoint-interval", "10", "--sample-tokens", "8"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "reference.step8_pretrain", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_run_writes_curve_samples_checkpoint(tmp_path):
    out = tmp_path / "run"
    r = run_cli(*TINY, "--out-dir", str(out), "--threshold", "10.5")
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("loss.csv", "loss.png", "checkpoint.pt", "summary.json", "samples.txt"):
        assert (out / name).exists(), f"{name} missing; stdout:\n{r.stdout}"
    rows = list(csv.DictReader((out / "loss.csv").open()))
    val = [float(x["loss"]) for x in rows if x["split"] == "validation"]
    assert val[-1] < val[0] - 0.5, f"validation loss did not fall: {val}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True and summary["steps"] == 30
    assert "verdict: PASS" in r.stdout and "The history of" in (out / "samples.txt").read_text()


def test_unknown_preset_is_rejected():
    with pytest.raises(SystemExit):
        parse_args(["--preset", "huge"])
    with pytest.raises(ValueError, match="unknown preset 'huge'.*smoke"):
        preset("huge")


def test_every_field_is_overridable_from_the_command_line():
    _, run = parse_args(["--preset", "lab", "--n-layer", "4", "--lr", "1e-3", "--max-steps", "7",
                         "--eval-batches", "none", "--compile", "--data-dir", "/x"])
    assert (run.n_layer, run.lr, run.max_steps, run.eval_batches, run.compile, run.data_dir) == (4, 1e-3, 7, None, True, "/x")
    assert (run.n_embd, run.batch_size, run.weight_decay, run.max_grad_norm) == (192, 16, 0.01, 1.0)  # the lab's


@pytest.mark.parametrize("args, message", [
    (["--n-embd", "30", "--n-head", "4"], "n_embd=30 is not divisible by n_head=4"),
    (["--block-size", "400000"], "fewer than one block"),
    (["--corpus", "wikitext2", "--data-dir", "{tmp}"], "has no train split"),
    (["--corpus", "gutenberg"], "unknown corpus"),
])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = run_cli(*TINY, "--out-dir", str(out), *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() or not any(out.iterdir()), "a failed start must not leave half-written files"


def test_resume_refuses_a_checkpoint_of_another_shape(tmp_path):
    out = tmp_path / "run"
    assert run_cli(*TINY, "--max-steps", "10", "--out-dir", str(out)).returncode == 0
    before = (out / "loss.csv").read_text()
    r = run_cli(*TINY, "--n-embd", "64", "--out-dir", str(out), "--resume")
    assert r.returncode == 2 and "different model" in r.stderr and "n_embd" in r.stderr, r.stderr
    assert (out / "loss.csv").read_text() == before, "a refused resume must leave the run untouched"
