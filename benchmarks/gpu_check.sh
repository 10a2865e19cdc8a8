#!/usr/bin/env bash
# One command for a borrowed GPU (about ten minutes on an H200/A100-class card): the
# reference's lab tier (seed 0, then seed 1 if time allows), `python -m benchmarks`, and
# the bf16/fp32/fp16 precision checks, all written to benchmarks/results/gpu-<name>/.
# WikiText-2 is used only if data/wikitext-2/ (ignored by git) holds it.
#   bash benchmarks/gpu_check.sh [--budget-s 600] [--dry-run] [--cpu-smoke] [--skip bench ...]
# Details: benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY="${PYTHON:-$( [ -x .nox/_kata/bin/python ] && echo .nox/_kata/bin/python || echo python3 )}"
exec "$PY" -m benchmarks.gpu_check "$@"
