"""Weighted box fusion and the teacher-label helpers built on it."""

from __future__ import annotations

import numpy as np
import pytest

from training.distill.fusion import weighted_box_fusion
from training.distill.label import Fused, fill_missing, fused_to_wider, snap_to_teacher
from training.widerio import WiderImage


def test_identical_boxes_fuse_to_one_with_mean_score():
    a = np.array([[10, 10, 50, 50, 0.9]])
    b = np.array([[10, 10, 50, 50, 0.7]])
    f, lm, sup = weighted_box_fusion([a, b])
    assert f.shape == (1, 5) and sup.tolist() == [2]
    np.testing.assert_allclose(f[0, :4], [10, 10, 50, 50], atol=1e-5)
    assert f[0, 4] == pytest.approx(0.8)
    assert lm is None


def test_coordinates_are_score_weighted_and_weights_apply():
    a = np.array([[0, 0, 100, 100, 0.9]])
    b = np.array([[10, 0, 110, 100, 0.3]])
    f, _, _ = weighted_box_fusion([a, b], weights=[1, 1])
    # x1 = (0*0.9 + 10*0.3) / 1.2
    assert f[0, 0] == pytest.approx(2.5, abs=1e-4)
    f2, _, _ = weighted_box_fusion([a, b], weights=[1, 3])
    assert f2[0, 0] == pytest.approx(10 * 0.9 / 1.8, abs=1e-4)  # 0.9 vs 0.3*3 = 0.9 -> midpoint
    assert f2[0, 4] == pytest.approx((0.9 * 1 + 0.3 * 3) / 4)


def test_face_seen_by_one_teacher_is_down_weighted_and_separate_faces_stay_apart():
    a = np.array([[0, 0, 20, 20, 0.9], [100, 100, 140, 140, 0.8]])
    b = np.array([[0, 0, 20, 20, 0.9]])
    c = np.array([[1, 0, 21, 20, 0.9]])
    f, _, sup = weighted_box_fusion([a, b, c])
    assert len(f) == 2
    assert f[0, 4] == pytest.approx(0.9) and sup[0] == 3
    assert f[1, 4] == pytest.approx(0.8 / 3) and sup[1] == 1


def test_duplicates_of_one_teacher_do_not_inflate_the_score():
    a = np.array([[0, 0, 20, 20, 0.9], [0, 0, 20, 21, 0.8]])
    b = np.zeros((0, 5))
    f, _, sup = weighted_box_fusion([a, b])
    assert len(f) == 1 and f[0, 4] == pytest.approx(0.45) and sup[0] == 1


def test_landmarks_averaged_where_present():
    a = np.array([[0, 0, 20, 20, 0.5]])
    b = np.array([[0, 0, 20, 20, 0.5]])
    la = np.full((1, 5, 2), 2.0)
    lb = np.full((1, 5, 2), 4.0)
    _, lm, _ = weighted_box_fusion([a, b], [la, lb])
    np.testing.assert_allclose(lm, 3.0)
    _, lm, _ = weighted_box_fusion([a, b], [la, None])  # a teacher without landmarks
    np.testing.assert_allclose(lm, 2.0)


def test_empty_inputs():
    f, lm, sup = weighted_box_fusion([np.zeros((0, 5)), np.zeros((0, 5))], [None, np.zeros((0, 5, 2))])
    assert f.shape == (0, 5) and lm.shape == (0, 5, 2) and len(sup) == 0


def test_many_boxes_is_fast_enough():
    import time

    rng = np.random.default_rng(0)
    dets = []
    for _ in range(3):
        xy = rng.uniform(0, 1000, (800, 2))
        wh = rng.uniform(5, 50, (800, 2))
        dets.append(np.c_[xy, xy + wh, rng.uniform(0.05, 1, 800)])
    t = time.thread_time()  # CPU time: wall time is meaningless on a shared CI machine
    f, _, _ = weighted_box_fusion(dets)
    assert time.thread_time() - t < 2.0  # ~0.2 s here
    assert 0 < len(f) <= 2400


def test_labels_and_ignore_split_and_fill_missing():
    dets = np.array([[0, 0, 20, 20, 0.9], [100, 0, 120, 20, 0.4], [200, 0, 220, 20, 0.1],
                     [1, 1, 21, 21, 0.95]], np.float32)
    fused = Fused(dets, None, np.ones(4, np.int64))
    w = fused_to_wider("x.jpg", fused, threshold=0.5, ignore_below=0.3)
    assert len(w) == 3  # 0.1 dropped
    assert w.attrs[:, 3].tolist() == [0, 1, 0]  # invalid=1 marks the ignore region
    human = WiderImage("x.jpg", np.array([[0, 0, 20, 20]], np.float32), np.zeros((1, 6), np.int32))
    filled = fill_missing(human, fused, 0.5, 0.3, max_iou=0.3, fill_as="label", keep_human=False)
    assert filled.boxes.tolist() == [[100, 0, 20, 20]] and filled.attrs[0, 3] == 1
    merged = fill_missing(human, fused, 0.5, 0.3, fill_as="ignore")
    assert len(merged) == 2 and merged.attrs[:, 3].tolist() == [0, 1]
    assert merged.scores[0] == 1.0  # human faces keep score 1


def test_snap_to_teacher_moves_matched_boxes_one_to_one_and_keeps_the_rest():
    # Two human head-style boxes (1.3x wide) over two teacher faces, a third human face the teachers
    # missed, one low-score teacher box that must not be snapped to, and one teacher box claimed by two.
    human = WiderImage("x.jpg", np.array([[0, 0, 52, 46], [100, 0, 52, 46], [300, 300, 30, 30]], np.float32),
                       np.zeros((3, 6), np.int32))
    lms = np.arange(4 * 10, dtype=np.float32).reshape(4, 5, 2)
    dets = np.array([[6, 3, 46, 43, 0.9], [106, 3, 146, 43, 0.8], [300, 300, 330, 330, 0.2],
                     [8, 4, 44, 40, 0.7]], np.float32)
    snapped, n = snap_to_teacher(human, Fused(dets, lms, np.ones(4, np.int64)), threshold=0.5, min_iou=0.4)
    assert n == 2
    np.testing.assert_allclose(snapped.boxes[0], [6, 3, 40, 40])  # the best overlap wins; one to one
    np.testing.assert_allclose(snapped.boxes[1], [106, 3, 40, 40])
    np.testing.assert_allclose(snapped.boxes[2], [300, 300, 30, 30])  # only a 0.2 teacher box: kept
    np.testing.assert_allclose(snapped.landmarks[0], lms[0])  # landmarks come with the teacher box
    assert np.isnan(snapped.landmarks[2]).all()
    assert human.boxes[0, 2] == 52  # the input is not modified
    same, n0 = snap_to_teacher(human, Fused(dets, lms, np.ones(4, np.int64)), threshold=0.5, min_iou=0.9)
    assert n0 == 0 and np.array_equal(same.boxes, human.boxes)
