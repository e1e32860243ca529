"""Face labels for recorded footage: the facestream JSON Lines format, MOT-style CSV, and a writer.

Footage labels (``.jsonl``, see docs/replay-eval.md)::

    {"format": "facestream-footage-labels", "version": 1, "width": 1280, "height": 720, "fps": 25.0,
     "time_base": "1/12800", "start_time": 0.0, "frames": 250, "dense": false, "video": "lobby.mp4"}
    {"frame": 0, "pts": 0, "boxes": [[412.0, 120.5, 470.0, 192.0]], "ignore": []}
    {"frame": 5, "pts": 2560, "boxes": [], "ignore": [[0, 0, 200, 90]]}

* The first line is a header (it has ``"format"``; ``width``/``height``/``fps`` are required).
* Every other line is one labelled frame, keyed by ``frame`` (0-based index in presentation order)
  and/or ``pts`` (in ``time_base`` units; a line with only ``pts`` needs the header's ``time_base``).
  ``boxes`` are faces, xyxy in pixels of a ``width`` x ``height`` frame; optional ``ignore`` regions
  (detections inside them are neither true nor false positives); optional ``scores`` (teacher labels).
* Frames without a line are *unlabelled* (not scored) unless the header says ``"dense": true``: then
  every frame of the video (``frames`` of them when given) is labelled and a missing line means
  "no face".

MOT-style CSV (``.csv``/``.txt``): ``frame,id,x,y,w,h,conf,...`` with 1-based frames; rows with
``conf == 0`` are ignore regions (the MOT ground-truth convention), the rest are faces. Size and fps
come from a ``seqinfo.ini`` next to the file or its parent (MOT layout), or from the caller.
"""

from __future__ import annotations

import configparser
import csv
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from core.video import iter_video_frames
from models.facedet.weights import file_sha256

FORMAT = "facestream-footage-labels"
VERSION = 1


class LabelsError(ValueError):
    """Malformed labels file; the message names the file and line."""


def _boxes(v: Any, where: str) -> np.ndarray:
    if v is None:
        return np.zeros((0, 4), np.float64)
    try:
        a = np.asarray(v, np.float64).reshape(-1, 4)
    except (ValueError, TypeError) as exc:
        raise LabelsError(f"{where}: boxes must be a list of [x1, y1, x2, y2]: {exc}") from None
    if not np.all(np.isfinite(a)):
        raise LabelsError(f"{where}: non-finite box coordinate")
    if np.any(a[:, 2] < a[:, 0]) or np.any(a[:, 3] < a[:, 1]):
        raise LabelsError(f"{where}: box with x2 < x1 or y2 < y1 (boxes are xyxy, not xywh)")
    return a


@dataclass
class FrameLabels:
    frame: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))  # (N,4) xyxy faces
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))  # (M,4) xyxy regions
    pts: int | None = None
    scores: np.ndarray | None = None  # teacher scores of `boxes`, informational

    def to_json(self) -> dict:
        d: dict[str, Any] = {"frame": int(self.frame)}
        if self.pts is not None:
            d["pts"] = int(self.pts)
        d["boxes"] = [[round(float(v), 2) for v in b] for b in self.boxes]
        d["ignore"] = [[round(float(v), 2) for v in b] for b in self.ignore]
        if self.scores is not None and len(self.scores):
            d["scores"] = [round(float(s), 4) for s in self.scores]
        return d


@dataclass
class FootageLabels:
    width: int
    height: int
    fps: float
    frames: dict[int, FrameLabels] = field(default_factory=dict)
    dense: bool = False
    num_frames: int | None = None  # frames in the video, when known
    time_base: Fraction | None = None
    start_time: float | None = None  # seconds: PTS * time_base of frame 0 (None: take it from the replay)
    video: str = ""
    meta: dict = field(default_factory=dict)  # other header fields, kept
    path: str = ""
    sha256: str = ""

    def get(self, index: int) -> FrameLabels | None:
        """The labels of frame ``index``, or None when that frame is unlabelled (not scored)."""
        fl = self.frames.get(index)
        if fl is not None:
            return fl
        if self.dense and index >= 0 and (self.num_frames is None or index < self.num_frames):
            return FrameLabels(index)
        return None

    @property
    def faces(self) -> int:
        return int(sum(len(f.boxes) for f in self.frames.values()))

    def header(self) -> dict:
        h: dict[str, Any] = {"format": FORMAT, "version": VERSION, "width": int(self.width),
                             "height": int(self.height), "fps": float(self.fps), "dense": bool(self.dense)}
        if self.time_base is not None:
            h["time_base"] = f"{self.time_base.numerator}/{self.time_base.denominator}"
        if self.start_time is not None:
            h["start_time"] = float(self.start_time)
        if self.num_frames is not None:
            h["frames"] = int(self.num_frames)
        if self.video:
            h["video"] = self.video
        for k, v in self.meta.items():
            h.setdefault(k, v)
        return h

    def frame_index(self, t_s: float, origin_s: float) -> int:
        """Source frame index of presentation time ``t_s`` (seconds), frame 0 shown at ``origin_s``."""
        return math.floor((t_s - origin_s) * self.fps + 0.5)


def parse_time_base(tb: Any) -> Fraction | None:
    if tb is None or tb == "":
        return None
    try:
        f = Fraction(str(tb))
    except (ValueError, ZeroDivisionError):
        raise LabelsError(f"bad time_base {tb!r}: expected 'num/den'") from None
    if f <= 0:
        raise LabelsError(f"bad time_base {tb!r}: must be > 0")
    return f


# ------------------------------------------------------------------------------------------ JSON Lines

def read_footage_labels(path: str | Path) -> FootageLabels:
    path = Path(path)
    header: dict | None = None
    frames: dict[int, FrameLabels] = {}
    pending_pts: list[tuple[int, dict]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabelsError(f"{where}: not JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise LabelsError(f"{where}: each line must be a JSON object")
            if header is None:
                if "format" not in obj and ("frame" in obj or "pts" in obj):
                    raise LabelsError(f"{where}: the first line must be the header "
                                      f'({{"format": "{FORMAT}", "width": ..., "height": ..., "fps": ...}})')
                if obj.get("format", FORMAT) != FORMAT:
                    raise LabelsError(f"{where}: format {obj.get('format')!r} is not {FORMAT!r}")
                if int(obj.get("version", VERSION)) > VERSION:
                    raise LabelsError(f"{where}: labels version {obj['version']} is newer than this reader "
                                      f"({VERSION})")
                for k in ("width", "height", "fps"):
                    if k not in obj:
                        raise LabelsError(f"{where}: header lacks {k!r}")
                header = obj
                continue
            if "frame" not in obj and "pts" not in obj:
                raise LabelsError(f"{where}: a frame line needs 'frame' or 'pts'")
            if "frame" in obj:
                idx = int(obj["frame"])
                if idx < 0:
                    raise LabelsError(f"{where}: negative frame index")
                _add(frames, _frame_from_json(idx, obj, where), where)
            else:
                pending_pts.append((lineno, obj))
    if header is None:
        raise LabelsError(f"{path}: empty labels file (no header)")
    known = {"format", "version", "width", "height", "fps", "dense", "frames", "time_base", "start_time", "video"}
    labels = FootageLabels(
        width=int(header["width"]), height=int(header["height"]), fps=float(header["fps"]),
        dense=bool(header.get("dense", False)),
        num_frames=int(header["frames"]) if header.get("frames") is not None else None,
        time_base=parse_time_base(header.get("time_base")),
        start_time=float(header["start_time"]) if header.get("start_time") is not None else None,
        video=str(header.get("video", "")), meta={k: v for k, v in header.items() if k not in known},
        path=str(path), sha256=file_sha256(path),
    )
    if labels.fps <= 0 or labels.width <= 0 or labels.height <= 0:
        raise LabelsError(f"{path}: header width, height and fps must be > 0")
    if pending_pts:
        if labels.time_base is None:
            raise LabelsError(f"{path}:{pending_pts[0][0]}: frame keyed by 'pts' but the header has no time_base")
        origin = labels.start_time if labels.start_time is not None else 0.0
        for lineno, obj in pending_pts:
            t = float(int(obj["pts"]) * labels.time_base)
            idx = labels.frame_index(t, origin)
            _add(frames, _frame_from_json(idx, obj, f"{path}:{lineno}"), f"{path}:{lineno}")
    labels.frames = dict(sorted(frames.items()))
    return labels


def _frame_from_json(idx: int, obj: dict, where: str) -> FrameLabels:
    boxes = _boxes(obj.get("boxes"), where)
    scores = None
    if obj.get("scores") is not None:
        scores = np.asarray(obj["scores"], np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise LabelsError(f"{where}: {len(scores)} scores for {len(boxes)} boxes")
    return FrameLabels(idx, boxes, _boxes(obj.get("ignore"), where),
                       int(obj["pts"]) if obj.get("pts") is not None else None, scores)


def _add(frames: dict[int, FrameLabels], fl: FrameLabels, where: str) -> None:
    if fl.frame in frames:
        raise LabelsError(f"{where}: frame {fl.frame} labelled twice")
    frames[fl.frame] = fl


def write_footage_labels(path: str | Path, labels: FootageLabels) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        w = FootageWriter(f, labels)
        for fl in labels.frames.values():
            w.write(fl)
    return path


class FootageWriter:
    """Streaming writer: the header at construction, then one line per :meth:`write`."""

    def __init__(self, f: TextIO, header: FootageLabels):
        self.f = f
        self.n = 0
        f.write(json.dumps(header.header()) + "\n")

    def write(self, fl: FrameLabels) -> None:
        self.f.write(json.dumps(fl.to_json()) + "\n")
        self.n += 1


# ------------------------------------------------------------------------------------------ MOT CSV

def read_seqinfo(path: str | Path) -> dict:
    """MOT ``seqinfo.ini`` -> {width, height, fps, frames} (missing keys left out)."""
    cp = configparser.ConfigParser()
    cp.read(path)
    if "Sequence" not in cp:
        return {}
    s = cp["Sequence"]
    out: dict[str, Any] = {}
    for key, name, typ in (("imWidth", "width", int), ("imHeight", "height", int),
                           ("frameRate", "fps", float), ("seqLength", "frames", int)):
        if key in s:
            out[name] = typ(s[key])
    return out


def read_mot_csv(path: str | Path, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, dense: bool = False, num_frames: int | None = None) -> FootageLabels:
    """MOT-style ``frame,id,x,y,w,h,conf,...`` (1-based frames) -> FootageLabels.

    ``conf == 0`` rows are ignore regions. Missing size/fps are read from ``seqinfo.ini`` in the file's
    folder or its parent; a missing fps is an error (PTS matching needs it).
    """
    path = Path(path)
    info: dict = {}
    for d in (path.parent, path.parent.parent):
        if (d / "seqinfo.ini").is_file():
            info = read_seqinfo(d / "seqinfo.ini")
            break
    width = width or info.get("width")
    height = height or info.get("height")
    fps = fps or info.get("fps")
    num_frames = num_frames or info.get("frames")
    if not fps:
        raise LabelsError(f"{path}: MOT labels need the video fps (pass it, or put a seqinfo.ini next to them)")
    boxes: dict[int, list] = {}
    ignore: dict[int, list] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            if lineno == 1 and not _is_number(row[0]):
                continue  # a header row
            if len(row) < 6:
                raise LabelsError(f"{path}:{lineno}: expected frame,id,x,y,w,h[,conf,...], got {len(row)} columns")
            try:
                frame = int(float(row[0]))
                x, y, w, h = (float(v) for v in row[2:6])
                conf = float(row[6]) if len(row) > 6 and row[6].strip() else 1.0
            except ValueError as exc:
                raise LabelsError(f"{path}:{lineno}: {exc}") from None
            if frame < 1:
                raise LabelsError(f"{path}:{lineno}: MOT frames are 1-based, got {frame}")
            if w < 0 or h < 0:
                raise LabelsError(f"{path}:{lineno}: negative width/height")
            (ignore if conf == 0 else boxes).setdefault(frame - 1, []).append([x, y, x + w, y + h])
    frames = {i: FrameLabels(i, _boxes(boxes.get(i), str(path)), _boxes(ignore.get(i), str(path)))
              for i in sorted(set(boxes) | set(ignore))}
    return FootageLabels(width=int(width or 0), height=int(height or 0), fps=float(fps), frames=frames,
                         dense=dense, num_frames=num_frames, path=str(path), sha256=file_sha256(path),
                         meta={"source_format": "mot"})


def write_mot_csv(path: str | Path, labels: FootageLabels) -> Path:
    """FootageLabels -> MOT CSV (faces conf 1, ignore regions conf 0; ids are per-frame counters)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        for fl in labels.frames.values():
            for conf, arr in ((1, fl.boxes), (0, fl.ignore)):
                for k, (x1, y1, x2, y2) in enumerate(arr):
                    w.writerow([fl.frame + 1, k + 1, f"{x1:.2f}", f"{y1:.2f}", f"{x2 - x1:.2f}", f"{y2 - y1:.2f}",
                                conf, -1, -1, -1])
    return path


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_labels(path: str | Path, fmt: str = "auto", **mot_kw) -> FootageLabels:
    """Read footage labels: ``fmt`` footage | mot | auto (by extension: .jsonl/.json -> footage)."""
    p = Path(path)
    if not p.is_file():
        raise LabelsError(f"no such labels file: {p}")
    if fmt == "auto":
        fmt = "mot" if p.suffix.lower() in (".csv", ".txt") else "footage"
    if fmt not in ("footage", "mot"):
        raise ValueError(f"unknown labels format {fmt!r} (footage | mot | auto)")
    try:
        return read_footage_labels(p) if fmt == "footage" else read_mot_csv(p, **mot_kw)
    except LabelsError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:  # a bad field
        raise LabelsError(f"{p}: malformed labels ({type(exc).__name__}: {str(exc)[:200]})") from None
    except UnicodeDecodeError:
        raise LabelsError(f"{p}: not a text labels file") from None


# ------------------------------------------------------------------------------ bootstrapping labels

def label_video(video: str | Path, out: str | Path, labeller: Callable[[np.ndarray], Any], *, every: int = 1,
                threshold: float = 0.5, ignore_below: float | None = 0.3, meta: dict | None = None,
                progress: Callable[[int], None] | None = None) -> FootageLabels:
    """Label every ``every``-th frame of ``video`` with ``labeller(bgr)`` and write footage labels.

    ``labeller`` returns (M,5) xyxy+score or an object with ``.dets`` (e.g. the teacher ensemble's
    Fused). Scores >= ``threshold`` become faces, [``ignore_below``, ``threshold``) ignore regions.
    Frames are keyed by index and PTS; the header records the first frame's time as ``start_time``.
    The result is a draft for hand correction.
    """
    info, frames = iter_video_frames(video, every)
    if not info["fps"]:
        raise LabelsError(f"{video}: cannot tell the frame rate")
    lo = threshold if ignore_below is None else min(ignore_below, threshold)
    header = FootageLabels(width=info["width"], height=info["height"], fps=info["fps"],
                           num_frames=info["frames"], time_base=info["time_base"], video=Path(video).name,
                           dense=every == 1, meta={"labelled_every": every, "label_threshold": threshold,
                                                   **(meta or {})})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    collected: dict[int, FrameLabels] = {}
    first_t: float | None = None
    # the header needs start_time, known only after the first frame: write frames to memory first
    for vf in frames:
        if first_t is None:
            first_t = vf.t if vf.t is not None else 0.0
        res = labeller(vf.bgr)
        dets = np.asarray(getattr(res, "dets", res), np.float64).reshape(-1, 5)
        keep = dets[:, 4] >= lo
        d = dets[keep]
        face = d[:, 4] >= threshold
        collected[vf.index] = FrameLabels(vf.index, d[face, :4], d[~face, :4], vf.pts, d[face, 4])
        if progress is not None:
            progress(vf.index)
    header.start_time = first_t if first_t is not None else 0.0
    if header.num_frames is None and collected:
        header.num_frames = max(collected) + 1 if every == 1 else None
    header.frames = collected
    write_footage_labels(out, header)
    header.path, header.sha256 = str(out), file_sha256(out)
    return header


def frames_in(labels: FootageLabels, indices: Iterable[int]) -> list[FrameLabels]:
    """Labels of those of ``indices`` that are labelled."""
    return [fl for i in indices if (fl := labels.get(i)) is not None]
