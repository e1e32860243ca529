"""Replay -> Redis -> worker -> events -> `facestream eval replay`, on real Redis with the real ingest
replay and the real worker loop (in-process threads).

The oracle detector finds the drawn faces, so metrics through the whole pipeline (payload resize and
back, PTS -> frame mapping) are known; a worse oracle must trip the gate. The random-model run checks
the plumbing with the real ONNX detector: every frame has an event, counts, latency, report files.
"""

from __future__ import annotations

import json
import threading

import click
import pytest
from click.testing import CliRunner

from facestream.commands.eval_replay import gate_cmd, replay
from ingest.replay import replay as run_replay
from tests.replay_eval.synth import OracleDetector
from training.evaluate.footage_labels import write_footage_labels
from training.evaluate.replay import collect_run, evaluate_runs, write_report


def eval_cli():
    """The eval commands as a group (the `facestream eval` group when it exists)."""
    try:
        from facestream.cli import main

        if "eval" in main.commands and {"replay", "gate"} <= set(main.commands["eval"].commands):
            return main, ["eval"]
    except ImportError:  # pragma: no cover
        pass

    @click.group()
    def ev():
        pass

    ev.add_command(replay)
    ev.add_command(gate_cmd, "gate")
    return ev, []


def invoke(prefix, *args):
    cli, head = eval_cli()
    res = CliRunner().invoke(cli, [*head, *args], env={"FACESTREAM_REDIS__PREFIX": prefix}, catch_exceptions=False)
    return res


@pytest.fixture
def labels_file(face_clip, tmp_path):
    return write_footage_labels(tmp_path / "faces.jsonl", face_clip[1])


def test_oracle_through_pipeline_and_gate(r, keys, settings, prefix, worker, face_clip, labels_file, tmp_path):
    clip, _ = face_clip
    # 1. replay first, worker later: the run's frames wait in the group; eval waits for every event
    s = run_replay(str(clip), "faces", redis=r, keys=keys, settings=settings.ingest, run_id="good", fps=10,
                   detect_size=256, window=50)
    assert s.frames_decoded == 50 and s.frames_published == 20  # 2 s at 10 fps (PTS-sampled: frames 0,3,5,8..)
    with worker(OracleDetector()):
        res = invoke(prefix, "replay", "--run-id", "good", "--labels", str(labels_file), "--out",
                     str(tmp_path / "good"), "--wait", "60")
    assert res.exit_code == 0, res.output
    good = json.loads((tmp_path / "good" / "report.json").read_text())
    o = good["overall"]
    assert o["frames_scored"] == 20 and o["faces"] == 32  # face A on 20 frames, face B on 12
    assert o["recall"] == 1.0 and o["precision"] == 1.0 and o["ap"] == 1.0, o
    assert good["pipeline"] == {"frames_expected": 20, "events": 20, "missing": 0, "duplicates": 0, "dropped": 0,
                                "errors": []}
    assert good["latency_ms"]["capture_to_event"]["n"] == 20 and good["models"][0]["name"] == "oracle"
    for f in ("report.md", "frames.csv", "pr.png", "detections.png", "latency.png"):
        assert (tmp_path / "good" / f).stat().st_size > 0

    # 2. a worse model (drops the leftmost face of every frame) trips the gate
    with worker(OracleDetector("oracle-worse", drop_leftmost=True)):
        run_replay(str(clip), "faces", redis=r, keys=keys, settings=settings.ingest, run_id="worse", fps=10,
                   detect_size=256, window=4)
        res = invoke(prefix, "replay", "--run-id", "worse", "--labels", str(labels_file), "--out",
                     str(tmp_path / "worse"), "--no-plots", "--baseline", str(tmp_path / "good" / "report.json"),
                     "--max-drop", "0.01")
    assert res.exit_code == 1, res.output
    assert "gate FAILED" in res.output and "FAIL recall" in res.output
    worse = json.loads((tmp_path / "worse" / "report.json").read_text())
    assert worse["overall"]["recall"] == pytest.approx(12 / 32) and worse["gate"]["passed"] is False
    assert worse["pipeline"]["missing"] == 0

    # 3. the same comparison offline, and the good model against itself
    res = invoke(prefix, "gate", str(tmp_path / "worse" / "report.json"), "--baseline",
                 str(tmp_path / "good" / "report.json"), "--max-drop", "0.01")
    assert res.exit_code == 1 and "FAIL ap" in res.output
    res = invoke(prefix, "gate", str(tmp_path / "good" / "report.json"), "--baseline",
                 str(tmp_path / "good" / "report.json"))
    assert res.exit_code == 0 and "gate PASSED" in res.output
    res = invoke(prefix, "gate", str(tmp_path / "worse" / "report.json"), "--baseline",
                 str(tmp_path / "good" / "report.json"), "--max-drop", "0.7")
    assert res.exit_code == 0, res.output
    # a tolerance in faces: 20 more missed faces are beyond 5, within 100
    res = invoke(prefix, "gate", str(tmp_path / "worse" / "report.json"), "--baseline",
                 str(tmp_path / "good" / "report.json"), "--max-faces", "5")
    assert res.exit_code == 1 and "beyond 5 face(s): +20 missed" in res.output
    res = invoke(prefix, "gate", str(tmp_path / "worse" / "report.json"), "--baseline",
                 str(tmp_path / "good" / "report.json"), "--max-faces", "100")
    assert res.exit_code == 0 and "within 100 face(s)" in res.output


def test_random_model_plumbing(r, keys, settings, worker, random_detector, face_clip, labels_file, tmp_path):
    """The real detector (random weights, arbitrary boxes): a replay never drops, every frame has an event."""
    clip, labels = face_clip
    with worker(random_detector):
        s = run_replay(str(clip), "faces", redis=r, keys=keys, settings=settings.ingest, run_id="rnd", fps=25,
                       detect_size=256, window=6)  # small window: backpressure on the worker
        run = collect_run(r, keys, "rnd", wait_s=60)
    assert s.frames_published == 50 and run.complete and len(run.events) == 50
    report = evaluate_runs([(run, labels)], threshold=0.3)
    d = report.data
    assert d["pipeline"]["missing"] == 0 and d["pipeline"]["events"] == 50 and d["pipeline"]["duplicates"] == 0
    assert sorted(e.frame.seq for e in run.events) == list(range(50))
    assert all(e.source.kind == "replay" and e.source.run_id == "rnd" for e in run.events)
    assert d["overall"]["frames_scored"] == 50 and d["overall"]["faces"] == labels.faces == 80
    for k in ("precision", "recall", "f1", "ap"):
        assert 0.0 <= d["overall"][k] <= 1.0
    assert d["overall"]["detections_all"] > 0  # threshold 0: the random model always 'finds' something
    lat = d["latency_ms"]["capture_to_event"]
    assert lat["n"] == 50 and 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert d["latency_ms"]["infer"]["n"] == 50 and d["models"][0]["name"] == "fsdet-s"
    paths = write_report(report, tmp_path / "rnd")
    assert all(p.stat().st_size > 0 for p in paths.values())


@pytest.mark.parametrize("name, start_s", [("late.mkv", 0.5), ("late.ts", 1.4)])
def test_clip_not_starting_at_zero(r, keys, settings, worker, tmp_path, name, start_s):
    """What ingest really puts in FrameRef.pts/time_base for files whose first PTS is not 0 (MKV's 1/1000
    time base, MPEG-TS's 1/90000 and start offset): labels without start_time (origin = seq 0) and labels
    made by the PyAV labeller (start_time recorded) both map events to the right frames."""
    from tests.replay_eval.synth import find_faces, make_face_clip
    from training.evaluate.footage_labels import label_video

    clip, truth = make_face_clip(tmp_path / name, frames=30, start_s=start_s)
    drafted = label_video(clip, tmp_path / "drafted.jsonl", find_faces)
    # the muxer may shift a little (MKV: +20 ms): the file's own first PTS is what counts
    assert drafted.start_time == pytest.approx(start_s, abs=0.05) and drafted.time_base is not None
    with worker(OracleDetector()):
        run_replay(str(clip), "late", redis=r, keys=keys, settings=settings.ingest, run_id="late", fps=10,
                   detect_size=256)
        run = collect_run(r, keys, "late", wait_s=60)
    assert run.complete and run.events[0].frame.pts is not None
    for labels in (truth, drafted):
        d = evaluate_runs([(run, labels)]).data
        assert d["overall"]["frames_scored"] == 12 and d["overall"]["recall"] == 1.0, d["overall"]
        assert d["overall"]["precision"] == 1.0 and not d["warnings"], d["warnings"]


def test_eval_errors(prefix, labels_file, tmp_path):
    res = invoke(prefix, "replay", "--run-id", "nope", "--labels", str(labels_file), "--wait", "0")
    assert res.exit_code == 2 and "no replay run 'nope'" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    res = invoke(prefix, "gate", str(bad), "--baseline", str(bad))
    assert res.exit_code == 2 and "not a replay-eval report" in res.output


def test_collect_waits_for_late_events(r, keys, settings, worker, face_clip):
    clip, _ = face_clip
    run_replay(str(clip), "faces", redis=r, keys=keys, settings=settings.ingest, run_id="late", fps=5,
               detect_size=256, window=50)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("run", collect_run(r, keys, "late", wait_s=60)))
    t.start()
    assert not got  # still waiting: no worker yet
    with worker(OracleDetector()):
        t.join(60)
    run = got["run"]
    assert run.complete and len(run.events) == 10 and run.waited_s > 0
