"""The official WIDER FACE evaluation protocol (easy / medium / hard AP), plus P/R/F1 at a threshold.

Faithful to the official MATLAB ``wider_eval.m`` and its Python port (``evaluation.py``):

* ground truth from ``wider_face_val.mat``; ``wider_{easy,medium,hard}_val.mat`` ``gt_list`` = 1-based
  indices of the faces that count in each setting, every other face is an *ignore* region;
  images with no face carry one ``0 0 0 0`` box in the .mat and are evaluated as such;
* on a subset of the images (``images_dir``), every list is restricted to the images present;
* predictions ``x y w h score`` per image, rows sorted by score descending (stable);
  missing image = empty prediction (its faces still count in the recall denominator);
* scores min-max normalised over all detections of all images (``max`` starts at 0, ``min`` at 1,
  as in the official code); if all scores are equal they all become 1 (the official code divides by 0);
* per image, detections in score order each take the single max-IoU face (first on ties, IoU >= 0.5,
  VOC +1 convention, corners ``x + w``); a match to an ignored face is neither TP nor FP, a second match
  to an already recalled face is an FP, no second-best face is tried; images with no prediction or no
  gt row are skipped for the curve (their faces still count);
* 1,000 thresholds ``1 - (t+1)/1000``; proposals and recalled faces summed over images; precision =
  recalled / proposals (0, not NaN, with no proposal), recall = recalled / faces of the setting;
  AP = VOC area under the precision envelope.

Extras (not part of the official numbers): precision / recall / F1 at a raw (un-normalised) score
threshold per setting and over all faces ("all": every face counts, detections on face-less images are
FPs), and recall at that threshold broken down by the WIDER attributes and by face size.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.evaluate.metrics import iou_voc, prf1, voc_ap
from training.widerio import ATTRIBUTES, read_prediction_dir, read_wider_labels, write_prediction_file

log = logging.getLogger(__name__)

SETTINGS = ("easy", "medium", "hard")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SIZE_BINS = ((0, 16, "tiny <16"), (16, 32, "small 16-32"), (32, 96, "medium 32-96"),
             (96, 1e9, "large >=96"))
ATTRIBUTE_VALUES = {
    "blur": {0: "clear", 1: "normal", 2: "heavy"},
    "expression": {0: "typical", 1: "exaggerate"},
    "illumination": {0: "normal", 1: "extreme"},
    "invalid": {0: "valid", 1: "invalid"},
    "occlusion": {0: "none", 1: "partial", 2: "heavy"},
    "pose": {0: "typical", 1: "atypical"},
}


# ----------------------------------------------------------------------------------------- ground truth

@dataclass
class WiderGroundTruth:
    """Ground truth restricted to the scored images, in .mat order.

    keys: ``event/name`` (name without extension); boxes: (n,4) float64 ``x y w h``;
    keep[setting][i]: 0-based indices of image i's faces that count in ``setting``;
    attrs[i]: (n,6) int attributes (order :data:`training.widerio.ATTRIBUTES`) or None.
    """

    keys: list[str]
    boxes: list[np.ndarray]
    keep: dict[str, list[np.ndarray]]
    attrs: list[np.ndarray | None]

    def __len__(self) -> int:
        return len(self.keys)

    def num_faces(self, setting: str) -> int:
        if setting == "all":
            return int(sum(_real_faces(b) for b in self.boxes))
        return int(sum(len(k) for k in self.keep[setting]))


def _real_faces(b: np.ndarray) -> int:
    """Faces of an image for the "all" count: the official empty-image placeholder 0 0 0 0 is no face."""
    return int(np.sum(~np.all(b == 0, axis=1))) if len(b) else 0


def list_images(images_dir: str | Path) -> dict[str, Path]:
    """name (stem) -> path, for every image under images_dir (any depth)."""
    out = {}
    for p in sorted(Path(images_dir).rglob("*")):
        if p.suffix.lower() in IMAGE_EXTS and p.is_file():
            out[p.stem] = p
    return out


def load_wider_gt(gt_dir: str | Path, images_dir: str | Path | None = None,
                  bbx_gt_txt: str | Path | None = None, names: set[str] | None = None) -> WiderGroundTruth:
    """Load the official .mat ground truth, restricted to images present in ``images_dir`` (or ``names``).

    Attributes come from ``bbx_gt_txt`` (official text labels) when given/found, else from the .mat.
    """
    from scipy.io import loadmat

    gt_dir = Path(gt_dir)
    m = loadmat(str(gt_dir / "wider_face_val.mat"))
    sets = {s: loadmat(str(gt_dir / f"wider_{s}_val.mat"))["gt_list"] for s in SETTINGS}
    present: set[str] | None = None
    if images_dir is not None:
        present = set(list_images(images_dir))
    if names is not None:
        present = set(names) if present is None else present & set(names)

    txt_attrs: dict[str, np.ndarray] = {}
    if bbx_gt_txt is None:
        for cand in (gt_dir.parent / "wider_face_val_bbx_gt.txt",
                     gt_dir / "wider_face_val_bbx_gt.txt"):
            if cand.exists():
                bbx_gt_txt = cand
                break
    if bbx_gt_txt is not None and Path(bbx_gt_txt).exists():
        for img in read_wider_labels(bbx_gt_txt):
            txt_attrs[Path(img.path).stem] = img.attrs

    att_lists = [m.get(f"{a}_label_list") for a in ATTRIBUTES]
    keys, boxes, attrs = [], [], []
    keep: dict[str, list[np.ndarray]] = {s: [] for s in SETTINGS}
    for e in range(len(m["event_list"])):
        event = str(m["event_list"][e][0][0])
        files = m["file_list"][e][0]
        bbx = m["face_bbx_list"][e][0]
        for j in range(len(files)):
            name = str(files[j][0][0])
            if present is not None and name not in present:
                continue
            b = np.asarray(bbx[j][0], np.float64).reshape(-1, 4)
            keys.append(f"{event}/{name}")
            boxes.append(b)
            for s in SETTINGS:
                idx = np.asarray(sets[s][e][0][j][0], np.int64).reshape(-1) - 1
                keep[s].append(idx)
            a = txt_attrs.get(name)
            if a is not None and len(a) == len(b):
                attrs.append(np.asarray(a, np.int32))
            elif all(x is not None for x in att_lists):
                cols = [np.asarray(x[e][0][j][0], np.int32).reshape(-1) for x in att_lists]
                attrs.append(np.stack(cols, 1))
            else:
                attrs.append(None)
    if present is not None and len(keys) < len(present):
        log.warning("%d images in %s are not in the ground truth and are not scored",
                    len(present) - len(keys), images_dir)
    return WiderGroundTruth(keys, boxes, keep, attrs)


# ------------------------------------------------------------------------------------------ the protocol

def _lookup(preds: Mapping[str, np.ndarray], key: str) -> np.ndarray | None:
    name = key.split("/", 1)[1]
    for k in (key, name, key + ".jpg", name + ".jpg"):
        if k in preds:
            return preds[k]
    return None


def _prepare(preds: Mapping[str, np.ndarray], gt: WiderGroundTruth) -> list[np.ndarray]:
    """Per gt image: (K,5) float64 xywh+score sorted by score desc (stable); empty if missing."""
    out = []
    for key in gt.keys:
        p = _lookup(preds, key)
        if p is None:
            out.append(np.zeros((0, 5)))
            continue
        p = np.asarray(p, np.float64).reshape(-1, 5)
        out.append(p[np.argsort(-p[:, 4], kind="stable")])
    return out


def normalise_scores(pred_list: list[np.ndarray]) -> list[np.ndarray]:
    """Official min-max normalisation over all detections (max starts at 0, min at 1)."""
    max_s, min_s = 0.0, 1.0
    for p in pred_list:
        if len(p):
            max_s = max(max_s, float(p[:, 4].max()))
            min_s = min(min_s, float(p[:, 4].min()))
    diff = max_s - min_s
    out = []
    for p in pred_list:
        q = p.copy()
        if len(q):
            q[:, 4] = (q[:, 4] - min_s) / diff if diff > 0 else 1.0
        out.append(q)
    return out


def match_image(pred_xywh: np.ndarray, gt_xywh: np.ndarray, iou_thresh: float = 0.5
                ) -> tuple[np.ndarray, np.ndarray]:
    """For each prediction (score order): its single max-IoU gt index and that IoU (VOC +1)."""
    p = np.asarray(pred_xywh, np.float64)[:, :4].copy()
    g = np.asarray(gt_xywh, np.float64)[:, :4].copy()
    p[:, 2:] += p[:, :2]
    g[:, 2:] += g[:, :2]
    ov = iou_voc(p, g)
    idx = ov.argmax(axis=1)  # first max on ties, like MATLAB max / numpy argmax
    return idx, ov[np.arange(len(p)), idx]


def image_eval(max_idx: np.ndarray, max_ov: np.ndarray, counts: np.ndarray, iou_thresh: float = 0.5
               ) -> tuple[np.ndarray, np.ndarray]:
    """Official ``image_evaluation`` (vectorised): returns pred_recall (K,) and proposal_list (K,) in {1,-1}.

    counts: (N,) bool, True where the face counts in the setting (official ``ignore == 1``).
    """
    k = len(max_idx)
    matched = max_ov >= iou_thresh
    counted = counts[max_idx] if len(counts) else np.zeros(k, bool)
    proposal = np.where(matched & ~counted, -1, 1)
    hit = np.flatnonzero(matched & counted)
    first = np.zeros(k, np.int64)
    if len(hit):
        _, first_pos = np.unique(max_idx[hit], return_index=True)
        first[hit[first_pos]] = 1
    return np.cumsum(first), proposal


def img_pr_info(scores_norm: np.ndarray, proposal: np.ndarray, pred_recall: np.ndarray,
                thresh_num: int = 1000) -> np.ndarray:
    """Official ``image_pr_info``: (T,2) [proposals, recalled] at thresholds 1-(t+1)/T."""
    thresh = 1 - (np.arange(thresh_num) + 1) / thresh_num
    mask = scores_norm[None, :] >= thresh[:, None]  # (T,K)
    any_ = mask.any(axis=1)
    k = len(scores_norm)
    last = k - 1 - np.argmax(mask[:, ::-1], axis=1)  # last index with score >= thresh
    cum_prop = np.cumsum(proposal == 1)
    out = np.zeros((thresh_num, 2))
    out[any_, 0] = cum_prop[last[any_]]
    out[any_, 1] = pred_recall[last[any_]]
    return out


@dataclass
class SettingCurve:
    ap: float
    faces: int
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


def evaluate_wider(preds: Mapping[str, np.ndarray] | str | Path, gt: WiderGroundTruth,
                   iou_thresh: float = 0.5, thresh_num: int = 1000) -> dict[str, SettingCurve]:
    """Official easy/medium/hard AP. ``preds``: {image name or event/name: (K,5) x y w h score} or a
    prediction directory (``<event>/<name>.txt``)."""
    if isinstance(preds, str | Path):
        preds = read_prediction_dir(preds)
    plist = normalise_scores(_prepare(preds, gt))
    thresh = 1 - (np.arange(thresh_num) + 1) / thresh_num
    matches = []
    for p, g in zip(plist, gt.boxes, strict=True):
        matches.append(match_image(p, g, iou_thresh) if len(p) and len(g) else None)
    out = {}
    for s in SETTINGS:
        pr = np.zeros((thresh_num, 2))
        faces = 0
        for i, (p, g) in enumerate(zip(plist, gt.boxes, strict=True)):
            keep = gt.keep[s][i]
            faces += len(keep)
            if matches[i] is None:
                continue
            counts = np.zeros(len(g), bool)
            counts[keep] = True
            pred_recall, proposal = image_eval(*matches[i], counts, iou_thresh)
            pr += img_pr_info(p[:, 4], proposal, pred_recall, thresh_num)
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = np.where(pr[:, 0] > 0, pr[:, 1] / pr[:, 0], 0.0)
        rec = pr[:, 1] / faces if faces else np.zeros(thresh_num)
        out[s] = SettingCurve(voc_ap(rec, prec), faces, thresh, prec, rec)
    return out


def _size_bin(w: float, h: float) -> str:
    size = max(w, h)
    for lo, hi, label in SIZE_BINS:
        if lo <= size < hi:
            return label
    return SIZE_BINS[-1][2]


def evaluate_at_threshold(preds: Mapping[str, np.ndarray], gt: WiderGroundTruth, threshold: float,
                          iou_thresh: float = 0.5) -> tuple[dict, dict, dict]:
    """P/R/F1 at a raw score threshold per setting and "all" (every face counts; FPs on face-less images
    counted), recall by attribute and by face size (on "all"). Same matching as the protocol."""
    plist = _prepare(preds, gt)
    tp = dict.fromkeys((*SETTINGS, "all"), 0)
    fp = dict.fromkeys((*SETTINGS, "all"), 0)
    attr_hits: dict[str, dict[int, list[int]]] = {a: {} for a in ATTRIBUTES}
    size_hits: dict[str, list[int]] = {label: [0, 0] for _, _, label in SIZE_BINS}
    for i, (p, g) in enumerate(zip(plist, gt.boxes, strict=True)):
        p = p[p[:, 4] >= threshold]
        real = ~np.all(g == 0, axis=1) if len(g) else np.zeros(0, bool)
        recalled_all = np.zeros(len(g), bool)
        if len(p) and len(g):
            idx, ov = match_image(p, g, iou_thresh)
            for s in (*SETTINGS, "all"):
                counts = real.copy() if s == "all" else np.zeros(len(g), bool)
                if s != "all":
                    counts[gt.keep[s][i]] = True
                pred_recall, proposal = image_eval(idx, ov, counts, iou_thresh)
                n_prop = int(np.sum(proposal == 1))
                n_rec = int(pred_recall[-1])
                tp[s] += n_rec
                fp[s] += n_prop - n_rec
                if s == "all":
                    hit = (ov >= iou_thresh) & counts[idx]
                    recalled_all[idx[hit]] = True
        elif len(p):
            for s in (*SETTINGS, "all"):
                fp[s] += len(p)
        a = gt.attrs[i]
        for f in np.flatnonzero(real):
            r = int(recalled_all[f])
            sb = size_hits[_size_bin(g[f, 2], g[f, 3])]
            sb[0] += 1
            sb[1] += r
            if a is not None:
                for ai, name in enumerate(ATTRIBUTES):
                    c = attr_hits[name].setdefault(int(a[f, ai]), [0, 0])
                    c[0] += 1
                    c[1] += r
    prf = {s: prf1(tp[s], fp[s], gt.num_faces(s)).to_dict() for s in (*SETTINGS, "all")}
    attr = {
        name: {
            ATTRIBUTE_VALUES[name].get(v, str(v)): {"faces": c[0], "recall": c[1] / c[0] if c[0] else 0.0}
            for v, c in sorted(vals.items())
        }
        for name, vals in attr_hits.items() if vals
    }
    size = {label: {"faces": c[0], "recall": c[1] / c[0] if c[0] else 0.0} for label, c in size_hits.items()}
    return prf, attr, size


# ------------------------------------------------------------------------------------------------ result

@dataclass
class WiderEvalResult:
    name: str
    ap: dict[str, float]
    threshold: float
    at_threshold: dict[str, dict]
    attribute_recall: dict[str, dict]
    size_recall: dict[str, dict]
    num_images: int
    num_faces: dict[str, int]
    num_detections: int
    ms_per_image: float | None = None
    extra: dict = field(default_factory=dict)
    curves: dict[str, SettingCurve] | None = field(default=None, repr=False)

    def to_dict(self, curves: bool = False) -> dict:
        d = asdict(self)
        d.pop("curves")
        if curves and self.curves:
            d["curves"] = {s: {"precision": c.precision.tolist(), "recall": c.recall.tolist()}
                           for s, c in self.curves.items()}
        return d

    def to_json(self, curves: bool = False, indent: int = 2) -> str:
        return json.dumps(self.to_dict(curves), indent=indent)

    def to_markdown(self) -> str:
        ap = self.ap
        lines = [
            f"### {self.name}: WIDER val mini ({self.num_images} images), official protocol",
            "",
            "| AP easy | AP medium | AP hard | faces e/m/h | detections | ms/image |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| {ap['easy']:.3f} | {ap['medium']:.3f} | {ap['hard']:.3f} | "
            f"{self.num_faces['easy']}/{self.num_faces['medium']}/{self.num_faces['hard']} | "
            f"{self.num_detections} | "
            f"{'-' if self.ms_per_image is None else f'{self.ms_per_image:.1f}'} |",
            "",
            f"At score >= {self.threshold:g} (raw scores):",
            "",
            "| setting | precision | recall | F1 | TP | FP | faces |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s, m in self.at_threshold.items():
            lines.append(f"| {s} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['tp']} | "
                         f"{m['fp']} | {m['faces']} |")
        lines += ["", "Recall at the threshold by attribute (all faces):", "",
                  "| attribute | value | faces | recall |", "| --- | --- | --- | --- |"]
        for a, vals in self.attribute_recall.items():
            for v, m in vals.items():
                lines.append(f"| {a} | {v} | {m['faces']} | {m['recall']:.3f} |")
        for v, m in self.size_recall.items():
            lines.append(f"| size | {v} | {m['faces']} | {m['recall']:.3f} |")
        return "\n".join(lines) + "\n"


def evaluate_predictions(preds: Mapping[str, np.ndarray] | str | Path, gt: WiderGroundTruth,
                         threshold: float = 0.5, name: str = "detector", iou_thresh: float = 0.5,
                         ms_per_image: float | None = None) -> WiderEvalResult:
    """Full evaluation of ready predictions (xywh + score) against loaded ground truth."""
    if isinstance(preds, str | Path):
        preds = read_prediction_dir(preds)
    curves = evaluate_wider(preds, gt, iou_thresh)
    prf, attr, size = evaluate_at_threshold(preds, gt, threshold, iou_thresh)
    n_det = sum(len(p) for p in _prepare(preds, gt))
    return WiderEvalResult(
        name=name,
        ap={s: c.ap for s, c in curves.items()},
        threshold=float(threshold),
        at_threshold=prf,
        attribute_recall=attr,
        size_recall=size,
        num_images=len(gt),
        num_faces={s: gt.num_faces(s) for s in (*SETTINGS, "all")},
        num_detections=int(n_det),
        ms_per_image=ms_per_image,
        curves=curves,
    )


DetectFn = Callable[[np.ndarray], np.ndarray]


def evaluate_detector(detect_fn: DetectFn, images_dir: str | Path, gt_dir: str | Path, *,
                      threshold: float = 0.5, min_score: float | None = None, name: str = "detector",
                      bbx_gt_txt: str | Path | None = None, pred_dir: str | Path | None = None,
                      progress: bool = True, iou_thresh: float = 0.5) -> WiderEvalResult:
    """Run ``detect_fn(bgr) -> (K,5) [x1,y1,x2,y2,score]`` (original pixels) on every scored image.

    threshold: the detector's shipped score threshold for P/R/F1 (raw scores).
    min_score: drop detections below it before evaluation (published numbers use 0.02).
    pred_dir: also write official prediction files there.
    """
    import cv2
    from tqdm import tqdm

    gt = load_wider_gt(gt_dir, images_dir, bbx_gt_txt)
    paths = list_images(images_dir)
    preds: dict[str, np.ndarray] = {}
    total_s = 0.0
    n_timed = 0
    for key in tqdm(gt.keys, desc=f"eval {name}", disable=not progress, unit="img"):
        event, nm = key.split("/", 1)
        img = cv2.imread(str(paths[nm]), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("unreadable image %s: scored as an empty prediction", paths[nm])
            continue
        t0 = time.perf_counter()
        dets = np.asarray(detect_fn(img), np.float64).reshape(-1, 5)
        total_s += time.perf_counter() - t0
        n_timed += 1
        if min_score is not None:
            dets = dets[dets[:, 4] >= min_score]
        xywh = dets.copy()
        xywh[:, 2:4] -= xywh[:, 0:2]
        preds[key] = xywh
        if pred_dir is not None:
            write_prediction_file(pred_dir, event, nm, xywh)
    ms = 1000 * total_s / n_timed if n_timed else None
    return evaluate_predictions(preds, gt, threshold, name, iou_thresh, ms)
