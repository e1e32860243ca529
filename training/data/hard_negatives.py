"""Hard negatives: a model's own confident boxes on training images that lie on no face.

Random background windows (`face_window_prob` < 1) measured nothing: most background is easy. Windows
centred on the boxes the model itself gets wrong (hands, backs of heads, skin blobs) show it those far more
often (`hard_negative_prob`). A box counts when it scores at least `min_score` and at most `max_ioa` of it
lies inside any label, teacher fill or ignore region of its image, so an unlabelled face the teachers saw
is never taught as background.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.evaluate.replay.match import ioa


def false_boxes(boxes: np.ndarray, scores: np.ndarray, faces: np.ndarray, min_score: float = 0.3,
                max_ioa: float = 0.2) -> np.ndarray:
    """(K,5) xyxy + score of the detections that are confident and lie (almost) outside every face box."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    keep = scores >= min_score
    if len(faces):
        keep &= ioa(boxes, faces).max(1, initial=0.0) <= max_ioa
    return np.concatenate([boxes[keep], scores[keep, None]], 1)


def mine(model, records, min_score: float = 0.3, max_ioa: float = 0.2, input_size: int = 640,
         device=None) -> dict[str, np.ndarray]:
    """{image path: (K,5) false boxes} over `records` (training Records), detected at the serving size."""
    from training.devset import predict_dev

    dets, _ = predict_dev(model, records, device=device, input_size=input_size)
    out = {}
    for r, (b, s) in zip(records, dets, strict=True):
        fb = false_boxes(b, s, r.boxes, min_score, max_ioa)  # r.boxes holds labels, fills and ignores
        if len(fb):
            out[str(r.path)] = fb
    return out


def write(path: Path, mined: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {k: np.round(v, 2).tolist() for k, v in mined.items()}
    path.write_text(json.dumps(rows, indent=0))


def read(path: Path) -> dict[str, np.ndarray]:
    """{image path: (K,4) xyxy}: a missing, unreadable or malformed file is a ValueError naming it."""
    try:
        raw = json.loads(Path(path).read_text())
        return {k: np.asarray(v, np.float32).reshape(-1, 5)[:, :4] for k, v in raw.items()}
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"hard negatives {path}: {e}") from e
