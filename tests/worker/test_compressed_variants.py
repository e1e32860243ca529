"""A worker serves a compressed variant like any model, and its events say which precision it ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.worker.conftest import make_settings
from tests.worker.helpers import publish_frame, read_events, wait_for
from training.compress.calibration import calibration_frames
from worker.loading import load_worker_detector

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models/weights/fsdet-m.safetensors"
CLIP = REPO / "facestream/assets/face-demographics-walking-and-pause.mp4"


@pytest.fixture(scope="module")
def int8_variant(tmp_path_factory):
    from training.compress.variants import quantize_variant

    out = tmp_path_factory.mktemp("int8") / "fsdet-m-int8.onnx"
    return quantize_variant(SHIPPED, out, "int8", calib=[CLIP], frames=3, method="minmax")


def test_worker_serves_an_int8_variant_and_events_report_it(wprefix, rconn, keys, start_worker, int8_variant):
    settings = make_settings(wprefix, int8_variant, threshold=None, runtime="auto")  # as a user runs it
    det = load_worker_detector(settings)
    assert det.info.precision == "int8" and det.threshold == pytest.approx(0.31, abs=0.2)
    start_worker(settings, det=det)
    frame = calibration_frames([CLIP], 1)[0]  # a real frame with faces
    publish_frame(rconn, keys, "cam-int8", 0, frame)
    wait_for(lambda: rconn.xlen(keys.events) >= 1, what="event")
    (ev,) = read_events(rconn, keys.events)
    assert ev.model.precision == "int8" and ev.model.runtime == "openvino"  # auto: INT8 on OpenVINO
    assert len(ev.detections) >= 1
