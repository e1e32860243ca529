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

from training.evaluate.replay.collect import RunData, collect_run, read_run_events, read_run_info
from training.evaluate.replay.common import GATED_METRICS, OVERALL, REPORT_FORMAT, REPORT_VERSION, ReplayEvalError
from training.evaluate.replay.compare import GateCheck, GateResult, gate, load_report
from training.evaluate.replay.match import FrameEval, ioa, match_frame, match_run
from training.evaluate.replay.report import (
    ReplayReport,
    evaluate_runs,
    report_markdown,
    write_frames_csv,
    write_plots,
    write_report,
)
from training.evaluate.replay.score import latency_stats, score_frames

__all__ = [
    "GATED_METRICS", "OVERALL", "REPORT_FORMAT", "REPORT_VERSION", "FrameEval", "GateCheck", "GateResult",
    "ReplayEvalError", "ReplayReport", "RunData", "collect_run", "evaluate_runs", "gate", "ioa", "latency_stats",
    "load_report", "match_frame", "match_run", "read_run_events", "read_run_info", "report_markdown",
    "score_frames", "write_frames_csv", "write_plots", "write_report",
]
