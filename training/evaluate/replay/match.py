"""Match a run's events to footage labels, frame by frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from training.evaluate.footage_labels import FootageLabels, FrameLabels
from training.evaluate.metrics import iou_xyxy
from training.evaluate.replay.collect import RunData

# ----------------------------------------------------------------------------------------- matching

@dataclass
class FrameEval:
    """One event (or one missing frame) and what it was scored against."""

    run_id: str
    camera_id: str
    seq: int
    t: float | None = None  # seconds since the video's frame 0
    index: int | None = None  # source frame index (labels)
    labels: FrameLabels | None = None  # None: unlabelled, not scored
    dets: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))  # (K,5) xyxy+score, labels' pixels
    tp: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    ignored: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    missing: bool = False  # published, but no event
    total_ms: float | None = None
    queue_ms: float | None = None
    infer_ms: float | None = None
    decode_ms: float | None = None
    stream_ms: float | None = None  # run-stream entry time - capture time

    @property
    def scored(self) -> bool:
        return self.labels is not None and not self.missing

    @property
    def faces(self) -> int:
        return len(self.labels.boxes) if self.labels is not None else 0


def ioa(dets: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(K,M) intersection over the detection's own area."""
    a = np.asarray(dets, np.float64).reshape(-1, 4)
    b = np.asarray(regions, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    area = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(area[:, None] > 0, iw * ih / area[:, None], 0.0)


def match_frame(dets: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None, iou: float = 0.5,
                ignore_ioa: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """VOC greedy matching of one frame: returns (tp, ignored) boolean arrays over ``dets`` rows."""
    dets = np.asarray(dets, np.float64).reshape(-1, 5)
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    k = len(dets)
    tp = np.zeros(k, bool)
    ign = np.zeros(k, bool)
    if k == 0:
        return tp, ign
    ov = iou_xyxy(dets[:, :4], gt) if len(gt) else np.zeros((k, 0))
    inside = (ioa(dets[:, :4], ignore).max(1) >= ignore_ioa) if ignore is not None and len(ignore) else \
        np.zeros(k, bool)
    used = np.zeros(len(gt), bool)
    for i in np.argsort(-dets[:, 4], kind="stable"):
        if len(gt):
            j = int(np.argmax(ov[i]))
            if ov[i, j] >= iou:
                if not used[j]:
                    used[j] = True
                    tp[i] = True
                continue  # best face already taken: a duplicate, false positive
        ign[i] = inside[i]
    return tp, ign


def _event_time(ev: Any) -> float | None:
    f = ev.frame
    if f.pts is None or not f.time_base:
        return None
    try:
        return float(f.pts * Fraction(f.time_base))
    except (ValueError, ZeroDivisionError):
        return None


def match_run(run: RunData, labels: FootageLabels, iou: float = 0.5, ignore_ioa: float = 0.5
              ) -> tuple[list[FrameEval], dict]:
    """Map a run's events to label frames and match detections; returns (frames, pipeline stats)."""
    warnings: list[str] = []
    by_seq: dict[int, Any] = {}
    ms_by_seq: dict[int, int] = {}
    duplicates = 0
    for ev, ms in zip(run.events, run.entry_ms or [None] * len(run.events), strict=False):
        if ev.frame.seq in by_seq:
            duplicates += 1
            continue
        by_seq[ev.frame.seq] = ev
        if ms is not None:
            ms_by_seq[ev.frame.seq] = ms
    expected = run.expected
    if expected is None:
        expected = (max(by_seq) + 1) if by_seq else 0
        warnings.append(f"run {run.run_id}: no run info (frames_published); expecting seq 0..{expected - 1}")
    if run.info.get("status") not in (None, "done"):
        warnings.append(f"run {run.run_id}: replay status is {run.info.get('status')!r}"
                        + (f" ({run.info.get('error')})" if run.info.get("error") else ""))
    camera = run.info.get("camera_id") or (next(iter(by_seq.values())).camera_id if by_seq else "?")

    # origin: presentation time of source frame 0
    if labels.start_time is not None:
        origin = labels.start_time
    elif 0 in by_seq and _event_time(by_seq[0]) is not None:
        origin = _event_time(by_seq[0])
    else:
        ts = [t for ev in by_seq.values() if (t := _event_time(ev)) is not None]
        origin = min(ts) if ts else 0.0
        warnings.append(f"run {run.run_id}: seq 0 has no event/PTS; frame 0 assumed at t={origin:.3f}s")
    run_fps = float(run.info.get("fps") or 0) or None

    size_warned = False
    pts_mismatch = 0
    no_pts = 0
    frames: list[FrameEval] = []
    for seq in range(expected):
        ev = by_seq.get(seq)
        if ev is None:
            frames.append(FrameEval(run.run_id, camera, seq, missing=True))
            continue
        t_abs = _event_time(ev)
        if t_abs is not None:
            index = labels.frame_index(t_abs, origin)
            t = t_abs - origin
        elif run_fps:
            no_pts += 1
            index = round(seq * labels.fps / run_fps)
            t = seq / run_fps
        else:
            no_pts += 1
            index, t = None, None
        fl = labels.get(index) if index is not None else None
        if (fl is not None and fl.pts is not None and labels.time_base is not None and t_abs is not None
                and abs(float(fl.pts * labels.time_base) - t_abs) > 0.5 / labels.fps):
            pts_mismatch += 1
        sx = sy = 1.0
        if labels.width and labels.height and (ev.frame.width, ev.frame.height) != (labels.width, labels.height):
            sx, sy = labels.width / ev.frame.width, labels.height / ev.frame.height
            if not size_warned:
                warnings.append(f"run {run.run_id}: frames are {ev.frame.width}x{ev.frame.height}, labels "
                                f"{labels.width}x{labels.height}: detections scaled to the labels")
                size_warned = True
        dets = np.array([[d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy, d.score]
                         for d in ev.detections], np.float64).reshape(-1, 5)
        fe = FrameEval(run.run_id, ev.camera_id, seq, t, index, fl, dets,
                       total_ms=ev.timings_ms.total, queue_ms=ev.timings_ms.queue, infer_ms=ev.timings_ms.infer,
                       decode_ms=ev.timings_ms.decode)
        if seq in ms_by_seq:
            fe.stream_ms = ms_by_seq[seq] - ev.frame.capture_ns / 1e6
        if fl is not None:
            fe.tp, fe.ignored = match_frame(dets, fl.boxes, fl.ignore, iou, ignore_ioa)
        else:
            fe.tp, fe.ignored = np.zeros(len(dets), bool), np.zeros(len(dets), bool)
        frames.append(fe)
    if pts_mismatch:
        warnings.append(f"run {run.run_id}: {pts_mismatch} events map to a labelled frame whose PTS differs by "
                        "more than half a frame (labels made from another encode of the video?)")
    if no_pts:
        warnings.append(f"run {run.run_id}: {no_pts} events without PTS, matched by seq and fps")
    extra = sorted(s for s in by_seq if s >= expected)
    missing = [f.seq for f in frames if f.missing]
    stats = {
        "run_id": run.run_id, "camera_id": camera, "status": run.info.get("status", ""),
        "frames_decoded": int(run.info.get("frames_decoded") or 0), "frames_expected": expected,
        "events": len(by_seq), "duplicates": duplicates, "unexpected_seqs": extra[:100],
        "missing": len(missing), "missing_seqs": missing[:1000], "origin_s": origin,
        "labels": labels.path, "labels_sha256": labels.sha256, "labels_dense": labels.dense,
        "labelled_frames": len(labels.frames), "source_fps": float(run.info.get("source_fps") or 0),
        "sample_fps": run_fps or 0.0, "collect_wait_s": round(run.waited_s, 3),
        "replay_wall_s": float(run.info.get("wall_s") or 0), "warnings": warnings,
    }
    return frames, stats


