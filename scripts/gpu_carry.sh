#!/usr/bin/env bash
# Pack what a bare GPU host (torch, onnxruntime, OpenCV only) lacks to run bench/gpu_session.sh:
# wheels of PyAV, redis-py and the small pure-Python deps, and redis-server with its non-libc libraries.
# Writes work-data/gpu-carry/ (~40 MB; the device tool carries up to 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=work-data/gpu-carry
rm -rf "$OUT" && mkdir -p "$OUT/wheels" "$OUT/bin" "$OUT/lib"
.venv/bin/python -m pip download -q --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$OUT/wheels" \
  "av==18.*" "redis==8.*" "hiredis==3.*" "pydantic==2.*" "pydantic-settings==2.*" "prometheus-client==0.*" \
  "click==8.*" "tqdm==4.*" "filelock==3.*" "safetensors==0.*"
cp "$(command -v redis-server)" "$OUT/bin/"
for lib in $(ldd "$(command -v redis-server)" | awk '/=>/ {print $3}' | grep -E 'lzf|jemalloc|atomic'); do cp -L "$lib" "$OUT/lib/"; done
du -sh "$OUT"
