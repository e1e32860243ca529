"""Write a replay report: JSON, markdown, per-frame CSV and plots."""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.evaluate.footage_labels import FootageLabels
from training.evaluate.replay.collect import RunData
from training.evaluate.replay.common import OVERALL, REPORT_FORMAT, REPORT_VERSION, ReplayEvalError, fmt_value
from training.evaluate.replay.compare import GateResult
from training.evaluate.replay.match import FrameEval, match_run
from training.evaluate.replay.score import latency_stats, score_frames

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
        prf = " | ".join(fmt_value(m[k]) for k in ("precision", "recall", "f1", "ap"))
        lines.append(f"| {cam} | {prf} | "
                     f"{m['tp']} | {m['fp']} | {m['fn']} | {m['faces']} | {m['frames_scored']} | "
                     f"{m['frames_unlabelled']} | {m['frames_missing']} |")
    mn = d[OVERALL].get("min_score")
    lines += ["", f"AP covers the published detections only (lowest score seen: {fmt_value(mn, 3)}); run the worker "
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
            ax.plot(c["recall"], c["precision"], lw=1.5, label=f"{name} (AP {fmt_value(m['ap'], 3)})")
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


