"""Decode + NMS: numpy (serving) and torch (training/eval) agree; NMS and truncation semantics."""

from __future__ import annotations

import numpy as np
import pytest

from models.facedet.postprocess import PostprocessConfig, nms, postprocess, postprocess_torch

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")


def random_outputs(rng, b=3, a=2000, spread=200.0):
    centres = rng.uniform(0, 640, (b, a, 2))
    sizes = rng.uniform(4, 120, (b, a, 2))
    # clusters of overlapping boxes so NMS has work to do
    centres[:, a // 2:] = centres[:, : a - a // 2] + rng.normal(0, 4, (b, a - a // 2, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1).astype(np.float32)
    scores = rng.uniform(0, 1, (b, a)).astype(np.float32)
    kps = rng.uniform(0, 640, (b, a, 10)).astype(np.float32)
    return scores, boxes, kps


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cfg", [PostprocessConfig(), PostprocessConfig(0.3, 0.45, 500, 100),
                                 PostprocessConfig(0.02, 0.4, 5000, 750)])
def test_numpy_matches_torch(seed, cfg):
    rng = np.random.default_rng(seed)
    s, b, k = random_outputs(rng)
    ref = postprocess(s, b, k, cfg)
    got = postprocess_torch(torch.from_numpy(s), torch.from_numpy(b), torch.from_numpy(k), cfg)
    for r, g in zip(ref, got, strict=True):
        assert len(r) == len(g) and r.truncated == g.truncated
        np.testing.assert_allclose(r.scores, g.scores, atol=1e-6)
        np.testing.assert_allclose(r.boxes, g.boxes, atol=1e-4)
        np.testing.assert_allclose(r.landmarks, g.landmarks, atol=1e-4)


def test_nms_basics():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    assert nms(boxes, scores, 0.4).tolist() == [3, 2]
    keep = nms(boxes, scores, 0.99)
    assert set(keep.tolist()) == {3, 1, 2}  # identical box 0 suppressed (IoU 1), box 1 (IoU 0.68) kept
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.4).shape == (0,)


def test_threshold_and_truncation():
    n = 30
    xs = np.arange(n, dtype=np.float32) * 20
    boxes = np.stack([xs, xs * 0, xs + 10, xs * 0 + 10], 1)[None]
    scores = np.linspace(0.95, 0.05, n, dtype=np.float32)[None]
    cfg = PostprocessConfig(score_threshold=0.5, max_detections=5)
    (d,) = postprocess(scores, boxes, None, cfg)
    above = int((scores >= 0.5).sum())
    assert len(d) == 5 and d.truncated == above - 5 and d.landmarks is None
    assert np.all(np.diff(d.scores) <= 0)
    (t,) = postprocess_torch(torch.from_numpy(scores), torch.from_numpy(boxes), None, cfg)
    assert len(t) == 5 and t.truncated == above - 5


def test_empty():
    s = np.zeros((2, 100), np.float32)
    out = postprocess(s, np.zeros((2, 100, 4), np.float32), np.zeros((2, 100, 10), np.float32))
    assert [len(d) for d in out] == [0, 0] and out[0].boxes.shape == (0, 4)
