"""Footage labels: the JSON Lines format, MOT CSV, round trips and errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from training.evaluate.footage_labels import (
    FootageLabels,
    FrameLabels,
    LabelsError,
    label_video,
    load_labels,
    read_footage_labels,
    write_footage_labels,
    write_mot_csv,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "replay"


def test_example_jsonl_shipped():
    lab = load_labels(DATA / "example.jsonl")
    assert (lab.width, lab.height, lab.fps, lab.dense, lab.num_frames) == (320, 240, 25.0, False, 50)
    assert lab.time_base == Fraction(1, 25000) and lab.start_time == 0.0
    assert sorted(lab.frames) == [0, 5, 10, 15]  # frame 10 was keyed by pts only
    assert lab.frames[10].boxes.shape == (2, 4) and lab.frames[10].pts == 10000
    assert lab.frames[5].ignore.tolist() == [[250.0, 0.0, 320.0, 40.0]]
    assert lab.frames[15].boxes.shape == (0, 4)  # labelled, no face
    assert lab.get(3) is None  # sparse: unlabelled
    assert lab.faces == 4 and len(lab.sha256) == 64


def test_mot_matches_jsonl():
    mot = load_labels(DATA / "mot-sample" / "gt" / "gt.txt")  # seqinfo.ini one level up
    js = load_labels(DATA / "example.jsonl")
    assert (mot.width, mot.height, mot.fps, mot.num_frames) == (320, 240, 25.0, 50)
    assert sorted(mot.frames) == [0, 5, 10]  # 1-based -> 0-based
    for i in (0, 5, 10):
        np.testing.assert_allclose(mot.frames[i].boxes, js.frames[i].boxes)
    np.testing.assert_allclose(mot.frames[5].ignore, js.frames[5].ignore)  # conf 0 -> ignore


def test_round_trips(tmp_path):
    lab = FootageLabels(640, 360, 29.97, dense=True, num_frames=3, time_base=Fraction(1, 30000), start_time=0.5,
                        video="v.mp4", meta={"note": "hand-checked"})
    lab.frames[0] = FrameLabels(0, np.array([[1.5, 2, 30, 40]]), np.array([[0, 0, 10, 10]]), pts=15000,
                                scores=np.array([0.9]))
    lab.frames[2] = FrameLabels(2, np.zeros((0, 4)))
    back = read_footage_labels(write_footage_labels(tmp_path / "l.jsonl", lab))
    assert back.header() == lab.header()
    assert back.meta == {"note": "hand-checked"}
    np.testing.assert_allclose(back.frames[0].boxes, lab.frames[0].boxes)
    np.testing.assert_allclose(back.frames[0].scores, [0.9])
    assert back.get(1) is not None and len(back.get(1).boxes) == 0  # dense: missing line = no face
    assert back.get(3) is None  # beyond the video
    mot = load_labels(write_mot_csv(tmp_path / "gt.csv", lab), fps=29.97)
    np.testing.assert_allclose(mot.frames[0].boxes, lab.frames[0].boxes, atol=0.01)
    np.testing.assert_allclose(mot.frames[0].ignore, lab.frames[0].ignore, atol=0.01)


@pytest.mark.parametrize("lines, msg", [
    (['{"frame": 0, "boxes": []}'], "first line must be the header"),
    (['{"format": "facestream-footage-labels", "width": 10, "height": 10}'], "lacks 'fps'"),
    (['{"format": "other", "width": 1, "height": 1, "fps": 1}'], "is not"),
    (['{"format": "facestream-footage-labels", "width": 10, "height": 10, "fps": 5}', '{"boxes": []}'],
     "needs 'frame' or 'pts'"),
    (['{"format": "facestream-footage-labels", "width": 10, "height": 10, "fps": 5}', '{"pts": 3}'],
     "no time_base"),
    (['{"format": "facestream-footage-labels", "width": 10, "height": 10, "fps": 5}',
      '{"frame": 1, "boxes": [[5, 5, 1, 1]]}'], "xyxy"),
    (['{"format": "facestream-footage-labels", "width": 10, "height": 10, "fps": 5}',
      '{"frame": 1}', '{"frame": 1}'], "labelled twice"),
    (['{"format": "facestream-footage-labels", "width": 10, "height": 10, "fps": 5}', 'nope'], "not JSON"),
    ([], "empty labels file"),
])
def test_bad_jsonl(tmp_path, lines, msg):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelsError, match=msg):
        load_labels(p)


def test_bad_mot(tmp_path):
    p = tmp_path / "gt.csv"
    p.write_text("0,1,1,1,5,5,1\n")
    with pytest.raises(LabelsError, match="1-based"):
        load_labels(p, fps=25)
    p.write_text("1,1,1,1,5,5,1\n")
    with pytest.raises(LabelsError, match="fps"):
        load_labels(p)


def test_label_video_writes_footage_format(tmp_path):
    """The bootstrap labeller (any bgr -> dets callable; the teacher ensemble in production)."""
    from tests.replay_eval.synth import find_faces, make_face_clip

    clip, truth = make_face_clip(tmp_path / "faces.mp4", frames=20)
    lab = label_video(clip, tmp_path / "faces.jsonl", find_faces, every=1, threshold=0.5)
    back = load_labels(tmp_path / "faces.jsonl")
    assert back.dense and back.num_frames == 20 and back.fps == 25.0 and back.start_time == 0.0
    assert back.time_base == truth.time_base and sorted(back.frames) == list(range(20))
    assert back.header()["labelled_every"] == 1 and lab.sha256 == back.sha256
    for i in range(20):
        assert back.frames[i].pts == truth.frames[i].pts
        assert len(back.frames[i].boxes) == len(truth.frames[i].boxes)
        from training.evaluate.metrics import iou_xyxy
        assert iou_xyxy(back.frames[i].boxes, truth.frames[i].boxes).max(1).min() > 0.8
    sparse = label_video(clip, tmp_path / "every5.jsonl", find_faces, every=5)
    assert sorted(sparse.frames) == [0, 5, 10, 15] and not sparse.dense
