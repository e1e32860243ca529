"""GPU checks of the detector runtimes (skipped without CUDA) and a CPU smoke run of bench/detector_gpu.py."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.runtimes.base import cuda_available, tensorrt_importable

ROOT = Path(__file__).resolve().parents[2]
needs_cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


def test_gpu_bench_script_degrades_to_cpu(tmp_path, monkeypatch):
    """The GPU benchmark must run (with a warning) where CUDA is missing; tiny sizes keep it quick."""
    out = tmp_path / "gpu.json"
    argv = ["detector_gpu.py", "--out", str(out), "--variants", "fsdet-s", "--batches", "1,2", "--size", "64",
            "--iters", "1", "--warmup", "0"]
    if cuda_available():
        argv += ["--device", "cpu"]
    monkeypatch.setattr(sys, "argv", argv)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.warns(UserWarning, match="CUDA is not available"), pytest.raises(SystemExit) as e:
            runpy.run_path(str(ROOT / "bench" / "detector_gpu.py"), run_name="__main__")
    finally:
        torch.set_num_threads(n)
    assert e.value.code == 0
    doc = json.loads(out.read_text())
    assert doc["precision"] == "fp32" and [r["batch"] for r in doc["results"]] == [1, 2]
    assert all(r["frames_per_s"] > 0 for r in doc["results"])


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from models.facedet.weights import random_model, save_weights

    return save_weights(random_model("fsdet-s", seed=7), tmp_path_factory.mktemp("g") / "fsdet-s.safetensors")


def _frames():
    rng = np.random.default_rng(0)
    import cv2

    return [cv2.resize(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (640, 480)) for _ in range(4)] + [
        cv2.resize(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8), (480, 640))]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("opts", [{"fp16": False}, {"fp16": True}, {"fp16": True, "cuda_graphs": True}])
def test_torch_cuda_matches_cpu(weights, opts):
    from models.detector import load_detector

    cpu = load_detector("torch", weights, device="cpu", threshold=0.0)
    gpu = load_detector("torch", weights, device="cuda", threshold=0.0, **opts)
    x = np.random.default_rng(1).uniform(0, 255, (3, 3, 480, 640)).astype(np.float32)
    a, b = cpu.runtime.infer(x), gpu.runtime.infer(x)
    tol = 3e-2 if opts["fp16"] else 1e-3
    np.testing.assert_allclose(b[0], a[0], atol=tol)
    np.testing.assert_allclose(b[1], a[1], atol=tol * 200)
    assert gpu.info.precision == ("fp16" if opts["fp16"] else "fp32")
    # batch vs single on the GPU, repeated calls (graph replay) stable
    frames = _frames()
    batched = gpu.detect(frames)
    for f, d in zip(frames, batched, strict=True):
        s = gpu.detect([f])[0]
        assert abs(len(s) - len(d)) <= max(2, 0.03 * len(d))


@pytest.mark.gpu
@needs_cuda
def test_onnxruntime_cuda_provider(weights):
    from models.runtimes.onnx_rt import available_providers

    if "CUDAExecutionProvider" not in available_providers():
        pytest.skip("onnxruntime-gpu (CUDAExecutionProvider) is not installed")
    from models.detector import load_detector

    det = load_detector("onnx", weights, device="cuda")
    ref = load_detector("onnx", weights, device="cpu")
    x = np.random.default_rng(2).uniform(0, 255, (2, 3, 480, 640)).astype(np.float32)
    np.testing.assert_allclose(det.runtime.infer(x)[0], ref.runtime.infer(x)[0], atol=1e-3)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(not tensorrt_importable(), reason="TensorRT is not installed (see ARCHITECTURE.md)")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_parity_and_cache(weights, tmp_path, precision):
    from models.detector import load_detector

    det = load_detector("tensorrt", weights, cache_dir=tmp_path, precision=precision, max_batch=8)
    assert det.runtime.built
    again = load_detector("tensorrt", weights, cache_dir=tmp_path, precision=precision, max_batch=8)
    assert not again.runtime.built
    ref = load_detector("torch", weights, device="cpu")
    x = np.random.default_rng(3).uniform(0, 255, (4, 3, 480, 640)).astype(np.float32)
    tol = 3e-2 if precision == "fp16" else 2e-3
    np.testing.assert_allclose(det.runtime.infer(x)[0], ref.runtime.infer(x)[0], atol=tol)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("graphs", [False, True])
def test_gpu_batch_path_finds_the_faces_the_cpu_path_finds(graphs):
    """uint8 upload, letterbox + NMS on the GPU, fp16, CUDA graphs per bucket vs the CPU serving path, on real
    frames of the bundled clip; and GPU JPEG decode feeding it."""
    import cv2
    from torchvision.ops import box_iou

    from core.payload import decode_jpegs_on_device
    from models.detector import load_detector
    from training.compress.calibration import calibration_frames

    shipped = ROOT / "models/weights/fsdet-m.safetensors"
    frames = calibration_frames([ROOT / "facestream/assets/face-demographics-walking-and-pause.mp4"], 4)
    cpu = load_detector("onnx", shipped, threshold=0.3)
    gpu = load_detector("torch", shipped, device="cuda", threshold=0.3, cuda_graphs=graphs)
    assert gpu.runtime.device_preprocess
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
    on_gpu = decode_jpegs_on_device(jpegs, "cuda")
    for inputs in (frames, on_gpu):
        for a, b in zip(cpu.detect(frames), gpu.detect(inputs), strict=True):
            assert len(a) > 0
            iou = box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes))
            assert (iou.max(1).values > 0.8).float().mean() >= 0.9
