"""The worker serves the model as its card says: the weights' calibrated threshold unless the user
sets one, and the camera's detect size (the size ingest published the frame at) unless configured."""

from __future__ import annotations

import numpy as np
import pytest

from core.settings import Settings, WorkerSettings
from models.facedet.weights import save_weights
from worker.loading import load_worker_detector


@pytest.fixture(scope="module")
def calibrated_weights(tmp_path_factory):
    import torch

    from models.facedet.config import get_config
    from models.facedet.network import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "cal.safetensors"
    return save_weights(build_model(get_config("fsdet-s")), path, name="fsdet-s", version="t", threshold="0.37")


def _worker(weights, **kw):
    return load_worker_detector(Settings(worker=WorkerSettings(weights=str(weights), runtime="onnx", device="cpu",
                                                               **kw)))


def test_worker_uses_the_weights_threshold_unless_set(calibrated_weights):
    assert _worker(calibrated_weights).threshold == pytest.approx(0.37)
    assert _worker(calibrated_weights, threshold=0.6).threshold == pytest.approx(0.6)


def test_worker_infers_at_the_published_size_by_default(calibrated_weights):
    native = _worker(calibrated_weights)
    fixed = _worker(calibrated_weights, input_size=640)
    frames = [np.zeros((720, 1280, 3), np.uint8), np.zeros((270, 480, 3), np.uint8)]
    # a camera registered with detect_size 1280 is inferred at 1280, a 480 one at 480 (padded to 32)
    assert [b.shape[2:] for b, _, _ in native.preprocess(frames)] == [(736, 1280), (288, 480)]
    shapes = {b.shape[2:] for b, _, _ in fixed.preprocess(frames)}
    assert shapes == {(384, 640)}  # both letterboxed to 640 long side
    dets = native.detect(frames)
    assert len(dets) == 2


def test_input_size_must_be_a_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        WorkerSettings(input_size=1000)


def test_worker_pins_one_onnx_session_per_frame_shape_unless_told_not_to():
    """FACESTREAM_WORKER__PIN_SHAPES (default on): the CPU runtime runs each frame on a session pinned to its
    shape, with the same detections as the dynamic graph; off, one dynamic session runs batches whole."""
    from pathlib import Path

    from training.compress.calibration import calibration_frames

    repo = Path(__file__).resolve().parents[2]
    shipped = repo / "models/weights/fsdet-m.safetensors"
    frames = calibration_frames([repo / "facestream/assets/face-demographics-walking-and-pause.mp4"], 3)
    pinned, dynamic = _worker(shipped), _worker(shipped, pin_shapes=False)
    from models.runtimes.shape_pins import PIN_AFTER

    for _ in range(-(-PIN_AFTER // len(frames)) - 1):  # the first frames of a shape run dynamic
        pinned.detect(frames)
    a, b = pinned.detect(frames), dynamic.detect(frames)
    assert sum(len(x.boxes) for x in a) >= 3  # the clip's faces
    for x, y in zip(a, b, strict=True):
        assert len(x.boxes) == len(y.boxes)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-2)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-4)
    h, w = frames[0].shape[:2]
    assert list(pinned.runtime._by_shape) == [(1, 3, (h + 31) // 32 * 32, (w + 31) // 32 * 32)]
    assert dynamic.runtime._by_shape is None
