#!/usr/bin/env bash
# Set up (the project's .venv unless a virtual environment is active), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PY" -m pytest "$@"
