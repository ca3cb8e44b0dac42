#!/usr/bin/env bash
# Pre-training step throughput, FLOP/s, loader rate and memory for the cpu-demo and paper presets.
set -euo pipefail
python -m byel benchmark speed --presets cpu-demo paper --steps 8 --json "${1:-runs/speed.json}"
