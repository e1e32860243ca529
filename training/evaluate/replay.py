"""Replay evaluation: score a replay run's detection events against footage labels, and gate new models.

    run = collect_run(redis, keys, run_id, wait_s=30)        # events of keys.run_events + keys.run_info
    report = evaluate_runs([(run, load_labels("lobby.jsonl"))], threshold=0.5)
    write_report(report, "out/")                             # report.json, report.md, frames.csv, PNG plots
    result = gate(report.data, json.load(open("old/report.json")), max_drop=0.01)

Frame matching. A replay publishes sampled frames with ``seq`` 0, 1, ... and the source frame's PTS and
time base (``FrameRef.pts``/``time_base``, copied into the event's ``frame``). An event's source frame
index is ``round((pts * time_base - origin) * fps)`` with ``fps`` the labels' frame rate and ``origin``
the presentation time of frame 0: the labels header's ``start_time`` when present (``facestream label
--video`` writes it, read with the same PyAV decoder), else the time of the run's seq-0 frame (the
sampler always keeps the first frame, so seq 0 *is* source frame 0). Events whose frame is not
labelled are not scored (unless the labels are dense).

Scoring (per camera and overall, all frames pooled): detections are matched per frame in descending
score order, VOC style: a detection whose best-IoU face has IoU >= ``iou`` (plain continuous IoU,
``metrics.iou_xyxy``) is a true positive if that face is still free, else a false positive (duplicate);
an unmatched detection lying inside an ignore region (intersection over its own area >= ``ignore_ioa``)
is neither. Precision/recall/F1 count the detections with score >= ``threshold``; AP is the VOC area
(``metrics.voc_ap``) over every published detection, so it is only complete down to the worker's own
score threshold (the report gives the lowest score seen).

Pipeline health: every published frame (``run_info.frames_published``, seq ``0..last_seq``) must have
exactly one event; frames without one are *errors*, counted and listed (and fail the gate by default:
their faces cannot be scored). Latency is the worker's capture -> event time (``timings_ms.total``)
plus its parts; the stream entry time of each event gives a second, Redis-clock view.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluate.footage_labels import FootageLabels, FrameLabels
from training.evaluate.metrics import iou_xyxy, prf1, voc_ap

REPORT_FORMAT = "facestream-replay-eval"
REPORT_VERSION = 1
GATED_METRICS = ("recall", "f1", "ap")
OVERALL = "overall"


class ReplayEvalError(RuntimeError):
    """The run cannot be evaluated (no such run, no events, unusable labels)."""


# --------------------------------------------------------------------------------------- collection

@dataclass
class RunData:
    run_id: str
    info: dict[str, str]
    events: list  # core.schema.DetectionEvent, in stream order
    entry_ms: list[int] = field(default_factory=list)  # Redis time (ms) each event entered the run stream
    waited_s: float = 0.0

    @property
    def expected(self) -> int | None:
        v = self.info.get("frames_published")
        return int(v) if v not in (None, "") else None

    @property
    def complete(self) -> bool:
        exp = self.expected
        return self.info.get("status") in ("done", "failed") and exp is not None and len(self.events) >= exp


def _d(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def read_run_info(r: Any, keys: Any, run_id: str) -> dict[str, str]:
    return {_d(k): _d(v) for k, v in (r.hgetall(keys.run_info(run_id)) or {}).items()}


def read_run_events(r: Any, keys: Any, run_id: str, after: str = "-", batch: int = 2000
                    ) -> tuple[list, list[int], str]:
    """Events of the run stream after entry id ``after`` (exclusive unless "-"); returns (events, ms, last id)."""
    from core.schema import DetectionEvent

    events, ms = [], []
    stream = keys.run_events(run_id)
    start = after
    last = after
    while True:
        rows = r.xrange(stream, min=start if start == "-" else f"({start}", count=batch)
        if not rows:
            break
        for eid, fields in rows:
            try:
                events.append(DetectionEvent.from_fields(fields))
            except ValueError:  # not an event entry
                continue
            ms.append(int(_d(eid).split("-", 1)[0]))
        last = start = _d(rows[-1][0])
        if len(rows) < batch:
            break
    return events, ms, last


def collect_run(r: Any, keys: Any, run_id: str, wait_s: float = 30.0, poll_s: float = 0.2) -> RunData:
    """The run's info and events; waits up to ``wait_s`` for the replay to end and every frame's event.

    Raises ReplayEvalError when neither the run info nor any event exists.
    """
    t0 = time.monotonic()
    events: list = []
    ms: list[int] = []
    last = "-"
    while True:
        info = read_run_info(r, keys, run_id)
        ev, m, last = read_run_events(r, keys, run_id, after=last)
        events += ev
        ms += m
        run = RunData(run_id, info, events, ms, time.monotonic() - t0)
        if run.complete or time.monotonic() - t0 >= wait_s:
            break
        time.sleep(poll_s)
    if not info and not events:
        raise ReplayEvalError(f"no replay run {run_id!r}: neither {keys.run_info(run_id)} nor "
                              f"{keys.run_events(run_id)} exists (wrong --run-id or Redis prefix?)")
    return run


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


# ------------------------------------------------------------------------------------------ scoring

def score_frames(frames: Sequence[FrameEval], threshold: float = 0.5, curve_points: int = 200) -> dict:
    """P/R/F1 at ``threshold`` and VOC AP over the scored frames (labelled, with an event)."""
    sc = [f for f in frames if f.scored]
    faces = int(sum(f.faces for f in sc))
    if sc:
        scores = np.concatenate([f.dets[:, 4] for f in sc])
        tp = np.concatenate([f.tp for f in sc])
        ign = np.concatenate([f.ignored for f in sc])
    else:
        scores, tp, ign = np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
    keep = ~ign
    s, t = scores[keep], tp[keep]
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    ctp = np.cumsum(t)
    cfp = np.cumsum(~t)
    recall = ctp / faces if faces else np.zeros(len(t))
    precision = ctp / np.maximum(ctp + cfp, 1)
    ap = voc_ap(recall, precision) if faces and len(t) else (0.0 if faces else None)
    at = s >= threshold
    m = prf1(int(t[at].sum()), int((~t[at]).sum()), faces)
    idx = np.unique(np.linspace(0, len(s) - 1, min(curve_points, len(s))).astype(int)) if len(s) else []
    return {
        "precision": m.precision, "recall": m.recall, "f1": m.f1, "ap": ap,
        "tp": m.tp, "fp": m.fp, "fn": faces - m.tp, "faces": faces,
        "detections": int(at.sum()), "detections_all": len(scores),
        "ignored": int((ign & (scores >= threshold)).sum()),
        "frames_scored": len(sc), "frames_unlabelled": sum(1 for f in frames if not f.missing and f.labels is None),
        "frames_missing": sum(1 for f in frames if f.missing),
        "min_score": float(scores.min()) if len(scores) else None,
        "curve": {"recall": [round(float(recall[i]), 5) for i in idx],
                  "precision": [round(float(precision[i]), 5) for i in idx],
                  "score": [round(float(s[i]), 5) for i in idx]},
    }


def latency_stats(values: Sequence[float | None]) -> dict:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if not len(v):
        return {"n": 0}
    p = np.percentile(v, [50, 90, 99])
    return {"n": len(v), "mean": round(float(v.mean()), 3), "p50": round(float(p[0]), 3),
            "p90": round(float(p[1]), 3), "p99": round(float(p[2]), 3), "max": round(float(v.max()), 3),
            "min": round(float(v.min()), 3)}


# ------------------------------------------------------------------------------------------- report

@dataclass
class ReplayReport:
    data: dict  # what report.json holds
    frames: list[FrameEval]  # per-frame detail (frames.csv, plots)

    @property
    def overall(self) -> dict:
        return self.data["overall"]


def evaluate_runs(runs: Sequence[tuple[RunData, FootageLabels]], threshold: float = 0.5, iou: float = 0.5,
                  ignore_ioa: float = 0.5) -> ReplayReport:
    """Score every (run, labels) pair; per camera and overall (pooled)."""
    if not runs:
        raise ReplayEvalError("nothing to evaluate")
    all_frames: list[FrameEval] = []
    pipelines = []
    models: dict[str, dict] = {}
    workers: set[str] = set()
    for run, labels in runs:
        frames, stats = match_run(run, labels, iou, ignore_ioa)
        all_frames += frames
        pipelines.append(stats)
        for ev in run.events:
            models.setdefault(ev.model.sha256 or ev.model.name, ev.model.model_dump())
            workers.add(ev.worker_id)
    if not any(not f.missing for f in all_frames):
        raise ReplayEvalError("the run(s) have no events: is a worker running on the same Redis prefix?")
    by_cam: dict[str, list[FrameEval]] = defaultdict(list)
    for f in all_frames:
        by_cam[f.camera_id].append(f)
    present = [f for f in all_frames if not f.missing]
    missing = [{"run_id": f.run_id, "camera_id": f.camera_id, "seq": f.seq} for f in all_frames if f.missing]
    warnings = [w for p in pipelines for w in p["warnings"]]
    if len(models) > 1:
        warnings.append(f"events from {len(models)} different models: {sorted(models)}")
    data = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"threshold": threshold, "iou": iou, "ignore_ioa": ignore_ioa, "iou_kind": "continuous",
                     "ap": "voc"},
        "runs": pipelines,
        "labels_sha256": sorted({p["labels_sha256"] for p in pipelines}),
        "models": list(models.values()), "workers": sorted(workers),
        OVERALL: score_frames(all_frames, threshold),
        "per_camera": {cam: score_frames(fs, threshold) for cam, fs in sorted(by_cam.items())},
        "pipeline": {
            "frames_expected": sum(p["frames_expected"] for p in pipelines),
            "events": sum(p["events"] for p in pipelines),
            "missing": len(missing), "duplicates": sum(p["duplicates"] for p in pipelines),
            "dropped": len(missing),  # a replay must never drop: every published frame needs its event
            "errors": missing[:1000],
        },
        "latency_ms": {
            "capture_to_event": latency_stats([f.total_ms for f in present]),
            "capture_to_stream": latency_stats([f.stream_ms for f in present]),
            "queue": latency_stats([f.queue_ms for f in present]),
            "infer": latency_stats([f.infer_ms for f in present]),
            "decode": latency_stats([f.decode_ms for f in present]),
        },
        "warnings": warnings,
    }
    return ReplayReport(data, all_frames)


def _fmt(v: Any, nd: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def report_markdown(report: ReplayReport | dict, gate_result: GateResult | None = None) -> str:
    d = report.data if isinstance(report, ReplayReport) else report
    s = d["settings"]
    lines = ["# Replay evaluation", "",
             f"Created {d['created']}; threshold {s['threshold']}, IoU {s['iou']} ({s['iou_kind']}), "
             f"AP {s['ap']}, ignore regions by IoA >= {s['ignore_ioa']}.", ""]
    for m in d.get("models", []):
        lines.append(f"Model: {m.get('name')} {m.get('version')} ({m.get('runtime')}, {m.get('precision')}, "
                     f"sha256 {str(m.get('sha256'))[:12]})")
    lines += ["", "## Accuracy", "",
              "| camera | P | R | F1 | AP | TP | FP | FN | faces | frames scored | unlabelled | missing |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = [*d["per_camera"].items(), (f"**{OVERALL}**", d[OVERALL])]
    for cam, m in rows:
        lines.append(f"| {cam} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} | {_fmt(m['ap'])} | "
                     f"{m['tp']} | {m['fp']} | {m['fn']} | {m['faces']} | {m['frames_scored']} | "
                     f"{m['frames_unlabelled']} | {m['frames_missing']} |")
    mn = d[OVERALL].get("min_score")
    lines += ["", f"AP covers the published detections only (lowest score seen: {_fmt(mn, 3)}); run the worker "
              "with a low threshold for a full PR curve.", "", "## Pipeline", "",
              "| run | camera | status | decoded | published | events | missing | duplicates | replay wall s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for p in d["runs"]:
        lines.append(f"| {p['run_id']} | {p['camera_id']} | {p['status']} | {p['frames_decoded']} | "
                     f"{p['frames_expected']} | {p['events']} | {p['missing']} | {p['duplicates']} | "
                     f"{p['replay_wall_s']:.2f} |")
    pl = d["pipeline"]
    if pl["errors"]:
        shown = ", ".join(f"{e['camera_id']}#{e['seq']}" for e in pl["errors"][:50])
        more = f" (+{pl['missing'] - 50} more)" if pl["missing"] > 50 else ""
        lines += ["", f"**Errors: {pl['missing']} published frames have no event:** {shown}{more}"]
    else:
        lines += ["", "Every published frame has its event (no drops)."]
    lines += ["", "## Latency (ms)", "", "| measure | n | p50 | p90 | p99 | max | mean |",
              "|---|---|---|---|---|---|---|"]
    for k, v in d["latency_ms"].items():
        if v.get("n"):
            lines.append(f"| {k} | {v['n']} | {v['p50']} | {v['p90']} | {v['p99']} | {v['max']} | {v['mean']} |")
    lines += ["", "capture_to_event: the worker's capture -> event published (`timings_ms.total`); in an as-fast "
              "replay it includes the time a decoded frame waits for room in the worker group.", ""]
    if d.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in d["warnings"]] + [""]
    if gate_result is not None:
        lines += ["## Gate", "", gate_result.text(), ""]
    lines += ["Plots: `pr.png` (PR curve), `detections.png` (detections per frame over time), `latency.png`.", ""]
    return "\n".join(lines)


def write_frames_csv(frames: Sequence[FrameEval], path: str | Path, threshold: float) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run_id", "camera_id", "seq", "t_s", "frame", "labelled", "missing", "faces", "detections",
                    "tp", "fp", "total_ms"])
        for fe in frames:
            at = fe.dets[:, 4] >= threshold if len(fe.dets) else np.zeros(0, bool)
            tp = int((fe.tp & at).sum()) if len(at) else 0
            fp = int((~fe.tp & ~fe.ignored & at).sum()) if len(at) else 0
            w.writerow([fe.run_id, fe.camera_id, fe.seq, "" if fe.t is None else f"{fe.t:.4f}",
                        "" if fe.index is None else fe.index, int(fe.labels is not None), int(fe.missing),
                        fe.faces if fe.labels is not None else "", int(at.sum()),
                        tp if fe.labels is not None else "", fp if fe.labels is not None else "",
                        "" if fe.total_ms is None else fe.total_ms])
    return path


def write_plots(report: ReplayReport, out_dir: str | Path) -> list[Path]:
    """pr.png, detections.png, latency.png (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    d = report.data
    thr = d["settings"]["threshold"]
    paths = []

    fig, ax = plt.subplots(figsize=(6.4, 5))
    curves = list(d["per_camera"].items())
    if len(curves) > 1:
        curves.append((OVERALL, d[OVERALL]))
    for name, m in curves:
        c = m["curve"]
        if c["recall"]:
            ax.plot(c["recall"], c["precision"], lw=1.5, label=f"{name} (AP {_fmt(m['ap'], 3)})")
        ax.plot([m["recall"]], [m["precision"]], "o", ms=6, color=ax.lines[-1].get_color() if ax.lines else None)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"PR curve (IoU {d['settings']['iou']}; dot: threshold {thr})")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.1, top=0.92)  # fixed: tight_layout is slow
    paths.append(out_dir / "pr.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    cams = sorted({f.camera_id for f in report.frames})
    fig, axes = plt.subplots(len(cams), 1, figsize=(10, 2.8 * len(cams)), squeeze=False, sharex=True)
    for ax, cam in zip(axes[:, 0], cams, strict=True):
        fs = [f for f in report.frames if f.camera_id == cam]
        ok = [f for f in fs if not f.missing and f.t is not None]
        ax.plot([f.t for f in ok], [int((f.dets[:, 4] >= thr).sum()) if len(f.dets) else 0 for f in ok],
                lw=1, label=f"detections >= {thr}")
        lab = [f for f in ok if f.labels is not None]
        if lab:
            ax.plot([f.t for f in lab], [f.faces for f in lab], ".", ms=4, label="labelled faces")
        miss = [f for f in fs if f.missing]
        if miss:
            # missing frames have no PTS: place them by their seq on the sample grid
            fps = next((p["sample_fps"] for p in d["runs"] if p["camera_id"] == cam), 0) or 1.0
            ax.plot([f.seq / fps for f in miss], [0] * len(miss), "rx", label=f"no event ({len(miss)})")
        ax.set_ylabel(cam)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("video time, s")
    fig.suptitle("faces per frame")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.5 / len(cams) / 2.8 + 0.05, top=1 - 0.45 / (2.8 * len(cams)),
                        hspace=0.15)
    paths.append(out_dir / "detections.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4))
    lat = [f.total_ms for f in report.frames if f.total_ms is not None]
    if lat:
        ax.hist(lat, bins=min(50, max(5, len(lat) // 4)), color="tab:blue", alpha=0.8)
        st = d["latency_ms"]["capture_to_event"]
        for k, style in (("p50", "--"), ("p99", ":")):
            ax.axvline(st[k], color="k", ls=style, label=f"{k} {st[k]:.1f} ms")
        ax.legend(fontsize=8)
    ax.set_xlabel("capture -> event, ms")
    ax.set_ylabel("frames")
    ax.set_title("latency")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.9)
    paths.append(out_dir / "latency.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def write_report(report: ReplayReport, out_dir: str | Path, gate_result: GateResult | None = None,
                 plots: bool = True) -> dict[str, Path]:
    """report.json (+ the gate result when given), report.md, frames.csv and the plots into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = dict(report.data)
    if gate_result is not None:
        data["gate"] = gate_result.to_dict()
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "csv": out_dir / "frames.csv"}
    paths["json"].write_text(json.dumps(data, indent=1) + "\n")
    paths["md"].write_text(report_markdown(report, gate_result))
    write_frames_csv(report.frames, paths["csv"], report.data["settings"]["threshold"])
    if plots:
        for p in write_plots(report, out_dir):
            paths[p.stem] = p
    return paths


# --------------------------------------------------------------------------------------------- gate

@dataclass
class GateCheck:
    name: str
    passed: bool
    baseline: float | None = None
    new: float | None = None
    detail: str = ""

    @property
    def drop(self) -> float | None:
        if self.baseline is None or self.new is None:
            return None
        return self.baseline - self.new


@dataclass
class GateResult:
    checks: list[GateCheck]
    max_drop: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "max_drop": self.max_drop,
                "checks": [{"name": c.name, "passed": c.passed, "baseline": c.baseline, "new": c.new,
                            "drop": c.drop, "detail": c.detail} for c in self.checks]}

    def text(self) -> str:
        out = [f"gate {'PASSED' if self.passed else 'FAILED'} (max drop {self.max_drop:g})"]
        for c in self.checks:
            mark = "ok  " if c.passed else "FAIL"
            if c.baseline is not None or c.new is not None:
                drop = f", drop {c.drop:+.4f}" if c.drop is not None else ""
                out.append(f"  {mark} {c.name}: baseline {_fmt(c.baseline)} -> new {_fmt(c.new)}{drop}"
                           + (f" ({c.detail})" if c.detail else ""))
            else:
                out.append(f"  {mark} {c.name}: {c.detail}")
        return "\n".join(out)


def load_report(path: str | Path) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReplayEvalError(f"cannot read report {path}: {exc}") from None
    if not isinstance(d, dict) or d.get("format") != REPORT_FORMAT:
        raise ReplayEvalError(f"{path} is not a replay-eval report.json (format {REPORT_FORMAT!r})")
    if int(d.get("version", 0)) > REPORT_VERSION:
        raise ReplayEvalError(f"{path}: report version {d['version']} is newer than this tool ({REPORT_VERSION})")
    return d


def gate(new: dict, baseline: dict, max_drop: float = 0.01, metrics: Sequence[str] = GATED_METRICS,
         per_camera: bool = False, allow_missing: bool = False, allow_mismatch: bool = False) -> GateResult:
    """Compare two report.json dicts: fails when any of ``metrics`` drops by more than ``max_drop``.

    Also fails (unless allowed) when the new run has frames without events, or when the reports are not
    comparable (different labels files or threshold/IoU settings).
    """
    checks: list[GateCheck] = []
    same_labels = new.get("labels_sha256") == baseline.get("labels_sha256")
    keys_ = ("threshold", "iou", "ignore_ioa")
    same_settings = all(new["settings"].get(k) == baseline["settings"].get(k) for k in keys_)
    detail = []
    if not same_labels:
        detail.append("labels files differ (sha256)")
    if not same_settings:
        detail.append("settings differ: " + ", ".join(
            f"{k} {baseline['settings'].get(k)} -> {new['settings'].get(k)}" for k in keys_
            if new["settings"].get(k) != baseline["settings"].get(k)))
    comparable = same_labels and same_settings
    checks.append(GateCheck("comparable", comparable or allow_mismatch,
                            detail="; ".join(detail) + (" (allowed)" if detail and allow_mismatch else "")
                            if detail else "same labels and settings"))
    miss = int(new.get("pipeline", {}).get("missing", 0))
    checks.append(GateCheck("no missing events", miss == 0 or allow_missing,
                            detail=f"{miss} published frames without an event" + (" (allowed)" if miss and
                                                                                 allow_missing else "")))
    scopes = [(OVERALL, new[OVERALL], baseline[OVERALL])]
    if per_camera:
        for cam, m in baseline.get("per_camera", {}).items():
            if cam in new.get("per_camera", {}):
                scopes.append((cam, new["per_camera"][cam], m))
            else:
                checks.append(GateCheck(f"{cam}", False, detail="camera missing from the new report"))
    for scope, n, b in scopes:
        for m in metrics:
            bv, nv = b.get(m), n.get(m)
            name = m if scope == OVERALL else f"{scope}.{m}"
            if bv is None and nv is None:
                checks.append(GateCheck(name, True, None, None, "undefined in both (no labelled faces)"))
                continue
            if bv is None or nv is None:
                checks.append(GateCheck(name, nv is not None, bv, nv, "undefined in one report"))
                continue
            checks.append(GateCheck(name, float(bv) - float(nv) <= max_drop + 1e-12, float(bv), float(nv)))
    return GateResult(checks, max_drop)
