"""WIDER FACE text formats: ground-truth label files and per-image prediction files.

Label file (official ``wider_face_{train,val}_bbx_gt.txt`` layout)::

    0--Parade/0_Parade_marchingband_1_465.jpg      <- image path, relative to the set's folder
    2                                               <- count N
    345 211 4 4 2 0 0 0 0 0                         <- x y w h blur expression illumination invalid
                                                       occlusion pose
    331 126 3 3 0 0 0 1 0 0
    0--Parade/0_Parade_Parade_0_904.jpg
    0
    0 0 0 0 0 0 0 0 0 0                             <- one all-zero line when N == 0 (official quirk)

Our variant (teacher labels) appends, per face, optionally a score column and optionally 5 landmarks::

    x y w h blur expression illumination invalid occlusion pose [score] [lx1 ly1 ... lx5 ly5]

i.e. 10 (official), 11 (+score), 20 (+landmarks) or 21 (+score +landmarks) columns. A file may mix
rows with and without landmarks (a face without landmarks simply has fewer columns); the reader
decides per row from its column count. Landmarks of a face without them are NaN in memory.

Prediction files (the layout the official evaluation reads): ``<dir>/<event>/<name>.txt`` containing
the image name, the count K, then K lines ``x y w h score`` in original pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


@dataclass
class WiderImage:
    """One image's labels.

    boxes: (N, 4) float32 ``x y w h`` (WIDER convention: x2 = x + w).
    attrs: (N, 6) int32 in the order of :data:`ATTRIBUTES`.
    scores: (N,) float32 or None (official files have no score; NaN rows = no score).
    landmarks: (N, 5, 2) float32 or None (NaN rows = that face has none).
    """

    path: str
    boxes: np.ndarray
    attrs: np.ndarray
    scores: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def xyxy(self) -> np.ndarray:
        b = self.boxes.astype(np.float32).copy()
        b[:, 2:] += b[:, :2]
        return b


def _empty(path: str) -> WiderImage:
    return WiderImage(path, np.zeros((0, 4), np.float32), np.zeros((0, 6), np.int32))


def _parse_face(tokens: list[str]) -> tuple[list[float], list[int], float, list[float] | None]:
    n = len(tokens)
    box = [float(t) for t in tokens[:4]]
    attrs = [int(float(t)) for t in tokens[4:10]] if n >= 10 else [0] * 6
    score = math.nan
    lms = None
    if n == 11:
        score = float(tokens[10])
    elif n == 20:
        lms = [float(t) for t in tokens[10:20]]
    elif n == 21:
        score = float(tokens[10])
        lms = [float(t) for t in tokens[11:21]]
    elif n not in (4, 10):
        raise ValueError(f"unexpected face line with {n} columns: {' '.join(tokens)!r}")
    return box, attrs, score, lms


def iter_wider_labels(path: str | Path) -> Iterator[WiderImage]:
    """Stream a WIDER-format label file (official or our variant)."""
    with open(path, encoding="utf-8") as f:
        lines = [ln.strip() for ln in f]
    i = 0
    n_lines = len(lines)
    while i < n_lines:
        name = lines[i]
        i += 1
        if not name:
            continue
        if i >= n_lines:
            raise ValueError(f"{path}: truncated after image line {name!r}")
        head = lines[i].split()
        if len(head) != 1 or not head[0].isdigit():
            raise ValueError(f"{path}: line {i + 1}: expected the face count of {name!r}, got {lines[i]!r}")
        count = int(head[0])
        i += 1
        if count == 0:
            # official files carry one all-zero line for an empty image; tolerate its absence
            if i < n_lines and _is_zero_row(lines[i]):
                i += 1
            yield _empty(name)
            continue
        boxes, attrs, scores, lms = [], [], [], []
        any_score = any_lms = False
        for _ in range(count):
            if i >= n_lines:
                raise ValueError(f"{path}: {name!r} announces {count} faces, file ends early")
            b, a, s, lm = _parse_face(lines[i].split())
            i += 1
            boxes.append(b)
            attrs.append(a)
            scores.append(s)
            any_score |= not math.isnan(s)
            any_lms |= lm is not None
            lms.append(lm if lm is not None else [math.nan] * 10)
        yield WiderImage(
            name,
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(attrs, np.int32).reshape(-1, 6),
            np.asarray(scores, np.float32) if any_score else None,
            np.asarray(lms, np.float32).reshape(-1, 5, 2) if any_lms else None,
        )


def _is_zero_row(line: str) -> bool:
    toks = line.split()
    if len(toks) < 4:
        return False
    try:
        return all(float(t) == 0 for t in toks)
    except ValueError:
        return False


def read_wider_labels(path: str | Path) -> list[WiderImage]:
    return list(iter_wider_labels(path))


def _fmt(v: float) -> str:
    # integers stay integers (official files), others at most 2 decimals, no trailing zeros
    fv = float(v)
    if fv.is_integer():
        return str(int(fv))
    return f"{fv:.2f}".rstrip("0").rstrip(".")


def format_wider_image(img: WiderImage, with_scores: bool | None = None,
                       with_landmarks: bool | None = None) -> str:
    """One image's block. ``with_*`` None = write the column when the image has it."""
    n = len(img)
    out = [img.path, str(n)]
    if n == 0:
        out.append("0 0 0 0 0 0 0 0 0 0")
        return "\n".join(out) + "\n"
    ws = (img.scores is not None) if with_scores is None else with_scores
    wl = (img.landmarks is not None) if with_landmarks is None else with_landmarks
    attrs = img.attrs if img.attrs is not None and len(img.attrs) == n else np.zeros((n, 6), np.int32)
    for k in range(n):
        toks = [_fmt(v) for v in img.boxes[k]] + [str(int(a)) for a in attrs[k]]
        if ws:
            s = float(img.scores[k]) if img.scores is not None else 1.0
            toks.append(f"{s:.4f}")
        if wl and img.landmarks is not None and not np.isnan(img.landmarks[k]).any():
            toks += [_fmt(v) for v in img.landmarks[k].reshape(-1)]
        out.append(" ".join(toks))
    return "\n".join(out) + "\n"


def write_wider_labels(path: str | Path, images: Iterable[WiderImage], with_scores: bool | None = None,
                       with_landmarks: bool | None = None) -> int:
    """Write images in WIDER format; returns the number of images written. Atomic (tmp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for img in images:
            f.write(format_wider_image(img, with_scores, with_landmarks))
            n += 1
    tmp.replace(path)
    return n


def detections_to_image(path: str, dets: np.ndarray, landmarks: np.ndarray | None = None,
                        attrs: np.ndarray | None = None) -> WiderImage:
    """(K,5) ``x1 y1 x2 y2 score`` detections -> WiderImage (xywh boxes, score column)."""
    dets = np.asarray(dets, np.float32).reshape(-1, 5)
    boxes = dets[:, :4].copy()
    boxes[:, 2:] -= boxes[:, :2]
    k = len(dets)
    a = np.zeros((k, 6), np.int32) if attrs is None else np.asarray(attrs, np.int32).reshape(k, 6)
    lm = None if landmarks is None else np.asarray(landmarks, np.float32).reshape(k, 5, 2)
    return WiderImage(path, boxes, a, dets[:, 4].copy(), lm)


# ---------------------------------------------------------------- prediction files (official eval layout)

def split_event_name(image_path: str) -> tuple[str, str]:
    """``'0--Parade/0_Parade_x.jpg'`` -> ``('0--Parade', '0_Parade_x')`` (suffix removed properly)."""
    p = Path(image_path)
    event = p.parent.name if p.parent.name else ""
    return event, p.stem


def prediction_text(name: str, dets_xywhs: np.ndarray) -> str:
    """The official WIDER prediction file format: name, K, then K lines ``x y w h score``."""
    dets = np.asarray(dets_xywhs, np.float64).reshape(-1, 5)
    return f"{name}\n{len(dets)}\n" + "".join(f"{x:.1f} {y:.1f} {w:.1f} {h:.1f} {s:.5f}\n" for x, y, w, h, s in dets)


def write_prediction_file(pred_dir: str | Path, event: str, name: str, dets_xywhs: np.ndarray) -> Path:
    """Write ``<pred_dir>/<event>/<name>.txt`` (`prediction_text`)."""
    d = Path(pred_dir) / event
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.txt"
    p.write_text(prediction_text(name, dets_xywhs), encoding="utf-8")
    return p


def read_prediction_file(path: str | Path) -> np.ndarray:
    """Read one prediction file: exactly K rows after the count line, sorted by score descending (stable).

    Returns (K, 5) float64 ``x y w h score``. Rows beyond K are ignored; fewer than K rows is an error.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if len(lines) < 2:
        return np.zeros((0, 5))
    k = int(float(lines[1].split()[0])) if lines[1].strip() else 0
    rows = []
    for ln in lines[2:]:
        if len(rows) == k:
            break
        toks = ln.split()
        if not toks:
            continue
        rows.append([float(t) for t in toks[:5]])
    if len(rows) < k:
        raise ValueError(f"{path}: count line says {k} rows, found {len(rows)}")
    arr = np.asarray(rows, np.float64).reshape(-1, 5)
    order = np.argsort(-arr[:, 4], kind="stable")
    return arr[order]


def read_prediction_dir(pred_dir: str | Path) -> dict[str, np.ndarray]:
    """All ``<event>/<name>.txt`` files -> {``event/name``: (K,5) xywh score}."""
    out = {}
    root = Path(pred_dir)
    for p in sorted(root.glob("*/*.txt")):
        out[f"{p.parent.name}/{p.stem}"] = read_prediction_file(p)
    return out
