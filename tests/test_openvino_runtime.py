"""OpenVINO serves our ONNX files (the shipped float model and its INT8 variant) with the same faces as
ONNX Runtime, and `auto` hands it the INT8 variants on a CPU host."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from models.detector import ModelFileError, load_detector, pick_runtime
from models.runtimes.base import RuntimeUnavailable
from models.runtimes.openvino_rt import OpenVinoRuntime
from models.runtimes.shape_pins import PIN_AFTER
from training.compress.calibration import calibration_frames

REPO = Path(__file__).resolve().parents[1]
FLOAT = REPO / "models/weights/fsdet-m.onnx"
INT8 = REPO / "models/weights/fsdet-m-int8.onnx"
CLIP = REPO / "facestream/assets/face-demographics-walking-and-pause.mp4"


@pytest.fixture(scope="module")
def frames():
    return calibration_frames([CLIP], 3)  # real frames with faces


def _matched(a, b, iou: float) -> float:
    """Share of a's boxes that b has a box over at >= iou."""
    if not len(a):
        return 1.0
    if not len(b):
        return 0.0
    return float((box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes)).max(1).values >= iou).float().mean())


def test_float_model_gives_onnx_runtimes_outputs(frames):
    x = np.stack([f.transpose(2, 0, 1) for f in frames[:1]]).astype(np.float32)
    from models.runtimes.onnx_rt import OnnxRuntime

    ov = OpenVinoRuntime(FLOAT, threads=1).infer(x)
    ort = OnnxRuntime(FLOAT, device="cpu", threads=1).infer(x)
    assert ov[0].shape == ort[0].shape and ov[1].shape == ort[1].shape
    np.testing.assert_allclose(ov[0], ort[0], atol=2e-3)  # scores: f32 inference, not bf16
    keep = ort[0][0] > 0.3
    assert keep.sum() > 0
    np.testing.assert_allclose(ov[1][0][keep], ort[1][0][keep], atol=0.1)  # boxes in input pixels


def test_int8_variant_finds_the_faces_onnx_runtime_finds(frames):
    ov = load_detector("openvino", INT8, threads=1)
    ort = load_detector("onnx", INT8, threads=1)
    assert ov.info.runtime == "openvino" and ov.info.precision == "int8"
    for f in frames:
        (a,), (b,) = ort.detect([f]), ov.detect([f])
        assert len(a) > 0
        assert _matched(a, b, 0.8) >= 0.8 and _matched(b, a, 0.8) >= 0.8


def test_a_frame_shape_gets_its_own_compiled_model_with_the_same_outputs(frames):
    rt = OpenVinoRuntime(FLOAT, threads=1)  # float: int8 kernels of another shape may round differently
    x = frames[0].transpose(2, 0, 1)[None].astype(np.float32)
    dynamic = rt.infer(x)
    for _ in range(PIN_AFTER - 2):
        rt.infer(x)
    assert not rt._by_shape  # still on the dynamic model
    pinned = rt.infer(x)
    assert list(rt._by_shape) == [x.shape]
    np.testing.assert_allclose(pinned[0], dynamic[0], atol=1e-3)
    np.testing.assert_allclose(pinned[1], dynamic[1], atol=0.05)
    two = rt.infer(np.concatenate([x, x]))  # a batch runs frame by frame on the pinned model
    np.testing.assert_allclose(two[0][1], pinned[0][0], atol=1e-5)


def test_auto_serves_int8_on_openvino_and_float_on_onnx_runtime():
    assert load_detector("auto", INT8, device="cpu", threads=1).info.runtime == "openvino"
    assert load_detector("auto", FLOAT, device="cpu", threads=1).info.runtime == "onnxruntime"
    assert pick_runtime("auto", "cpu", precision="int8", openvino=False) == "onnx"  # not installed: ORT
    assert pick_runtime("auto", "cpu", precision="fp16", openvino=True) == "onnx"
    # the compression gate and the replay gate evaluate each file on the runtime that serves it
    from training.compress.gate import serving_runtime

    assert (serving_runtime(INT8), serving_runtime(FLOAT)) == ("openvino", "onnx")


def test_bad_requests_get_one_clear_error(tmp_path):
    with pytest.raises(RuntimeUnavailable, match="CPU only"):
        OpenVinoRuntime(INT8, device="cuda:0")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(INT8.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="not a readable ONNX"):
        load_detector("openvino", cut)
