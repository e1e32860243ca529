"""Teacher labels: run several peer detectors, fuse them (WBF), write our WIDER-format labels.

Output format (see :mod:`training.widerio`): per face
``x y w h blur expression illumination invalid occlusion pose score [5 landmarks x y]``.
Attributes are 0 except ``invalid`` (column 8), which is 1 for an *ignore* region: a fused face whose
score is in ``[ignore_below, threshold)`` (or, in merge mode with ``fill_as='ignore'``, every added
teacher face). Faces with ``invalid == 0`` are labels. The score column is the fused teacher score.

The per-image entry point, reusable for video frames: :meth:`TeacherEnsemble.label_image`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from training.distill.fusion import weighted_box_fusion
from training.evaluate.metrics import iou_xyxy
from training.widerio import WiderImage, detections_to_image

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
INVALID_COL = 3  # index of `invalid` in the 6 attribute columns


@dataclass
class Fused:
    """Fused detections of one image: dets (M,5) xyxy+score, landmarks (M,5,2)|None, support (M,)."""

    dets: np.ndarray
    landmarks: np.ndarray | None
    support: np.ndarray
    per_teacher: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.dets)


class TeacherEnsemble:
    """Several teachers + WBF. ``label_image(bgr)`` is the per-image (or per-frame) labeller."""

    def __init__(self, teachers: Sequence, weights: Sequence[float] | None = None, iou_thr: float = 0.55,
                 skip_box_thr: float = 0.05):
        self.teachers = list(teachers)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.teachers)
        self.iou_thr = iou_thr
        self.skip_box_thr = skip_box_thr

    def run_teachers(self, bgr: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        return [t.detect(bgr) for t in self.teachers]

    def fuse(self, outs: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> Fused:
        dets = [o[0] for o in outs]
        lms = [o[1] for o in outs]
        if len(dets) == 1:  # a single teacher: no fusion, keep its scores
            d = dets[0][dets[0][:, 4] >= self.skip_box_thr]
            lm = None if lms[0] is None else lms[0][dets[0][:, 4] >= self.skip_box_thr]
            return Fused(d, lm, np.ones(len(d), np.int64), dets)
        f, fl, sup = weighted_box_fusion(dets, lms, self.weights, self.iou_thr, self.skip_box_thr)
        return Fused(f, fl, sup, dets)

    def label_image(self, bgr: np.ndarray) -> Fused:
        """Run every teacher on one BGR image/frame and fuse: boxes in original pixels."""
        return self.fuse(self.run_teachers(bgr))

    __call__ = label_image


def fused_to_wider(path: str, fused: Fused, threshold: float = 0.5, ignore_below: float | None = 0.3
                   ) -> WiderImage:
    """Fused faces >= threshold as labels, [ignore_below, threshold) as ignore regions (invalid=1)."""
    d = fused.dets
    lo = threshold if ignore_below is None else min(ignore_below, threshold)
    m = d[:, 4] >= lo
    lms = None if fused.landmarks is None else fused.landmarks[m]
    attrs = np.zeros((int(m.sum()), 6), np.int32)
    attrs[:, INVALID_COL] = (d[m, 4] < threshold).astype(np.int32)
    img = detections_to_image(path, d[m], lms, attrs)
    return img


def fill_missing(human: WiderImage, fused: Fused, threshold: float = 0.5, ignore_below: float | None = 0.3,
                 max_iou: float = 0.3, fill_as: str = "label", keep_human: bool = True) -> WiderImage:
    """Teacher faces that overlap no human box (IoU < max_iou with every one) added to/for ``human``.

    fill_as='label': added faces >= threshold are labels, [ignore_below, threshold) ignore;
    fill_as='ignore': every added face >= ignore_below is an ignore region.
    keep_human=False returns only the added faces (a "fill" file).
    """
    if fill_as not in ("label", "ignore"):
        raise ValueError("fill_as must be 'label' or 'ignore'")
    cand = fused_to_wider(human.path, fused, threshold, ignore_below)
    if len(cand) and len(human):
        ov = iou_xyxy(cand.xyxy, human.xyxy)
        new = ov.max(1) < max_iou
    else:
        new = np.ones(len(cand), bool)
    boxes, attrs = cand.boxes[new], cand.attrs[new].copy()
    scores = cand.scores[new] if cand.scores is not None else np.ones(int(new.sum()), np.float32)
    lms = None if cand.landmarks is None else cand.landmarks[new]
    if fill_as == "ignore":
        attrs[:, INVALID_COL] = 1
    if not keep_human:
        return WiderImage(human.path, boxes, attrs, scores, lms)
    n_h = len(human)
    h_scores = human.scores if human.scores is not None else np.ones(n_h, np.float32)
    h_lms = human.landmarks if human.landmarks is not None else np.full((n_h, 5, 2), np.nan, np.float32)
    all_lms = None
    if lms is not None or human.landmarks is not None:
        lms_ = lms if lms is not None else np.full((len(boxes), 5, 2), np.nan, np.float32)
        all_lms = np.concatenate([h_lms, lms_]).astype(np.float32)
    return WiderImage(human.path, np.concatenate([human.boxes, boxes]).astype(np.float32),
                      np.concatenate([human.attrs, attrs]).astype(np.int32),
                      np.concatenate([h_scores, scores]).astype(np.float32), all_lms)


def snap_to_teacher(human: WiderImage, fused: Fused, threshold: float = 0.5, min_iou: float = 0.4
                    ) -> tuple[WiderImage, int]:
    """``human`` with each box replaced by the teacher face (score >= threshold) it overlaps most, one to one,
    when their IoU is at least min_iou; the teacher's landmarks come with it where the human face has none.

    Why: sets drawn from different annotators disagree on where a face ends (facemask-web-2's boxes are
    ~1.3x the width of WIDER's); trained together they teach contradictory box extents and, through the
    IoU-quality score target, low scores on large faces. The teachers were trained on WIDER, so snapping
    to them puts every set in WIDER's convention. Faces the teachers miss keep their human box.
    Returns the snapped labels and how many boxes moved."""
    cand = fused_to_wider(human.path, fused, threshold, ignore_below=None)  # the teacher's labels, xywh
    if not len(human) or not len(cand):
        return human, 0
    ov = iou_xyxy(human.xyxy, cand.xyxy)
    boxes = human.boxes.astype(np.float32).copy()
    lms = (human.landmarks.copy() if human.landmarks is not None
           else np.full((len(human), 5, 2), np.nan, np.float32))
    pairs = np.argwhere(ov >= min_iou)
    pairs = pairs[np.argsort(-ov[pairs[:, 0], pairs[:, 1]], kind="stable")]  # best overlaps first
    used_h, used_t = set(), set()
    for h, t in pairs:
        if h in used_h or t in used_t:
            continue
        used_h.add(h)
        used_t.add(t)
        boxes[h] = cand.boxes[t]
        if cand.landmarks is not None and np.isnan(lms[h]).any():
            lms[h] = cand.landmarks[t]
    has_lms = human.landmarks is not None or cand.landmarks is not None
    return WiderImage(human.path, boxes, human.attrs, human.scores, lms if has_lms else None,
                      dict(human.extra)), len(used_h)


def list_images(root: str | Path) -> list[str]:
    """Image paths relative to root, sorted."""
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def iter_images(root: str | Path, rel_paths: Iterable[str]) -> Iterator[tuple[str, np.ndarray | None]]:
    for rel in rel_paths:
        img = cv2.imread(str(Path(root) / rel), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("unreadable image skipped: %s", Path(root) / rel)
        yield rel, img


# ------------------------------------------------------------------- raw teacher-detection cache (npz)

def save_cache(path: str | Path, names: list[str], outs: list[tuple[np.ndarray, np.ndarray | None]],
               meta: dict | None = None) -> None:
    """One teacher's raw detections on a set of images, concatenated with per-image counts."""
    counts = np.array([len(d) for d, _ in outs], np.int64)
    dets = np.concatenate([d for d, _ in outs]).astype(np.float32) if outs else np.zeros((0, 5), np.float32)
    has_l = bool(outs) and all(lm is not None for _, lm in outs)
    lms = np.concatenate([lm for _, lm in outs]).astype(np.float32) if has_l else np.zeros((0, 5, 2), np.float32)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, names=np.array(names), counts=counts, dets=dets, lms=lms, has_lms=has_l,
                        meta=np.array(repr(meta or {})))


def load_cache(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    with np.load(path, allow_pickle=False) as z:  # read each array once (NpzFile re-reads on access)
        names, counts, dets, lms, has_l = z["names"], z["counts"], z["dets"], z["lms"], bool(z["has_lms"])
    off = np.concatenate([[0], np.cumsum(counts)])
    return {str(n): (dets[off[i]:off[i + 1]], lms[off[i]:off[i + 1]] if has_l else None)
            for i, n in enumerate(names)}


def run_teacher_over(teacher, root: str | Path, names: Sequence[str], progress: bool = True
                     ) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray | None]], float]:
    """Run one teacher over images; returns readable names, outputs and ms/image."""
    from tqdm import tqdm

    done, outs = [], []
    t_total = 0.0
    for rel, img in tqdm(iter_images(root, names), total=len(names), desc=getattr(teacher, "name", "teacher"),
                         disable=not progress, unit="img"):
        if img is None:
            continue
        t0 = time.perf_counter()
        outs.append(teacher.detect(img))
        t_total += time.perf_counter() - t0
        done.append(rel)
    return done, outs, 1000 * t_total / max(len(done), 1)
