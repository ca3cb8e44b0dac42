#!/usr/bin/env bash
# Pre-training speed for the cpu-demo and paper presets (paper at batch 16 on a CPU): byel's whole
# optimiser step (fetch → augmentation → forward/backward → optimiser → LR schedule → EMA → logging)
# vs a plain-PyTorch loop over the module's own methods, a real end-to-end pretrain() run (start-up,
# checkpoint saves, per-epoch overhead), FLOP/s vs matmul peak, loader rate, peak memory.
# Writes benchmarks/results/speed.md and speed.json (~6 min on a 2-core CPU; run it on a quiet machine).
# Extra arguments go to `byel benchmark speed` (e.g. --device cuda, --presets smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PY" -m byel benchmark speed --presets cpu-demo paper --steps 8 --warmup 2 --repeats 3 \
  --e2e-epochs 2 --e2e-steps 4 --out benchmarks/results --name speed "$@"
