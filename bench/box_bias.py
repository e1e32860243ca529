"""Where a model puts its boxes against a training config's dev labels, by face size: localisation, not AP.

    .venv/bin/python bench/box_bias.py --config configs/fsdet-m.toml --model models/weights/fsdet-m.safetensors
    .venv/bin/python bench/box_bias.py --config configs/fsdet-m.toml --teacher ../shared/models/peers/X.onnx

Per dev source and face width at the serving size: matched faces (best IoU >= 0.2 with a box scoring >=
0.2), their median IoU, the share under IoU 0.5 (a false box and a miss under the WIDER protocol), the
median width / height ratio and the median centre offset as a fraction of the face's width / height (a
sign that persists is a convention or geometry fault, e.g. the warp fixed in training/data/augment.py). A
`--teacher` (any `facestream label` teacher, boxes scoring >= 0.5) shows the labels' own conventions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BINS = ((4, 8), (8, 12), (12, 16), (16, 24), (24, 48), (48, 10_000))


def matched_rows(boxes_of, records, input_size: int) -> np.ndarray:
    """(N, 7): width at the serving size, IoU, log w ratio, log h ratio, dx / w, dy / h, h / w."""
    from models.facedet.preprocess import padded_size

    rows = []
    for r in records:
        img = cv2.imread(str(r.path), cv2.IMREAD_COLOR)
        g = r.boxes[~r.ignore]
        if img is None or not len(g):
            continue
        s = padded_size(img.shape[1], img.shape[0], input_size)[0]  # the serving letterbox's scale
        boxes = boxes_of(img)
        if not len(boxes):
            continue
        iou = box_iou(torch.as_tensor(g), torch.as_tensor(boxes)).numpy()
        for i, j in enumerate(iou.argmax(1)):
            if iou[i, j] < 0.2:
                continue
            gb, pb = g[i], boxes[j]
            gw, gh, pw, ph = gb[2] - gb[0], gb[3] - gb[1], pb[2] - pb[0], pb[3] - pb[1]
            rows.append((gw * s, iou[i, j], np.log(pw / gw), np.log(ph / gh),
                         (pb[0] + pb[2] - gb[0] - gb[2]) / 2 / gw, (pb[1] + pb[3] - gb[1] - gb[3]) / 2 / gh, gh / gw))
    return np.array(rows, np.float64).reshape(-1, 7)


def main() -> None:
    from models.detector import load_detector
    from training.config import load_config
    from training.data.dataset import source_splits
    from training.distill.teachers import load_teacher

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="training config whose dev split is scored")
    ap.add_argument("--model", action="append", default=[], help="weights or .onnx; repeat to compare")
    ap.add_argument("--teacher", action="append", default=[], help="a teacher's ONNX (boxes scoring >= 0.5)")
    ap.add_argument("--input-size", type=int, default=640)
    ap.add_argument("--min-faces", type=int, default=5, help="skip size bins with fewer matched faces")
    a = ap.parse_args()
    if not a.model and not a.teacher:
        sys.exit("give at least one --model or --teacher")
    try:
        splits = source_splits(load_config(a.config))
    except (ValueError, OSError) as e:
        sys.exit(f"{a.config}: {e}")
    print("| model | source | width px | faces | median IoU | IoU < 0.5 | w ratio | h ratio | dx / w | dy / h |")
    print("| --- " * 10 + "|")
    runners = []
    for m in a.model:
        det = load_detector(runtime="onnx" if m.lower().endswith(".onnx") else "torch", weights=m,
                            threshold=0.2, nms_iou=0.4, input_size=a.input_size)
        runners.append((m, lambda img, det=det: det.detect([img])[0].boxes))
    for t in a.teacher:
        teacher = load_teacher(t)
        runners.append((t, lambda img, teacher=teacher: (d := teacher(img))[d[:, 4] >= 0.5, :4]))
    for m, boxes_of in runners:
        for name, _, recs in splits:
            rows = matched_rows(boxes_of, recs, a.input_size)
            for lo, hi in BINS:
                b = rows[(rows[:, 0] >= lo) & (rows[:, 0] < hi)]
                if len(b) < a.min_faces:
                    continue
                med = np.median(b, 0)
                size = f"{lo}-{hi}" if hi < 10_000 else f">= {lo}"
                print(f"| {Path(m).name} | {name} | {size} | {len(b)} | {med[1]:.2f} | {np.mean(b[:, 1] < 0.5):.2f} | "
                      f"{np.exp(med[2]):.2f} | {np.exp(med[3]):.2f} | {med[4]:+.3f} | {med[5]:+.3f} |", flush=True)


if __name__ == "__main__":
    main()
