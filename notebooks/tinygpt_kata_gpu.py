# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # tinygpt-kata on a free GPU (Colab, Kaggle)
#
# This notebook installs the kata, grades your exercises (`nox -s check`), then trains
# **your** model on the lab tier on the GPU (the smoke tier when there is none) and shows
# the loss curve and samples. The source is `notebooks/tinygpt_kata_gpu.py` (jupytext,
# percent format); the `.ipynb` next to it is generated from it
# (`jupytext --to ipynb notebooks/tinygpt_kata_gpu.py`).
#
# Colab: *Runtime → Change runtime type → GPU* (a T4: fp16 autocast with gradient
# scaling). Kaggle: *Settings → Accelerator → GPU* (a P100 or T4, the same). On an
# A100/H100 the run uses bf16 autocast. `kata/precision.py` holds the policy.
#
# Set `KATA_SOURCE` below to where the kata comes from: a git URL, or the handout zip
# your instructor gave you (`nox -s handout` writes `dist/handout.zip`) after uploading it
# to the notebook's files.

# %% tags=["parameters"]
INSTALL = True  # False: download nothing (offline; the kata's own test sets it)
KATA_SOURCE = ""  # a git URL, or the uploaded handout zip, e.g. "handout.zip"; "" = the folder is already here
KATA_DIR = ""  # the kata's folder; "" = the current one, or the one KATA_SOURCE unpacks to
SOLUTION = "exercises"  # whose steps train: your exercises ("reference" in the instructors' copy)
CHECK_COMMAND = "nox -s check"  # the grader; add "-- --step 3" to grade one step
TIER = "auto"  # auto: the lab tier on a CUDA GPU, the smoke tier elsewhere
TINY = False  # True: a few steps of a tiny model (how the kata tests this notebook on a CPU)
OUT_DIR = ""  # where the run writes its plot, samples, summary; "" = runs/notebook-<tier>

# %%
import os
import subprocess
import sys
from pathlib import Path


def sh(command: str, check: bool = True) -> int:
    """Run a shell command, its output in the notebook; the exit status."""
    print(f"$ {command}", flush=True)
    proc = subprocess.run(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(proc.stdout, flush=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{command}` exited with {proc.returncode}")
    return proc.returncode


if INSTALL and KATA_SOURCE:
    if KATA_SOURCE.endswith(".zip"):
        sh(f"unzip -q -o {KATA_SOURCE}")
        KATA_DIR = KATA_DIR or "handout"
    else:
        KATA_DIR = KATA_DIR or Path(KATA_SOURCE.rstrip("/")).stem
        if not Path(KATA_DIR).exists():
            sh(f"git clone --depth 1 {KATA_SOURCE} {KATA_DIR}")
if KATA_DIR:
    os.chdir(KATA_DIR)
if not Path("kata/precision.py").exists():
    raise FileNotFoundError(f"{Path.cwd()} is not the kata's folder: set KATA_SOURCE (or KATA_DIR) above")
if INSTALL:
    # The GPU's torch is already installed on Colab/Kaggle: the kata only adds its libraries.
    sh(f"{sys.executable} -m pip install -q nox -e .")
sys.path.insert(0, str(Path.cwd()))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

# %% [markdown]
# ## Grade: `nox -s check`
#
# The table of steps, the first failure with a hint, and what to open next. The grader
# runs the tests on the CPU in its own environment (`.nox/`; the first call installs it,
# a few minutes). Edit files under `exercises/` (Colab: the folder icon on the left) and
# run this cell again.

# %%
sh(CHECK_COMMAND, check=False)  # failing steps are normal while you work: read the table

# %% [markdown]
# ## Train: the lab tier on the GPU
#
# Your steps 1-6 and your step 8 loop train the lab model (6 layers, 6 heads, 192 dims,
# 2 epochs) in the precision the GPU supports; without a GPU, the smoke tier (2 minutes
# on 2 CPU cores). The verdict compares the validation loss with the tier's threshold.

# %%
import torch

from kata.precision import policy, resolve_device
from kata.presets import preset
from kata.pretrain import pretrain

device = resolve_device("auto")
precision = policy(device)
print(f"device: {device}"
      f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}; "
      f"precision: {precision.describe()} ({precision.reason})")
tier = TIER if TIER != "auto" else ("lab" if device.type == "cuda" else "smoke")
overrides = {"out_dir": OUT_DIR or f"runs/notebook-{tier}"}
if TINY:  # the notebook's own test: seconds on a CPU, no verdict
    overrides.update(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=8, max_steps=6, warmup_steps=2,
                     log_interval=2, eval_interval=3, eval_batches=2, samples=1, sample_tokens=8, threshold=None,
                     device="cpu")
run = preset(tier, **overrides)
summary = pretrain(run, SOLUTION)
print(f"{tier} tier: validation loss {summary['graded_val_loss']:.4f}"
      + ("" if summary["passed"] is None else
         f" -> {'PASS' if summary['passed'] else 'FAIL'} (threshold {run.threshold:g})"))

# %% [markdown]
# ## The loss curve and samples

# %%
from IPython.display import Image, display

display(Image(filename=str(Path(run.out_dir) / "loss.png")))
for prompt, text in summary["samples"].items():
    print(f"=== {prompt}\n{text}\n")
