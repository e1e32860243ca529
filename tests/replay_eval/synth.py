"""Synthetic footage with drawn faces (known labels), an oracle detector that finds them, and an
event builder for scoring tests without Redis."""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from core.schema import Detection, DetectionEvent, FrameInfo, ModelInfo, Source, Timings
from training.evaluate.footage_labels import FootageLabels, FrameLabels

BG = (70, 110, 60)  # plain green-grey background (BGR)
SKIN = (140, 175, 225)  # BGR


def face_boxes(i: int, width: int, height: int) -> list[list[float]]:
    """Ground-truth boxes of frame i: face A walks left->right all clip long; face B is present on
    frames 10..39 only, bobbing up and down on the right."""
    boxes = []
    a_w, a_h = 44, 56
    ax = 10 + 2 * i
    boxes.append([ax, 60, ax + a_w, 60 + a_h])
    if 10 <= i < 40:
        b_w, b_h = 36, 46
        by = 120 + int(20 * np.sin(i / 4))
        boxes.append([width - 70, by, width - 70 + b_w, by + b_h])
    return [[float(v) for v in b] for b in boxes]


def draw_face(img: np.ndarray, box: list[float]) -> None:
    x1, y1, x2, y2 = (round(v) for v in box)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    ax, ay = (x2 - x1) // 2, (y2 - y1) // 2
    # filled ellipse touching the box edges: its bounding box is the label box (to a pixel)
    cv2.ellipse(img, (cx, cy), (ax - 1, ay - 1), 0, 0, 360, SKIN, -1, cv2.LINE_8)
    ex = max(2, ax // 3)
    for dx in (-ex, ex):
        cv2.circle(img, (cx + dx, cy - ay // 4), max(2, ax // 7), (40, 30, 30), -1)
    cv2.line(img, (cx - ax // 3, cy + ay // 2), (cx + ax // 3, cy + ay // 2), (60, 40, 120), 2)


def frame_image(i: int, width: int, height: int) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[:] = BG
    for b in face_boxes(i, width, height):
        draw_face(img, b)
    return img


def make_face_clip(path: str | Path, frames: int = 50, fps: int = 25, width: int = 320, height: int = 240,
                   start_s: float = 0.0) -> tuple[Path, FootageLabels]:
    """H.264 clip of drawn faces + its exact labels (dense, every frame, keyed by index).

    ``start_s``: presentation time of frame 0 (MPEG-TS files start around 1.4 s, some MKVs at 33 ms).
    The labels carry the encoder-side PTS only when ``start_s`` is 0 (containers such as MKV rescale).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tb = Fraction(1, fps * 1000)
    labels = FootageLabels(width=width, height=height, fps=float(fps), dense=True, num_frames=frames,
                           time_base=tb, video=path.name)
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt, st.time_base = width, height, "yuv420p", tb
        st.codec_context.max_b_frames = 0
        st.options = {"preset": "ultrafast", "crf": "18", "x264-params": "threads=1:sliced-threads=0"}
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(frame_image(i, width, height), format="bgr24")
            vf.pts = i * 1000 + round(start_s / tb)
            vf.time_base = tb
            for p in st.encode(vf):
                out.mux(p)
            labels.frames[i] = FrameLabels(i, np.array(face_boxes(i, width, height)).reshape(-1, 4),
                                           pts=i * 1000 if not start_s else None)
        for p in st.encode(None):
            out.mux(p)
    return path, labels


# ----------------------------------------------------------------------------------- oracle detector

def find_faces(bgr: np.ndarray, min_area: int = 60) -> np.ndarray:
    """(K,5) xyxy+score: skin-coloured blobs (the drawn faces), score by fill ratio."""
    diff = np.abs(bgr.astype(np.int16) - np.array(SKIN, np.int16)).max(axis=2)
    mask = (diff < 40).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        if area < min_area:
            continue
        out.append([x, y, x + w, y + h, min(0.99, 0.5 + area / (w * h) / 2)])
    return np.array(out, np.float64).reshape(-1, 5)


@dataclass
class Dets:
    """Duck type of models.facedet.postprocess.Detections (importing that package loads torch: slow)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None
    truncated: int = 0


class OracleDetector:
    """A stand-in for the face detector that finds the drawn faces (for real-pipeline metric tests).

    ``drop_every``: drop the leftmost face of every frame (recall ~ lower); ``shift``: move boxes
    right by this fraction of their width (IoU < 0.5 -> all false positives).
    """

    def __init__(self, name: str = "oracle", drop_leftmost: bool = False, shift: float = 0.0):
        self.drop_leftmost = drop_leftmost
        self.shift = shift
        self.info = ModelInfo(name=name, version="test", sha256=f"{name}-{int(drop_leftmost)}-{shift}",
                              runtime="numpy", precision="fp32", input_size=None)
        self.threshold = 0.5

    def detect(self, images: list[np.ndarray]) -> list:
        out = []
        for im in images:
            d = find_faces(im)
            if self.drop_leftmost and len(d):
                d = np.delete(d, int(np.argmin(d[:, 0])), axis=0)
            if self.shift and len(d):
                w = d[:, 2] - d[:, 0]
                d[:, 0] += self.shift * w
                d[:, 2] += self.shift * w
            out.append(Dets(d[:, :4].astype(np.float32), d[:, 4].astype(np.float32)))
        return out


# -------------------------------------------------------------------------------------- event lists

MODEL = ModelInfo(name="synthetic", version="0", sha256="0" * 64, runtime="numpy")


def make_event(cam: str, run_id: str, seq: int, boxes, scores=None, *, pts: int | None = None,
               time_base: str = "1/25000", width: int = 320, height: int = 240, total_ms: float = 10.0,
               capture_ns: int | None = None) -> DetectionEvent:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.full(len(boxes), 0.9) if scores is None else np.asarray(scores, np.float64)
    return DetectionEvent(
        event_id=f"{cam}:{run_id}:{seq}", camera_id=cam, source=Source(kind="replay", run_id=run_id),
        frame=FrameInfo(seq=seq, pts=pts, time_base=time_base, capture_ns=capture_ns or time.time_ns(),
                        width=width, height=height),
        detections=[Detection(box=tuple(float(v) for v in b), score=float(s))
                    for b, s in zip(boxes, scores, strict=True)],
        model=MODEL, timings_ms=Timings(total=total_ms, queue=total_ms / 2, infer=1.0, decode=0.5), worker_id="w",
    )
