"""The device and precision policy (kata/precision.py), its use by both training paths,
and the one-command GPU check (benchmarks/gpu_check.py) in its CPU modes.

No GPU here: the capability queries are faked (`torch.cuda.is_available`,
`get_device_capability`, `get_device_name`, `torch.backends.mps.is_available`) and the
policy's choice is checked for each kind of device. The fp16 path itself (autocast +
GradScaler) runs for real on the CPU, which PyTorch supports since 2.3.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from kata import precision as kp
from kata.paths import REPO_ROOT

pytestmark = pytest.mark.infra

GPUS = {  # name: (compute capability, what the policy must choose)
    "NVIDIA H200": ((9, 0), "bf16"),
    "NVIDIA A100-SXM4-80GB": ((8, 0), "bf16"),
    "NVIDIA GeForce RTX 3090": ((8, 6), "bf16"),
    "Tesla V100-SXM2-16GB": ((7, 0), "fp16"),
    "Tesla T4": ((7, 5), "fp16"),
    "Tesla P100-PCIE-16GB": ((6, 0), "fp16"),
    "Tesla P40": ((6, 1), "fp32"),
    "Tesla K80": ((3, 7), "fp32"),
}


def fake_cuda(monkeypatch, name: str, capability: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


def no_gpu(monkeypatch, mps: bool = False) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.fixture(autouse=True)
def _no_forced_precision(monkeypatch):
    monkeypatch.delenv("KATA_PRECISION", raising=False)


@pytest.mark.parametrize("name", GPUS)
def test_policy_picks_bf16_on_native_bf16_gpus_fp16_with_scaling_on_older_ones(monkeypatch, name):
    capability, want = GPUS[name]
    fake_cuda(monkeypatch, name, capability)
    device = kp.resolve_device("auto")
    assert device.type == "cuda", f"auto should pick CUDA when torch.cuda.is_available(); got {device}"
    p = kp.policy(device)
    assert p.name == want, f"{name} (compute capability {capability}): expected {want}, the policy chose {p.name} ({p.reason})"
    assert p.autocast_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[want]
    assert p.grad_scaling == (want == "fp16"), f"{name}: gradient scaling goes with fp16 and only with it"
    assert (p.make_scaler() is not None) == (want == "fp16")
    kw = p.trainer_kwargs()
    assert kw == {"bf16": want == "bf16", "fp16": want == "fp16", "use_cpu": False}, (
        f"{name}: the Trainer must get the same precision as the manual loop; got {kw}")
    if want != "bf16":
        assert p.note and name in p.note and p.describe() in p.note, (
            f"--bf16 on {name} must say what it uses instead; note: {p.note!r}")
    else:
        assert p.note is None
    off = kp.policy(device, mixed=False)
    assert off.name == "fp32" and off.trainer_kwargs() == {"bf16": False, "fp16": False, "use_cpu": False}


def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch):
    no_gpu(monkeypatch, mps=True)
    assert kp.resolve_device("auto").type == "mps"
    p = kp.policy(kp.resolve_device("auto"))
    assert p.name == "fp32" and p.trainer_kwargs() == {"bf16": False, "fp16": False, "use_cpu": False}
    assert p.note and "fp32" in p.note, f"--bf16 on mps should say it trains in fp32; note {p.note!r}"
    no_gpu(monkeypatch, mps=False)
    assert kp.resolve_device("auto").type == "cpu"
    p = kp.policy(kp.resolve_device("auto"))
    assert (p.name, p.note, p.make_scaler()) == ("fp32", None, None)
    assert p.trainer_kwargs() == {"bf16": False, "fp16": False, "use_cpu": True}


@pytest.mark.parametrize("device", ["mps", "cuda"])
def test_asking_for_a_missing_device_is_one_clear_error(monkeypatch, device):
    no_gpu(monkeypatch, mps=False)
    with pytest.raises(ValueError, match=f"--device {device} .*use --device auto or cpu"):
        kp.resolve_device(device)


def test_pretrain_with_a_missing_mps_exits_2_with_one_line(monkeypatch, capsys):
    no_gpu(monkeypatch, mps=False)
    from kata.pretrain import main

    assert main(["--preset", "smoke", "--device", "mps"], solution="reference") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mps" in err[0] and err[0].startswith("error:"), f"expected one error line, got {err}"


def test_forced_precision_and_its_errors(monkeypatch):
    fake_cuda(monkeypatch, "Tesla T4", (7, 5))
    with pytest.raises(ValueError, match="no native bf16"):
        kp.policy(torch.device("cuda"), force="bf16")
    assert kp.policy(torch.device("cuda"), force="fp32").name == "fp32"
    monkeypatch.setenv("KATA_PRECISION", "fp16")
    assert kp.policy(torch.device("cpu")).name == "fp16"
    monkeypatch.setenv("KATA_PRECISION", "fp8")
    with pytest.raises(ValueError, match="choose one of"):
        kp.policy(torch.device("cpu"))


def test_run_takes_the_policy(monkeypatch):
    """kata.pretrain.Run: autocast dtype and scaler come from the policy for its device."""
    from types import SimpleNamespace

    from kata.presets import preset
    from kata.pretrain import Run

    chunks = torch.zeros(32, 8, dtype=torch.long)
    steps = SimpleNamespace()
    run = Run(preset("smoke"), {}, torch.device("cpu"), 10, None, chunks, chunks, steps)
    assert (run.precision.name, run.autocast_dtype, run.scaler) == ("fp32", None, None)
    monkeypatch.setenv("KATA_PRECISION", "fp16")
    run = Run(preset("smoke"), {}, torch.device("cpu"), 10, None, chunks, chunks, steps)
    assert run.autocast_dtype == torch.float16 and isinstance(run.scaler, torch.amp.GradScaler)


@pytest.mark.needs_reference
def test_fp16_autocast_with_grad_scaling_trains_on_the_cpu():
    """The fp16 path end to end on a tiny TinyGPT: reference train_step, CPU autocast, CPU GradScaler."""
    from reference.step1_embeddings import GPTConfig
    from reference.step3_blocks import TinyGPT
    from reference.step5_train_loop import configure_optimizer, train_step

    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    opt = configure_optimizer(model, 1e-2, 0.0)
    p = kp.policy(torch.device("cpu"), force="fp16")
    scaler = p.make_scaler()
    x = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    losses = [train_step(model, x, opt, 1.0, p.autocast_dtype, scaler)[0].item() for _ in range(20)]
    assert all(torch.isfinite(torch.tensor(losses))), f"fp16 losses should stay finite, got {losses}"
    # One batch, 20 steps at lr 1e-2: memorising it lowers the loss far beyond fp16 noise (~1e-3).
    assert losses[-1] < losses[0] - 0.5, f"fp16 + scaling did not train: loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    assert scaler.get_scale() > 0



def _fp16_steps(scaler: torch.amp.GradScaler, model: torch.nn.Module, opt, n: int) -> None:
    for _ in range(n):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = model(torch.ones(2, 4)).float().pow(2).mean()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()


def test_a_checkpoint_keeps_the_fp16_gradient_scale(tmp_path, monkeypatch, capsys):
    """A resumed fp16 run goes on with the saved loss scale and growth tracker, not 65536 and 0;
    checkpoints without that state (older ones, bf16/fp32 runs) still resume, silently."""
    from types import SimpleNamespace

    from kata.checkpoint import load_checkpoint, restore_scaler, save_checkpoint
    from kata.presets import preset
    from kata.pretrain import Run

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    # Not the defaults (65536, growth every 2000 steps): 3 steps double the scale once, then 2 more count.
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    _fp16_steps(scaler, model, opt, 5)
    want = scaler.state_dict()
    assert (want["scale"], want["_growth_tracker"]) == (2048.0, 2), f"the setup itself went wrong: {want}"

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model, opt, 5, {"n": 1}, {}, scaler=scaler)
    state = load_checkpoint(path, {"n": 1})
    fresh = kp.policy(torch.device("cpu"), force="fp16").make_scaler()  # what a resumed run starts with
    assert restore_scaler(fresh, state), "a checkpoint saved with a scaler should restore it"
    assert fresh.state_dict() == want, \
        f"expected the saved scaler state {want}, got {fresh.state_dict()} (look at kata/checkpoint.py)"
    _fp16_steps(fresh, model, opt, 1)  # one more step completes the growth interval: the resumed scaler works
    assert fresh.get_scale() == 4096.0, f"expected the restored scaler to grow to 4096, got {fresh.get_scale()}"

    # A run without a scaler (bf16/fp32 here) resumes from it and ignores the saved scale.
    assert restore_scaler(None, state) is False
    # An older checkpoint (no "scaler" key) and one saved without a scaler start the scaler afresh.
    del state["scaler"]
    torch.save(state, path)
    assert restore_scaler(fresh := kp.policy(torch.device("cpu"), force="fp16").make_scaler(),
                          load_checkpoint(path, {"n": 1})) is False and fresh.get_scale() == 65536.0
    save_checkpoint(path, model, opt, 5, {"n": 1}, {})
    assert load_checkpoint(path, {"n": 1})["scaler"] is None and not restore_scaler(fresh, load_checkpoint(path, {"n": 1}))

    # kata.pretrain.Run.save hands its scaler over.
    monkeypatch.setenv("KATA_PRECISION", "fp16")
    chunks = torch.zeros(32, 8, dtype=torch.long)
    run = Run(preset("smoke", out_dir=str(tmp_path / "run")), {"n": 1}, torch.device("cpu"), 10, None, chunks, chunks,
              SimpleNamespace())
    run.scaler.load_state_dict(want)
    run.save(model, opt, 5)
    saved = load_checkpoint(run.checkpoint_path, {"n": 1})["scaler"]
    assert saved == want, f"expected Run.save to write the run's scaler state {want}, got {saved} (kata/pretrain.py)"
    assert capsys.readouterr().out == "", "saving and restoring say nothing"

def _gpu_check(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_gpu_check_dry_run_plans_every_part(tmp_path):
    p = _gpu_check("--dry-run", "--out", str(tmp_path))
    assert p.returncode == 0, f"gpu_check --dry-run exited {p.returncode}:\n{(p.stdout + p.stderr)[-2000:]}"
    plan = json.loads((tmp_path / "plan.json").read_text())
    names = [q["name"] for q in plan["parts"]]
    assert names[:7] == ["policy", "lab-seed0", "precision-bf16", "precision-fp32", "precision-fp16", "bench", "lab-seed1"]
    lab = next(q for q in plan["parts"] if q["name"] == "lab-seed0")["cmd"]
    assert "--preset" in lab and lab[lab.index("--preset") + 1] == "lab"
    assert all(q["env"].get("KATA_PRECISION") == q["name"].split("-")[1] for q in plan["parts"] if q["name"].startswith("precision-"))
    assert ("lab-wikitext2" in names) == (REPO_ROOT / "data" / "wikitext-2").is_dir()


def test_gpu_check_without_a_gpu_exits_2(tmp_path):
    if subprocess.run("command -v nvidia-smi", shell=True, capture_output=True).returncode == 0:
        pytest.skip("this machine has nvidia-smi")
    p = _gpu_check("--out", str(tmp_path))
    assert p.returncode == 2 and "no NVIDIA GPU" in p.stderr, f"expected exit 2 and one line; got {p.returncode}: {p.stderr}"


@pytest.mark.slow
@pytest.mark.needs_reference
@pytest.mark.timeout(400)
def test_gpu_check_cpu_smoke_runs_every_part_and_writes_the_report(tmp_path):
    # bench has its own tests; leaving it out saves two Python start-ups (~40 s on a loaded 2-core machine).
    p = _gpu_check("--cpu-smoke", "--out", str(tmp_path), "--skip", "bench", "lab-seed1", timeout=380)
    assert p.returncode == 0, f"gpu_check --cpu-smoke exited {p.returncode}:\n{(p.stdout + p.stderr)[-3000:]}"
    report = json.loads((tmp_path / "report.json").read_text())
    status = {r["name"]: r["status"] for r in report["parts"]}
    assert all(s == "ok" for s in status.values()), f"every part should run: {status}"
    runs = report["precision_check"]["runs"]
    assert {k: v["precision"] for k, v in runs.items()} == {"bf16": "bf16", "fp32": "fp32", "fp16": "fp16"}
    assert abs(report["precision_check"]["bf16_minus_fp32"]) < 0.5 and abs(report["precision_check"]["fp16_minus_fp32"]) < 0.5
    assert (tmp_path / "report.md").exists()
    assert not list(tmp_path.rglob("checkpoint.pt")), "checkpoints do not belong in the results folder"
