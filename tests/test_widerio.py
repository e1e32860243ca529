"""WIDER-format label and prediction files: official layout and our score/landmark variant."""

from __future__ import annotations

import numpy as np
import pytest

from training.widerio import (
    WiderImage,
    detections_to_image,
    read_prediction_file,
    read_wider_labels,
    split_event_name,
    write_prediction_file,
    write_wider_labels,
)

# the official files end face lines with a space
OFFICIAL = "".join(ln + " \n" if ln.count(" ") == 9 else ln + "\n" for ln in [
    "0--Parade/0_Parade_marchingband_1_465.jpg", "2", "345 211 4 4 2 0 0 0 0 0", "331 126 3 3 0 0 0 1 0 0",
    "0--Parade/0_Parade_Parade_0_904.jpg", "0", "0 0 0 0 0 0 0 0 0 0",
    "1--Handshaking/1_Handshaking_1_2.jpg", "1", "10.5 20 30 40 1 1 1 0 2 1",
])


def test_read_official_layout(tmp_path):
    p = tmp_path / "gt.txt"
    p.write_text(OFFICIAL)
    imgs = read_wider_labels(p)
    assert [i.path for i in imgs] == ["0--Parade/0_Parade_marchingband_1_465.jpg",
                                      "0--Parade/0_Parade_Parade_0_904.jpg", "1--Handshaking/1_Handshaking_1_2.jpg"]
    assert len(imgs[0]) == 2 and len(imgs[1]) == 0 and len(imgs[2]) == 1
    assert imgs[0].attrs[1].tolist() == [0, 0, 0, 1, 0, 0]  # invalid column
    assert imgs[2].boxes[0].tolist() == [10.5, 20, 30, 40]
    assert imgs[0].scores is None and imgs[0].landmarks is None
    np.testing.assert_allclose(imgs[2].xyxy[0], [10.5, 20, 40.5, 60])


def test_round_trip_official_is_byte_identical(tmp_path):
    src = tmp_path / "gt.txt"
    src.write_text(OFFICIAL.replace(" \n", "\n"))
    out = tmp_path / "out.txt"
    write_wider_labels(out, read_wider_labels(src))
    assert out.read_text() == src.read_text()


def test_variant_with_scores_and_landmarks_round_trips(tmp_path):
    dets = np.array([[10, 20, 50, 80, 0.9], [100, 100, 120, 130, 0.45]], np.float32)
    lms = np.arange(20, dtype=np.float32).reshape(2, 5, 2) + 0.25
    lms[1] = np.nan  # second face without landmarks
    img = detections_to_image("a/b.jpg", dets, lms)
    empty = WiderImage("a/c.jpg", np.zeros((0, 4)), np.zeros((0, 6), np.int32))
    p = tmp_path / "lab.txt"
    write_wider_labels(p, [img, empty])
    lines = p.read_text().splitlines()
    assert len(lines[2].split()) == 21 and len(lines[3].split()) == 11
    assert lines[4:] == ["a/c.jpg", "0", "0 0 0 0 0 0 0 0 0 0"]
    back = read_wider_labels(p)
    np.testing.assert_allclose(back[0].boxes, [[10, 20, 40, 60], [100, 100, 20, 30]])
    np.testing.assert_allclose(back[0].scores, [0.9, 0.45], atol=1e-4)
    np.testing.assert_allclose(back[0].landmarks[0], lms[0], atol=0.01)
    assert np.isnan(back[0].landmarks[1]).all()
    assert len(back[1]) == 0


def test_truncated_file_is_an_error(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("x.jpg\n3\n1 2 3 4 0 0 0 0 0 0\n")
    with pytest.raises(ValueError):
        read_wider_labels(p)


def test_prediction_file_reads_exactly_k_rows_sorted(tmp_path):
    d = np.array([[1, 1, 5, 5, 0.2], [2, 2, 5, 5, 0.9], [3, 3, 5, 5, 0.2], [4, 4, 5, 5, 0.5]])
    p = write_prediction_file(tmp_path, "0--Parade", "0_Parade_1", d)
    assert p == tmp_path / "0--Parade" / "0_Parade_1.txt"
    with open(p, "a") as f:
        f.write("9 9 9 9 1.0\n")  # beyond K: ignored
    r = read_prediction_file(p)
    assert r.shape == (4, 5)
    assert r[:, 4].tolist() == [0.9, 0.5, 0.2, 0.2]
    assert r[2, 0] == 1 and r[3, 0] == 3  # stable among ties


def test_split_event_name_does_not_strip_characters():
    assert split_event_name("0--Parade/0_Parade_gpj.jpg") == ("0--Parade", "0_Parade_gpj")
