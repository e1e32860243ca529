"""The torch runtime's device-side batch path (GPU letterbox, batch buckets, batched NMS on the device, batched
JPEG decode) against the cv2 / numpy serving path, on real frames. It runs the same code on the CPU, so these
parity tests run everywhere; tests/gpu/ repeats them on CUDA."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from models.detector import load_detector
from models.facedet.postprocess import PostprocessConfig, postprocess
from models.runtimes.torch_batch import bucket, postprocess_device
from training.compress.calibration import calibration_frames

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models/weights/fsdet-m.safetensors"
CLIP = REPO / "facestream/assets/face-demographics-walking-and-pause.mp4"
WIDER = REPO.parent / "shared/data/eval/widerface-val-mini/images"


@pytest.fixture(scope="module")
def frames():
    fr = calibration_frames([CLIP], 3)
    crowd = cv2.imread(str(sorted(WIDER.rglob("*.jpg"))[0]))
    small = cv2.resize(fr[0], (480, 270))  # another camera resolution in the same call
    return [fr[0], crowd, fr[1], small, fr[2]]


@pytest.fixture(scope="module")
def pair():
    ref = load_detector(runtime="torch", weights=SHIPPED, threshold=0.3, threads=2)
    dev = load_detector(runtime="torch", weights=SHIPPED, threshold=0.3, threads=2, device_preprocess=True)
    assert not ref.runtime.device_preprocess and dev.runtime.device_preprocess
    return ref, dev


def _match(a, b):
    assert len(a) > 0
    iou = box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes))
    best, j = iou.max(1)
    assert (best > 0.9).float().mean() >= 0.95
    close = best > 0.9
    assert np.abs(a.scores[close.numpy()] - b.scores[j[close].numpy()]).max() < 0.03
    assert abs(len(a) - len(b)) <= max(1, len(a) // 20)


def test_device_path_finds_the_same_faces_as_the_serving_path(pair, frames):
    ref, dev = pair
    for a, b in zip(ref.detect(frames), dev.detect(frames), strict=True):
        _match(a, b)
        assert b.landmarks is not None and b.landmarks.shape == (len(b), 10)


def test_batch_buckets_do_not_change_results(pair, frames):
    _, dev = pair
    same = [frames[0], frames[2], frames[4]]  # one shape, 3 frames: padded to a bucket of 4 with a blank
    batched = dev.detect(same)
    for f, d in zip(same, batched, strict=True):
        (alone,) = dev.detect([f])
        np.testing.assert_allclose(d.boxes, alone.boxes, atol=1e-3)
        np.testing.assert_allclose(d.scores, alone.scores, atol=1e-5)
    assert [bucket(n, 64) for n in (1, 3, 8, 9, 100)] == [1, 4, 8, 16, 64]


def test_device_nms_matches_the_numpy_nms_and_counts_truncation():
    rng = np.random.default_rng(0)
    n, a = 3, 800
    xy = rng.uniform(0, 300, (n, a, 2))
    wh = rng.uniform(8, 60, (n, a, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    scores = rng.uniform(0, 1, (n, a)).astype(np.float32)
    kps = rng.uniform(0, 300, (n, a, 10)).astype(np.float32)
    post = PostprocessConfig(score_threshold=0.4, nms_iou=0.4, max_detections=25)
    want = postprocess(scores, boxes, kps, post)
    got = postprocess_device(torch.from_numpy(scores), torch.from_numpy(boxes), torch.from_numpy(kps), post, n)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g.scores, w.scores, rtol=1e-6)
        np.testing.assert_allclose(g.boxes, w.boxes, rtol=1e-6)
        np.testing.assert_allclose(g.landmarks, w.landmarks, rtol=1e-6)
        assert g.truncated == w.truncated > 0


def test_batched_jpeg_decode_and_its_fallback_for_a_bad_payload(frames):
    from core.payload import decode_jpegs_on_device, decode_payload
    from core.schema import FrameRef, PayloadCodec
    from worker.pipeline import Pipeline, Work

    jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in frames[:2]]
    dec = decode_jpegs_on_device(jpegs, "cpu")  # the same torchvision call the worker makes on CUDA
    for d, j in zip(dec, jpegs, strict=True):
        cpu = decode_payload(j, "jpeg")
        assert d.shape == cpu.shape and np.abs(d.numpy().astype(int) - cpu).mean() < 2.0

    pipe = Pipeline(detector=None, worker_id="t")
    pipe.decode_device = "cpu"
    items = []
    for i, payload in enumerate([jpegs[0], b"\xff\xd8 not a jpeg", jpegs[1]]):
        h, w = (frames[0] if i == 0 else frames[1]).shape[:2]
        ref = FrameRef(camera_id="c", seq=i, pts=0, time_base="1/90000", capture_ns=0, width=w, height=h,
                       payload_width=w, payload_height=h, codec=PayloadCodec.jpeg, key=f"k{i}")
        items.append((Work(entry=None, ref=ref), payload))
    pipe.decode_batch(items)  # the batch fails on the bad one: all three go through the CPU decoder
    assert [bool(w.error) for w, _ in items] == [False, True, False]
    assert items[0][0].image.shape == frames[0].shape
