#!/usr/bin/env bash
# The main job on the embedded default: set up, then generate synthetic faces → BYEL pre-training →
# fine-tuning → evaluation on real faces → a report. ≈ 4–5 min on an idle 2-core CPU after setup.
# Extra arguments go to `byel demo` (e.g. --out runs/x, --backend warp --sources DIR, --adapt-bn).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
REAL=../shared/data/fer2013-publictest          # real faces for evaluation, if this checkout has them
[ -d "$REAL" ] || REAL=tests/fixtures/fer_sample  # else the small real sample shipped with the tests
# --head fused: the pixel CNN fused with the face-geometry head (the vendored MediaPipe landmarker,
# tier B); the report gives the pixel CNN alone (tier A, the BYEL paper's setting) beside it.
# --adapt-bn: also report the scores after BatchNorm adaptation on the real images *without* their
# labels (tier C), printed as separate lines. `--head pixels` runs the pixels-only job.
exec "$PY" -m byel demo --real "$REAL" --head fused --adapt-bn "$@"
