#!/usr/bin/env bash
# Release a trained FSDet-m run: threshold on the dev split + weights/ONNX, WIDER val mini at 640 and
# original size, dev-split ablation rows, CPU speed beside YuNet-n, the replay gate against the model
# in service, docs. Run on a quiet machine (benchmarks), from the repository root:
#   [INT8_KEEP_FLOAT=stem] bash scripts/release_model.sh runs/fsdet-m/best.safetensors 1.3.0
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:-runs/fsdet-m/best.safetensors}
VERSION=${2:-1.1.0}
PY=.venv/bin/python
FS=.venv/bin/facestream
VAL=../shared/data/eval/widerface-val-mini
OLD=work-data/release/fsdet-m-previous.safetensors
mkdir -p work-data/release
[ -f "$OLD" ] || cp models/weights/fsdet-m.safetensors "$OLD"          # the model in service

$FS export "$CKPT" --config configs/fsdet-m.toml --version "$VERSION" --out models/weights/fsdet-m
$FS eval dev --model "$OLD" --model models/weights/fsdet-m.safetensors --config configs/fsdet-m.toml \
  | tee docs/eval/dev-split.md
$FS eval wider --model models/weights/fsdet-m.safetensors --data $VAL --out docs/eval/fsdet-m-640 --no-progress
$FS eval wider --model models/weights/fsdet-m.safetensors --data $VAL --max-size 1024 \
  --out docs/eval/fsdet-m-1024 --no-progress
$PY bench/accuracy.py --only 'FSDet (ours)' --ours models/weights/fsdet-m.safetensors --append --quiet
$PY bench/detector_cpu.py --threads 2 --seconds 1.0 --rounds 5 --write-docs
# the served variants of the new float model (each gated against it; a failing one is renamed *.rejected.*)
$FS compress quantize --model models/weights/fsdet-m.safetensors --keep-float "${INT8_KEEP_FLOAT:-none}"
$FS compress quantize --model models/weights/fsdet-m.safetensors --precision fp16
$PY bench/compression.py --float models/weights/fsdet-m.safetensors --variant models/weights/fsdet-m-int8.onnx \
  --variant models/weights/fsdet-m-fp16.onnx --variant models/weights/fsdet-m-p50.onnx \
  --variant models/weights/fsdet-m-p50-int8.onnx --wider $VAL --dev-config configs/fsdet-m.toml \
  --seconds 2 --rounds 6 --write-docs
$PY bench/replay_gate.py --old "$OLD" --new models/weights/fsdet-m.safetensors --out docs/eval/gate
