#!/usr/bin/env bash
# The shipped model's confident false boxes on the training split -> work-data/hard-negatives.json
# (configs/fsdet-m.toml's hard_negatives; ~3 min on 2 cores). Run after the label scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/facestream mine-negatives --model "${1:-models/weights/fsdet-m.safetensors}" \
  --config configs/fsdet-m.toml --out work-data/hard-negatives.json
