#!/usr/bin/env bash
# Install byel and what it needs, from PyPI only. Safe to run again (a no-op when up to date).
# Sourced by demo.sh and test.sh: it leaves the interpreter to use in $PY.
#
# Where: the active virtual environment if there is one, else the project's own .venv (created
# here), because stock Debian/Ubuntu refuse `pip install` into the system Python (PEP 668).
# Set PYTHON=/path/to/python to use another interpreter as it is.
#
# PyTorch goes first: a bare `torch` requirement would pull a multi-GB CUDA build on Linux x86-64.
# When no torch is installed we take the CPU build from PyTorch's CPU wheel index if that index is
# reachable, else from the default index. GPU users: install the torch build for your CUDA into
# the environment first; it is kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  PY=$VIRTUAL_ENV/bin/python
else
  if [ ! -x .venv/bin/python ]; then
    echo "setup: creating the virtual environment .venv" >&2
    if ! python3 -m venv .venv 2>/dev/null; then
      # Debian/Ubuntu ship venv's pip bootstrap separately (python3-venv).
      rm -rf .venv
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -qq "python3-venv" >/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
        python3 -m venv .venv
      else
        echo "setup: error: python3 cannot create a virtual environment; install python3-venv (Debian/Ubuntu) or set PYTHON=/path/to/python" >&2
        exit 1
      fi
    fi
  fi
  PY=$PWD/.venv/bin/python
fi
export PY
if ! "$PY" -c "import torch" 2>/dev/null; then
  CPU_INDEX=https://download.pytorch.org/whl/cpu
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('$CPU_INDEX/torch/', timeout=5)" 2>/dev/null; then
    echo "setup: installing the CPU build of torch from $CPU_INDEX" >&2
    "$PY" -m pip install --quiet "torch==2.13.0" --index-url "$CPU_INDEX" \
      || "$PY" -m pip install --quiet "torch==2.13.0"
  else
    echo "setup: $CPU_INDEX not reachable; installing torch==2.13.0 from the default index" >&2
    "$PY" -m pip install --quiet "torch==2.13.0"
  fi
fi
# Extras: warp = the 68-point landmark model for the warp generator (iBUG 300-W terms: no
# commercial use), onnx = ONNX export and its parity test, plots = scikit-learn (t-SNE panel and the
# metric cross-checks in the tests), serve = FastAPI + uvicorn for `byel serve`, dev = pytest,
# Playwright (drives the system's chromium in the web-page test) and pandas.
"$PY" -m pip install --quiet -e ".[dev,warp,onnx,plots,serve]"
