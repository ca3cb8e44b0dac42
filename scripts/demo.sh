#!/usr/bin/env bash
# The main job on the embedded default: set up, then generate synthetic faces → BYEL pre-training →
# fine-tuning → evaluation on real faces → a report. ~15 min on a 2-core CPU.
# Extra arguments go to `byel demo` (e.g. --out runs/x, --backend warp --sources DIR, --adapt-bn).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
REAL=../shared/data/fer2013-publictest          # real faces for evaluation, if this checkout has them
[ -d "$REAL" ] || REAL=tests/fixtures/fer_sample  # else the small real sample shipped with the tests
# --adapt-bn: also report the score after BatchNorm adaptation on the real images *without* their
# labels, printed as a separate line next to the plain score.
exec "$PY" -m byel demo --real "$REAL" --adapt-bn "$@"
