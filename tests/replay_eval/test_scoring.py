"""The scoring core on synthetic event lists (no Redis): exact expectations."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.replay_eval.synth import face_boxes, make_event
from training.evaluate.footage_labels import FootageLabels, FrameLabels
from training.evaluate.replay import (
    ReplayEvalError,
    RunData,
    evaluate_runs,
    gate,
    match_frame,
    write_report,
)

W, H, FPS, STEP = 320, 240, 25, 5  # 25 fps source sampled at 5 fps: seq k is source frame 5k


def truth(n: int = 50, dense: bool = True, start_time: float | None = None) -> FootageLabels:
    lab = FootageLabels(W, H, float(FPS), dense=dense, num_frames=n, start_time=start_time)
    for i in range(n):
        lab.frames[i] = FrameLabels(i, np.array(face_boxes(i, W, H)).reshape(-1, 4))
    return lab


def run_of(events, run_id="r1", cam="cam1", expected=None, **info) -> RunData:
    now = int(time.time() * 1000)
    inf = {"frames_published": str(expected if expected is not None else len(events)), "status": "done",
           "camera_id": cam, "fps": str(FPS / STEP), "source_fps": str(FPS)}
    inf.update({k: str(v) for k, v in info.items()})
    return RunData(run_id, inf, list(events), [now] * len(events))


def events_for(boxes_fn, n=10, cam="cam1", run_id="r1", pts0=0, scores_fn=None, **kw):
    evs = []
    for k in range(n):
        b = boxes_fn(STEP * k)
        s = scores_fn(STEP * k, len(b)) if scores_fn else None
        evs.append(make_event(cam, run_id, k, b, s, pts=pts0 + STEP * k * 1000, **kw))
    return evs


def gt(i):
    return face_boxes(i, W, H)


def test_perfect():
    rep = evaluate_runs([(run_of(events_for(gt)), truth())])
    o = rep.overall
    assert (o["precision"], o["recall"], o["f1"], o["ap"]) == (1.0, 1.0, 1.0, 1.0)
    assert o["faces"] == 16 and o["tp"] == 16 and o["frames_scored"] == 10  # B on frames 10..35
    assert rep.data["pipeline"]["missing"] == 0 and rep.data["per_camera"]["cam1"]["recall"] == 1.0


def test_half_missing():
    # two faces on every labelled frame; events report only the first
    lab = FootageLabels(W, H, FPS, dense=True, num_frames=50)
    two = {i: [[10, 10, 50, 60], [200, 100, 240, 150]] for i in range(50)}
    for i in range(50):
        lab.frames[i] = FrameLabels(i, np.array(two[i], float))
    rep = evaluate_runs([(run_of(events_for(lambda i: two[i][:1])), lab)])
    o = rep.overall
    assert o["recall"] == 0.5 and o["precision"] == 1.0 and o["f1"] == pytest.approx(2 / 3)
    assert o["ap"] == pytest.approx(0.5)


def test_shifted_boxes_score_zero():
    def shifted(i):
        return [[x1 + (x2 - x1), y1, x2 + (x2 - x1), y2] for x1, y1, x2, y2 in gt(i)]

    o = evaluate_runs([(run_of(events_for(shifted)), truth())]).overall
    assert (o["precision"], o["recall"], o["f1"], o["ap"]) == (0.0, 0.0, 0.0, 0.0)
    assert o["fp"] == 16


def test_threshold_and_ap_ranking():
    # every frame: the true face at 0.9, a false one at 0.7 -> P 0.5 at 0.5, P 1 at 0.8; AP 1 (ranked first)
    def boxes(i):
        return [gt(i)[0], [250, 0, 300, 50]]

    ev = events_for(boxes, scores_fn=lambda i, n: [0.9, 0.7])
    lab = FootageLabels(W, H, FPS, dense=True, num_frames=50)
    for i in range(50):
        lab.frames[i] = FrameLabels(i, np.array([gt(i)[0]]))
    lo = evaluate_runs([(run_of(ev), lab)], threshold=0.5).overall
    hi = evaluate_runs([(run_of(ev), lab)], threshold=0.8).overall
    assert lo["precision"] == 0.5 and lo["recall"] == 1.0 and lo["ap"] == 1.0
    assert hi["precision"] == 1.0 and hi["recall"] == 1.0 and hi["ap"] == 1.0
    # reversed scores: false ones first -> AP drops, P/R at 0.5 unchanged
    rev = evaluate_runs([(run_of(events_for(boxes, scores_fn=lambda i, n: [0.6, 0.9])), lab)]).overall
    assert rev["precision"] == 0.5 and rev["ap"] < 0.6


def test_match_frame_duplicates_and_ignore():
    g = np.array([[0, 0, 10, 10]], float)
    ign = np.array([[100, 100, 200, 200]], float)
    dets = np.array([[0, 0, 10, 10, 0.9], [0.5, 0, 10.5, 10, 0.8], [120, 120, 140, 140, 0.95],
                     [300, 300, 320, 320, 0.7]])
    tp, ig = match_frame(dets, g, ign)
    assert tp.tolist() == [True, False, False, False]  # the second is a duplicate (FP)
    assert ig.tolist() == [False, False, True, False]  # inside the ignore region: neither
    tp, ig = match_frame(np.zeros((0, 5)), g, ign)
    assert len(tp) == 0


def test_unlabelled_frames_not_scored_unless_dense():
    sparse = FootageLabels(W, H, FPS, dense=False)
    sparse.frames[0] = FrameLabels(0, np.array([gt(0)[0]]))
    sparse.frames[10] = FrameLabels(10, np.array(gt(10)))
    ev = events_for(gt)  # detections on every sampled frame
    o = evaluate_runs([(run_of(ev), sparse)]).overall
    assert o["frames_scored"] == 2 and o["frames_unlabelled"] == 8
    assert o["precision"] == 1.0 and o["recall"] == 1.0
    sparse.dense, sparse.num_frames = True, 50
    o = evaluate_runs([(run_of(ev), sparse)]).overall
    assert o["frames_scored"] == 10 and o["recall"] == 1.0 and o["fp"] == 13  # unlisted frames: no face


def test_pts_origin_from_seq0_and_from_header():
    # the file's first PTS is 1.5 s (e.g. an MPEG-TS): labels without start_time take seq 0 as frame 0
    ev = events_for(gt, pts0=37_500)
    assert evaluate_runs([(run_of(ev), truth())]).overall["recall"] == 1.0
    # a header start_time wins (labels made by `facestream label --video` record it)
    assert evaluate_runs([(run_of(ev), truth(start_time=1.5))]).overall["recall"] == 1.0
    # a wrong origin (0.5 s = 12 source frames off): the moving face no longer matches
    assert evaluate_runs([(run_of(ev), truth(start_time=1.0))]).overall["recall"] < 0.5


def test_size_mismatch_scales_detections():
    half = [make_event("cam1", "r1", e.frame.seq, [[v / 2 for v in d.box] for d in e.detections],
                       pts=e.frame.pts, width=W // 2, height=H // 2) for e in events_for(gt)]
    rep = evaluate_runs([(run_of(half), truth())])
    assert rep.overall["recall"] == 1.0 and any("scaled" in w for w in rep.data["warnings"])


def test_missing_events_are_errors_and_fail_the_gate():
    ev = events_for(gt)
    base = evaluate_runs([(run_of(ev), truth())]).data
    holes = [e for e in ev if e.frame.seq not in (3, 7)]
    rep = evaluate_runs([(run_of(holes, expected=10), truth())])
    p = rep.data["pipeline"]
    assert p["missing"] == 2 and [e["seq"] for e in p["errors"]] == [3, 7] and p["events"] == 8
    assert rep.overall["frames_missing"] == 2 and rep.overall["frames_scored"] == 8
    g = gate(rep.data, base, max_drop=1.0)
    assert not g.passed and [c.name for c in g.failures] == ["no missing events"]
    assert gate(rep.data, base, max_drop=1.0, allow_missing=True).passed


def test_duplicates_counted_once():
    ev = events_for(gt)
    rep = evaluate_runs([(run_of([*ev, ev[2]], expected=10), truth())])
    assert rep.data["pipeline"]["duplicates"] == 1 and rep.overall["tp"] == 16


def test_per_camera_and_overall():
    a = run_of(events_for(gt, cam="A", run_id="ra"), run_id="ra", cam="A")
    b = run_of(events_for(lambda i: [], cam="B", run_id="rb"), run_id="rb", cam="B")
    rep = evaluate_runs([(a, truth()), (b, truth())])
    assert rep.data["per_camera"]["A"]["recall"] == 1.0 and rep.data["per_camera"]["B"]["recall"] == 0.0
    assert rep.overall["recall"] == 0.5 and rep.overall["faces"] == 32
    assert [r["run_id"] for r in rep.data["runs"]] == ["ra", "rb"]


def test_no_events_is_an_error():
    with pytest.raises(ReplayEvalError, match="no events"):
        evaluate_runs([(run_of([], expected=5), truth())])


def test_gate_thresholds():
    good = evaluate_runs([(run_of(events_for(gt)), truth())]).data
    # worse model: drops face A on every frame
    worse = evaluate_runs([(run_of(events_for(lambda i: gt(i)[1:])), truth())]).data
    g = gate(worse, good, max_drop=0.01)
    assert not g.passed and {c.name for c in g.failures} == {"recall", "f1", "ap"}
    assert g.to_dict()["checks"][2]["drop"] == pytest.approx(1 - worse["overall"]["recall"])
    assert gate(good, worse, max_drop=0.01).passed  # improvements pass
    assert gate(good, good, max_drop=0.0).passed
    assert gate(worse, good, max_drop=1.0).passed
    # precision is not gated by default, but can be
    assert not gate(worse, good, metrics=["recall"]).passed
    # different threshold -> not comparable
    other = evaluate_runs([(run_of(events_for(gt)), truth())], threshold=0.3).data
    g = gate(other, good)
    assert not g.passed and g.failures[0].name == "comparable" and "threshold" in g.failures[0].detail
    assert gate(other, good, allow_mismatch=True).passed


def test_gate_tolerates_a_few_faces_on_a_short_clip_when_asked():
    """--max-faces: a ratio drop passes when the new run has at most that many more missed + false faces;
    one face more than that fails, and 0 (the default) gates on the ratios alone."""
    good = evaluate_runs([(run_of(events_for(gt)), truth())]).data
    # face A missed on one frame of ten: F1 and recall drop by several points
    def missing_a_on(frames):
        return evaluate_runs([(run_of(events_for(lambda i: gt(i)[1:] if i in frames else gt(i))), truth())]).data

    one, two = missing_a_on({3 * STEP}), missing_a_on({3 * STEP, 7 * STEP})
    assert good["overall"]["f1"] - one["overall"]["f1"] > 0.01
    assert not gate(one, good).passed  # ratios alone: fails
    g = gate(one, good, max_faces=1)
    assert g.passed and all("within 1 face(s): +1 missed, +0 false" in c.detail for c in g.checks
                            if c.name in ("recall", "f1", "ap"))
    g = gate(two, good, max_faces=1)
    assert not g.passed and "beyond 1 face(s): +2 missed" in g.failures[0].detail
    assert gate(two, good, max_faces=2).passed
    assert g.to_dict()["max_faces"] == 1 and "at most 1 more missed / false faces" in g.text()


def test_gate_per_camera():
    def two(cam_b_fn):
        a = run_of(events_for(gt, cam="A", run_id="ra"), run_id="ra", cam="A")
        b = run_of(events_for(cam_b_fn, cam="B", run_id="rb"), run_id="rb", cam="B")
        c = run_of(events_for(lambda i: [], cam="C", run_id="rc"), run_id="rc", cam="C")
        return evaluate_runs([(a, truth()), (b, truth()), (c, truth())]).data

    base = two(lambda i: gt(i)[1:])
    new = two(gt)
    new["per_camera"]["A"]["recall"] -= 0.2  # pretend camera A regressed while overall improved
    assert gate(new, base).passed
    g = gate(new, base, per_camera=True)
    assert [c.name for c in g.failures] == ["A.recall"]


def test_report_files(tmp_path):
    rep = evaluate_runs([(run_of(events_for(gt)), truth())])
    g = gate(rep.data, rep.data)
    paths = write_report(rep, tmp_path, g)
    for k in ("json", "md", "csv", "pr", "detections", "latency"):
        assert paths[k].is_file() and paths[k].stat().st_size > 0, k
    d = json.loads(paths["json"].read_text())
    assert d["format"] == "facestream-replay-eval" and d["gate"]["passed"] is True
    assert d["latency_ms"]["capture_to_event"]["p50"] == 10.0
    md = paths["md"].read_text()
    assert "| **overall** | 1.0000 | 1.0000 | 1.0000 | 1.0000 |" in md and "gate PASSED" in md
    rows = paths["csv"].read_text().splitlines()
    assert len(rows) == 11 and rows[0].startswith("run_id,camera_id,seq")


def test_stricter_worker_threshold_trips_the_gate():
    """The same model behind a worker threshold of 0.8 publishes fewer faces: recall and AP drop."""
    def scores(i, n):
        return [0.9, 0.6][:n]  # face A confident, face B not

    full = events_for(gt, scores_fn=scores)
    strict = [make_event("cam1", "r1", e.frame.seq, [d.box for d in e.detections if d.score >= 0.8],
                         [d.score for d in e.detections if d.score >= 0.8], pts=e.frame.pts) for e in full]
    base = evaluate_runs([(run_of(full), truth())]).data
    new = evaluate_runs([(run_of(strict), truth())]).data
    assert base["overall"]["recall"] == 1.0 and new["overall"]["recall"] == pytest.approx(10 / 16)
    g = gate(new, base, max_drop=0.01)
    assert not g.passed and {c.name for c in g.failures} == {"recall", "f1", "ap"}
