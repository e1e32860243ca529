#!/usr/bin/env bash
# The GPU measurements of issue 13 in one command, for an H100/H200-class host with torch, onnxruntime and
# OpenCV only (run `bash scripts/gpu_carry.sh` here first; the device tool carries work-data/gpu-carry):
#   bash bench/gpu_session.sh OUT_DIR
# 1. bench/detector_gpu.py: the network alone, fp16 + channels_last, batch 1..256 at 640x640 and 640x384,
#    CUDA graphs on and off;  2. bench/worker_throughput.py: one torch-CUDA worker end to end from Redis
#    (600 cameras' JPEG frames queued; then paced at half the measured rate for p50/p99).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?give an output folder}"
mkdir -p "$OUT"
C=work-data/gpu-carry
python -c "import torch, torchvision" 2>/dev/null || {
  echo "gpu_session: needs torchvision matching the host's torch (batched_nms, nvJPEG decode); carry its wheel" \
       "in $C/wheels (pip download --no-deps torchvision==<match>)" >&2; exit 2; }
python -m pip install -q --no-index --find-links "$C/wheels" av redis hiredis pydantic pydantic-settings \
  prometheus-client click tqdm filelock safetensors
python -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || export PYTHONPATH="$PWD"
LD_LIBRARY_PATH="$C/lib" "$C/bin/redis-server" --port 6390 --save '' --appendonly no --daemonize yes
export FACESTREAM_REDIS__URL=redis://127.0.0.1:6390/0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
for h in 640 384; do
  for g in "" "--no-graphs"; do
    python bench/detector_gpu.py --out "$OUT/detector_gpu_640x${h}${g:+_nograph}.json" --size 640 --height "$h" \
      --batches 1,8,32,64,128,256 --weights models/weights/fsdet-m.safetensors $g
  done
done
python bench/worker_throughput.py --runtime torch --device cuda --cameras 600 --frames 10 --max-batch 64 \
  --max-wait-ms 5 --paced-seconds 20 --json "$OUT/worker_gpu.json"
