"""Turn a model spec into the evaluator's ``detect_fn(bgr) -> (K,5) [x1,y1,x2,y2,score]``.

A spec is our weights (``.safetensors``, or an ``.onnx`` we exported: producer ``facestream``), loaded with
``models.detector.load_detector``; a peer ONNX (SCRFD, YuNet, CenterFace, RetinaFace, ULFD, YOLO5Face,
recognised from its outputs); or ``haar`` (OpenCV cascade).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class EvalModel:
    name: str
    detect_fn: Any  # Callable[[np.ndarray], np.ndarray]
    default_threshold: float
    kind: str  # "ours" | a teacher kind | "haar"
    handle: Any = None


def is_ours(path: str | Path) -> bool:
    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        return True
    if p.suffix.lower() != ".onnx":
        return False
    from training.distill.teachers import make_session

    return make_session(p, 1).get_modelmeta().producer_name == "facestream"


def ours_detect_fn(detector) -> Any:
    """Adapter for ``models.detector.Detector`` (list-in, Detections-out) to the evaluator contract."""

    def detect(bgr: np.ndarray) -> np.ndarray:
        d = detector.detect([bgr])[0]
        if len(d) == 0:
            return np.zeros((0, 5), np.float32)
        return np.concatenate([np.asarray(d.boxes, np.float32), np.asarray(d.scores, np.float32)[:, None]], 1)

    return detect


def load_eval_model(spec: str | Path, *, min_score: float = 0.02, max_size: int | None = None,
                    threads: int = 2, runtime: str = "auto", name: str | None = None) -> EvalModel:
    """Load ours or a peer for evaluation with the low score threshold the protocol wants."""
    spec = str(spec)
    if spec.lower() == "haar" or spec.endswith(".xml"):
        from training.distill.teachers import Haar

        h = Haar(None if spec.lower() == "haar" else spec)
        return EvalModel(name or h.name, h, h.default_threshold, "haar", h)
    if is_ours(spec):
        from models.detector import load_detector

        det = load_detector(runtime=runtime, weights=spec, threshold=min_score, threads=threads,
                            input_size=max_size)
        shipped = float(getattr(getattr(det, "meta", None), "threshold", None) or 0.5)
        return EvalModel(name or Path(spec).stem, ours_detect_fn(det), shipped, "ours", det)
    from training.distill.teachers import load_teacher

    t = load_teacher(spec, score_threshold=min_score, max_size=max_size, threads=threads)
    return EvalModel(name or t.name, t, t.default_threshold, t.kind, t)


class ModelLoadError(RuntimeError):
    """The model spec could not be loaded (unreadable file, missing runtime)."""


class WiderDataError(FileNotFoundError):
    """No WIDER images + ground truth where they were expected."""


def wider_eval(spec: str | Path, *, data_dir: Path | None = None, images_dir: Path | None = None,
               gt_dir: Path | None = None, threshold: float | None = None, min_score: float = 0.02,
               max_size: int | None = None, runtime: str = "auto", threads: int = 2, name: str | None = None,
               progress: bool = True, pred_dir: Path | None = None):
    """The official WIDER evaluation of one model spec (`facestream eval wider`, the compression gate).

    data_dir holds images/ and ground_truth/ (and optionally wider_face_val_bbx_gt.txt for attributes).
    threshold: for P/R/F1 (default: the model's shipped threshold)."""
    from .wider import evaluate_detector

    data_dir = Path(data_dir) if data_dir else None
    images_dir = Path(images_dir) if images_dir else (data_dir / "images" if data_dir else None)
    gt_dir = Path(gt_dir) if gt_dir else (data_dir / "ground_truth" if data_dir else None)
    if images_dir is None or gt_dir is None or not (gt_dir / "wider_face_val.mat").exists():
        raise WiderDataError("need a WIDER data folder (with images/ and ground_truth/) or images and gt folders")
    bbx = next((c for c in ((data_dir / "wider_face_val_bbx_gt.txt") if data_dir else None,
                            gt_dir.parent / "wider_face_val_bbx_gt.txt") if c is not None and c.exists()), None)
    try:
        m = load_eval_model(spec, min_score=min_score, max_size=max_size, threads=threads, runtime=runtime,
                            name=name)
    except Exception as e:  # unreadable model, missing runtime: one clear line, not a traceback
        raise ModelLoadError(f"cannot load {spec}: {e}") from e
    res = evaluate_detector(m.detect_fn, images_dir, gt_dir, threshold=m.default_threshold if threshold is None
                            else threshold, min_score=min_score, name=m.name, bbx_gt_txt=bbx, progress=progress,
                            pred_dir=pred_dir)
    res.extra.update({"model": str(spec), "kind": m.kind, "min_score": min_score, "max_size": max_size})
    return res
