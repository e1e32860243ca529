#!/usr/bin/env bash
# Teacher-label frames of ../shared/data/videos for training (configs/fsdet-m.toml's last source).
# The gate clips (bundled demo clip, talking-head, head-pose-female, classroom) are held out.
set -euo pipefail
cd "$(dirname "$0")/.."
V=../shared/data/videos
T=(--teacher ../shared/models/peers/scrfd_pypi_0.3.0.onnx --teacher ../shared/models/peers/libfd_yunet_n_dynamic.onnx)
mkdir -p work-data/labels/video work-data/frames
lab() { .venv/bin/facestream label "${T[@]}" --video "$1" --every "$2" --frames-dir work-data/frames \
          --out "work-data/labels/video/$(basename "$1").txt" --no-progress; }
lab $V/street-1080p.mp4 3
lab $V/surveillance-576p.avi 10
for f in again bird book eat help hungry milk night no school sister sorry thanks walk want; do lab $V/cc-by/$f.mkv 8; done
lab $V/cc-by/face-demographics-walking.mp4 3
lab $V/cc-by/head-pose-face-detection-male.mp4 4
lab $V/cc-by/people-detection.mp4 3
cat work-data/labels/video/*.txt > work-data/labels/video-frames.txt
