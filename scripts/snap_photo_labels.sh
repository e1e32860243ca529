#!/usr/bin/env bash
# The face-mask sets' human boxes in the teachers' (WIDER's) box convention, with the teacher fills merged
# in: configs/fsdet-m.toml's face-mask sources. Their annotators drew boxes ~1.3x wider than WIDER's
# (docs/training.md, "Box convention"); `--snap-iou` replaces each human box by the teacher box it overlaps.
set -euo pipefail
cd "$(dirname "$0")/.."
T=(--teacher ../shared/models/peers/scrfd_pypi_0.3.0.onnx --teacher ../shared/models/peers/libfd_yunet_n_dynamic.onnx)
mkdir -p work-data/labels
for set in facemask-web facemask-web-2; do
  .venv/bin/facestream label "${T[@]}" --images "../shared/data/train/$set" \
    --merge-with "../shared/data/train/$set/labels.txt" --snap-iou 0.4 \
    --out "work-data/labels/$set-snapped.txt" --no-progress
done
