"""`python -m reference.step8_pretrain`: outputs, and bad input that stops with a clear error."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kata.presets import parse_args, preset
from kata.progress import Progress

pytestmark = [pytest.mark.infra, pytest.mark.needs_reference]

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "smoke", "--threshold", "none", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
        "--batch-size", "8", "--max-steps", "30", "--warmup-steps", "5", "--log-interval", "5",
        "--eval-interval", "10", "--eval-batches", "4", "--checkpoint-interval", "10", "--sample-tokens", "8"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
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
    # stdout is a pipe here, where tqdm shows nothing: plain lines at the first and last step
    first = next((x for x in r.stdout.splitlines() if x.startswith("train step 1/30")), None)
    last = next((x for x in r.stdout.splitlines() if x.startswith("train step 30/30")), None)
    assert first and "ETA" in first and "tok/s" in first, f"no plain progress line at step 1; stdout:\n{r.stdout}"
    assert last and re.search(r"loss \d+\.\d{3}", last) and "tok/s" in last, f"no line at the last step:\n{r.stdout}"


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log = io.StringIO()
    bar = Progress(2, 6, 10, "train", tokens_per_step=100, every=0, file=log)
    for step in bar:
        bar.set(loss=9.0 - step, lr=1e-3)
    lines = log.getvalue().splitlines()
    assert [x.split()[2] for x in lines] == ["3/10", "4/10", "5/10", "6/10"], lines
    assert "loss 4.000" in lines[-1] and "lr 1.00e-03" in lines[-1] and "tok/s" in lines[-1], lines
    assert "ETA" in lines[0] and "ETA" not in lines[-1], lines  # nothing left after the last step

    quiet = io.StringIO()
    bar = Progress(0, 50, 50, "train", every=3600, file=quiet)
    assert list(bar) == list(range(50))
    assert [x.split()[2] for x in quiet.getvalue().splitlines()] == ["1/50", "50/50"], "first and last step only"

    term = Terminal()
    assert Progress(0, 3, 3, file=term).mode == "bar" and Progress(0, 3, 3, file=io.StringIO()).mode == "plain"
    monkeypatch.setenv("KATA_PROGRESS_SECONDS", "0")
    assert Progress(0, 3, 3, file=io.StringIO()).every == 0
    off = io.StringIO()
    assert list(Progress(0, 3, 3, mode="off", file=off)) == [0, 1, 2] and off.getvalue() == ""


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


def test_wikitext_from_the_hub_offline_is_one_line_and_writes_nothing(tmp_path):
    """Offline (HF_HUB_OFFLINE=1 and an empty HF cache: datasets fails at once) the run
    names what failed and the files --data-dir needs, exits 2 and leaves no out_dir."""
    out = tmp_path / "run"
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = run_cli(*TINY, "--corpus", "wikitext2", "--out-dir", str(out), env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, f"expected one line, got:\n{r.stderr}"
    assert "'wikitext'" in lines[0] and "--data-dir" in lines[0] and "wiki.train.raw" in lines[0], lines[0]
    assert not out.exists(), "a failed start must not create the out_dir"


def test_a_connection_error_from_the_hub_is_one_line(tmp_path, monkeypatch, capsys):
    import datasets

    from kata.pretrain import main

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'wikitext' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    out = tmp_path / "run"
    assert main([*TINY, "--corpus", "wikitext2", "--out-dir", str(out)], solution="reference") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ConnectionError: Couldn't reach 'wikitext'" in err, err
    assert "--data-dir DIR" in err and "wiki.valid.raw" in err, err
    assert not out.exists()


def test_resume_refuses_a_checkpoint_of_another_shape(tmp_path):
    out = tmp_path / "run"
    assert run_cli(*TINY, "--max-steps", "10", "--out-dir", str(out)).returncode == 0
    before = (out / "loss.csv").read_text()
    r = run_cli(*TINY, "--n-embd", "64", "--out-dir", str(out), "--resume")
    assert r.returncode == 2 and "different model" in r.stderr and "n_embd" in r.stderr, r.stderr
    assert (out / "loss.csv").read_text() == before, "a refused resume must leave the run untouched"
