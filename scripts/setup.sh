#!/usr/bin/env bash
# Install byel and what it needs, from PyPI only. Safe to run again (a no-op when up to date).
# The CPU build of PyTorch goes first: a bare `torch` requirement would pull a multi-GB CUDA build.
# GPU users: install the torch build for your CUDA first; this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
# [warp] adds dlib's 68-point landmarks for the warp generator backend (non-commercial model terms).
"$PY" -m pip install --quiet -e ".[dev,warp,onnx,plots]"
