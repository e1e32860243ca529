"""Dev-split AP (IoU 0.5, VOC) during training: a held-out part of the training sources, never the
WIDER evaluation images, so model selection does not tune on the evaluation set."""

from __future__ import annotations

import cv2
import numpy as np

from .evaluate.metrics import iou_xyxy, voc_ap


def match(dets: list[tuple[np.ndarray, np.ndarray]], gts: list[tuple[np.ndarray, np.ndarray]],
          iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """dets: per image (boxes, scores); gts: per image (boxes, ignore). Returns scores and TP flags
    sorted by score (descending) and the number of faces. Matches to ignored faces are dropped."""
    scores, tps = [], []
    n_faces = 0
    for (b, s), (g, ig) in zip(dets, gts, strict=True):
        n_faces += int((~ig).sum())
        order = np.argsort(-s, kind="stable")
        b, s = b[order], s[order]
        used = np.zeros(len(g), bool)
        ov = iou_xyxy(b, g) if len(g) and len(b) else np.zeros((len(b), len(g)))
        for k in range(len(b)):
            j = int(ov[k].argmax()) if len(g) else -1
            if j >= 0 and ov[k, j] >= iou:
                if ig[j]:
                    continue
                tps.append(not used[j])
                used[j] = True
            else:
                tps.append(False)
            scores.append(s[k])
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return np.asarray(scores, np.float64)[order], np.asarray(tps, np.float64)[order], n_faces


def average_precision(dets, gts, iou: float = 0.5) -> float:
    scores, tp, n_faces = match(dets, gts, iou)
    if not len(scores) or n_faces == 0:
        return 0.0
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    return voc_ap(ctp / n_faces, ctp / np.maximum(ctp + cfp, 1e-9))


def best_f1_threshold(dets, gts, iou: float = 0.5) -> tuple[float, float]:
    """The score threshold that maximises F1 on (dev) detections: (threshold, f1)."""
    scores, tp, n_faces = match(dets, gts, iou)
    if not len(scores) or n_faces == 0:
        return 0.5, 0.0
    ctp = np.cumsum(tp)
    f1 = 2 * ctp / (np.arange(1, len(tp) + 1) + n_faces)
    k = int(f1.argmax())
    return float(scores[k]), float(f1[k])


def predict_dev(model, records, device=None, input_size: int = 640):
    """Per record (boxes, scores) in original pixels and (boxes, ignore). `model` is a FaceDetNet (wrapped in
    the serving Detector) or any loaded Detector (an ONNX or quantized variant): one serving path for
    training's dev AP, threshold calibration and `facestream eval dev`."""
    from models.detector import Detector, detector_from_model

    det = model if isinstance(model, Detector) else detector_from_model(model, input_size=input_size,
                                                                        device=device)
    dets, gts = [], []
    for r in records:
        img = cv2.imread(str(r.path), cv2.IMREAD_COLOR)
        if img is None:  # one (empty) result per record all the same: callers zip them with records
            dets.append((np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
        else:
            (d,) = det.detect([img])
            dets.append((d.boxes, d.scores))
        gts.append((r.boxes, r.ignore))
    return dets, gts


def serving_scales(records, input_size: int = 640) -> list[float]:
    """Per record the letterbox scale the serving path applies (long side -> input_size)."""
    out = []
    for r in records:
        img = cv2.imread(str(r.path), cv2.IMREAD_COLOR)
        out.append(input_size / max(img.shape[:2]) if img is not None else 1.0)
    return out


def ignore_small(gts, scales: list[float], min_px: float):
    """gts with faces whose short side is under min_px at the serving size turned into ignore regions:
    AP over the faces a camera shows at a usable size, closer to WIDER's easy/medium than AP over all."""
    out = []
    for (g, ig), s in zip(gts, scales, strict=True):
        short = np.minimum(g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]) * s if len(g) else np.zeros(0)
        out.append((g, ig | (short < min_px)))
    return out


def evaluate_dev(model, records, device=None, input_size: int = 640) -> float:
    return average_precision(*predict_dev(model, records, device, input_size))
