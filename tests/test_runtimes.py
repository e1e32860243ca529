"""Every runtime present passes the same parity tests; letterbox mapping, batching, truncation."""

from __future__ import annotations

import numpy as np
import pytest

from models import detector as D
from models.detector import Detector, load_detector, pick_runtime
from models.facedet.export import export_onnx
from models.facedet.postprocess import PostprocessConfig
from models.facedet.weights import MissingWeightsError, ModelFileError, random_model, save_weights
from models.runtimes.base import Runtime, cuda_available, tensorrt_importable

SIZE = 320  # small inputs keep the tests quick; the variant does not matter here


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # shared 2-core machine: OpenMP spin-waits with 2 threads ran 40x slower than 1 thread
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def runtimes_present() -> list[str]:
    out = ["torch", "onnx"]
    if tensorrt_importable() and cuda_available():
        out.append("tensorrt")
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    m = random_model("fsdet-s", seed=3)
    w = save_weights(m, d / "fsdet-s.safetensors", version="t", trained_on="random-init", threshold=0.6)
    from models.facedet.weights import load_model

    model, meta = load_model(w)
    onnx = export_onnx(model, d / "fsdet-s.onnx", meta=meta)
    return w, onnx


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)

    def im(h, w):
        # smooth random blobs: gives the random network varied, non-trivial responses
        small = rng.integers(0, 255, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        import cv2

        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)

    return [im(480, 640), im(640, 480), im(200, 300), im(480, 640), im(720, 1280)]


@pytest.fixture(scope="module")
def detectors(files):
    w, onnx = files
    out = {}
    for rt in runtimes_present():
        out[rt] = load_detector(rt, w, input_size=SIZE, device="cpu" if rt != "tensorrt" else None,
                                cache_dir=str(onnx.parent / "cache"), threads=1)
    return out


def test_info_and_threshold_from_meta(detectors, files):
    from models.facedet.weights import file_sha256

    sha = file_sha256(files[0])
    for rt, det in detectors.items():
        assert det.info.name == "fsdet-s" and det.info.version == "t" and det.info.sha256 == sha
        assert det.info.input_size == SIZE
        assert det.info.runtime == {"torch": "torch", "onnx": "onnxruntime", "tensorrt": "tensorrt"}[rt]
        assert det.threshold == 0.6


def test_onnx_export_is_reused_beside_weights(detectors, files):
    # the .onnx beside the weights carries their sha256, so no fresh export was made
    assert not (files[1].parent / "cache").exists() or not list((files[1].parent / "cache").glob("*.onnx"))


def test_raw_parity_torch_vs_onnx(detectors):
    rng = np.random.default_rng(1)
    for shape in [(2, 3, 256, 320), (1, 3, 320, 192)]:
        x = rng.uniform(0, 255, shape).astype(np.float32)
        ref = detectors["torch"].runtime.infer(x)
        for rt, det in detectors.items():
            out = det.runtime.infer(x)
            for a, b in zip(out, ref, strict=True):
                assert a.shape == b.shape and a.dtype == np.float32
            tol = 2e-2 if det.runtime.precision == "fp16" else 1e-3
            np.testing.assert_allclose(out[0], ref[0], atol=tol, err_msg=rt)
            np.testing.assert_allclose(out[1], ref[1], atol=tol * 100, err_msg=rt)


def _assert_same(a, b, tol=1e-3):
    assert len(a) == len(b), (len(a), len(b))
    np.testing.assert_allclose(a.scores, b.scores, atol=tol)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=tol * 200)
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=tol * 200)
    assert a.truncated == b.truncated


def _iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], -1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def _assert_matched(a, b, thr, tol):
    """Every confident detection of `a` has a twin in `b` (IoU > 0.98, score within tol). Exact list
    equality across runtimes is not a fair test: float noise flips NMS ties at IoU ~ nms_iou."""
    keep = a.scores >= thr + 0.02
    if not keep.any():
        return
    assert len(b), "b found nothing"
    iou = _iou(a.boxes[keep], b.boxes)
    j = iou.argmax(1)
    assert (iou.max(1) > 0.98).mean() > 0.97, iou.max(1)
    close = np.abs(a.scores[keep] - b.scores[j]) < tol
    assert close.mean() > 0.97


def test_detect_parity_across_runtimes(detectors, images):
    from dataclasses import replace

    thr = 0.9
    dets = {rt: replace(d, post=replace(d.post, score_threshold=thr)) for rt, d in detectors.items()}
    ref = dets["torch"].detect(images)
    assert sum(len(d) for d in ref) > 20, "the random model should find something to compare"
    for rt, det in dets.items():
        out = det.detect(images)
        tol = 2e-2 if det.runtime.precision == "fp16" else 1e-3
        for a, b in zip(out, ref, strict=True):
            assert abs(len(a) - len(b)) <= max(2, 0.03 * len(b)), rt
            _assert_matched(a, b, thr, tol)
            _assert_matched(b, a, thr, tol)


@pytest.mark.parametrize("rt", runtimes_present())
def test_batch_equals_single(detectors, images, rt):
    det = detectors[rt]
    batched = det.detect(images)
    for im, d in zip(images, batched, strict=True):
        _assert_same(d, det.detect([im])[0], tol=1e-4)


def test_one_batch_per_padded_shape(files, images):
    calls = []

    class Spy(Runtime):
        def infer(self, batch):
            calls.append(batch.shape)
            n, _, h, w = batch.shape
            a = sum((h // s) * (w // s) for s in (8, 16, 32))
            return (np.zeros((n, a), np.float32), np.zeros((n, a, 4), np.float32),
                    np.zeros((n, a, 10), np.float32))

    det = _with_runtime(files[0], Spy(), input_size=SIZE)
    out = det.detect(images)
    assert len(out) == len(images)
    # 640x480 (twice), 480x640, 300x200, 1280x720 at 320: shapes (256,320) x2, (320,256), (224,320), (192,320)
    assert sorted(calls) == sorted([(2, 3, 256, 320), (1, 3, 320, 256), (1, 3, 224, 320), (1, 3, 192, 320)])
    Spy.max_batch = 1
    calls.clear()
    det.detect(images)
    assert len(calls) == len(images)


def test_cross_shape_padding_would_change_results(detectors, images):
    """Why detect() buckets by shape: padding a 640x480 frame to a square canvas changes its outputs,
    and not only near the pad (the stride-32 features that the FPN spreads see the whole canvas)."""
    det = detectors["torch"]
    from models.facedet.preprocess import letterbox

    boxed, _ = letterbox(images[0], SIZE, 32)  # (256, 320)
    x = boxed.transpose(2, 0, 1)[None].astype(np.float32)
    big = np.zeros((1, 3, 320, 320), np.float32)
    big[:, :, :256] = x
    a = det.runtime.infer(x)[0]
    b = det.runtime.infer(big)[0]
    # compare stride-8 scores of the real image region: the bottom rows differ
    sa = a[0, : 32 * 40].reshape(32, 40)
    sb = b[0, : 40 * 40].reshape(40, 40)[:32]
    assert np.abs(sa[-2:] - sb[-2:]).max() > 1e-2  # at the pad border: clearly different
    assert np.abs(sa - sb).max() > 1e-2


class _Fixed(Runtime):
    """Returns given outputs for any input (a known box in input space)."""

    def __init__(self, scores, boxes, landmarks):
        self.out = (scores, boxes, landmarks)

    def infer(self, batch):
        n = batch.shape[0]
        return tuple(np.repeat(o[None], n, 0) for o in self.out)


def _with_runtime(weights, rt, threshold=0.5, max_detections=750, input_size=640):
    from core.schema import ModelInfo
    from models.facedet.weights import read_meta

    meta = read_meta(weights)
    return Detector(runtime=rt, meta=meta,
                    post=PostprocessConfig(score_threshold=threshold, max_detections=max_detections),
                    input_size=input_size,
                    info=ModelInfo(name="x", version="0", sha256="0", runtime="fake"))


def test_boxes_map_back_to_original_pixels(files):
    # 1280x720 at input 640: scale 0.5, resized 640x360, padded to 640x384 (image top-left)
    box = np.array([[100.0, 50.0, 200.0, 150.0]], np.float32)
    kps = np.arange(10, dtype=np.float32)[None] * 10 + 20
    det = _with_runtime(files[0], _Fixed(np.array([0.9], np.float32), box, kps))
    img = np.zeros((720, 1280, 3), np.uint8)
    (d,) = det.detect([img])
    np.testing.assert_allclose(d.boxes, [[200, 100, 400, 300]], atol=1e-3)
    np.testing.assert_allclose(d.landmarks, kps * 2, atol=1e-3)
    np.testing.assert_allclose(d.scores, [0.9])
    # odd size: 333x517 (w x h); long side 517 -> 640, scale 640/517
    img = np.zeros((517, 333, 3), np.uint8)
    (d,) = det.detect([img])
    s = 640 / 517
    np.testing.assert_allclose(d.boxes, box / s, atol=0.5)
    # boxes are clipped to the original image
    det = _with_runtime(files[0], _Fixed(np.array([0.9], np.float32),
                                         np.array([[-10.0, -10.0, 700.0, 700.0]], np.float32), kps))
    (d,) = det.detect([np.zeros((720, 1280, 3), np.uint8)])
    np.testing.assert_allclose(d.boxes, [[0, 0, 1280, 720]])


def test_max_detections_truncation_counted(files):
    n = 40
    xs = np.arange(n, dtype=np.float32) * 15
    boxes = np.stack([xs, xs * 0, xs + 10, xs * 0 + 10], 1)  # disjoint boxes: NMS keeps all
    scores = np.linspace(0.99, 0.6, n).astype(np.float32)
    det = _with_runtime(files[0], _Fixed(scores, boxes, np.zeros((n, 10), np.float32)), max_detections=7)
    (d,) = det.detect([np.zeros((640, 640, 3), np.uint8)])
    assert len(d) == 7 and d.truncated == n - 7
    np.testing.assert_allclose(d.scores, scores[:7])


def test_empty_and_bad_inputs(detectors):
    det = detectors["onnx"]
    assert det.detect([]) == []
    with pytest.raises(ValueError, match="image 1"):
        det.detect([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        det.detect([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(TypeError):
        det.detect(np.zeros((10, 10, 3), np.uint8))
    (d,) = det.detect([np.zeros((1, 1, 3), np.uint8)])
    assert d.boxes.shape[1] == 4


def test_load_from_onnx_and_torch_from_onnx_sibling(files):
    w, onnx = files
    det = load_detector("onnx", onnx, input_size=SIZE, threads=1)
    assert det.info.runtime == "onnxruntime" and det.info.sha256 == load_detector("torch", w).info.sha256
    det = load_detector("torch", onnx, input_size=SIZE, device="cpu")  # finds the sibling .safetensors
    assert det.info.runtime == "torch"


def test_onnx_export_cached_when_no_sibling(tmp_path):
    m = random_model("fsdet-s", seed=5)
    w = save_weights(m, tmp_path / "only.safetensors")
    det = load_detector("onnx", w, cache_dir=tmp_path / "cache", input_size=SIZE, threads=1)
    cached = list((tmp_path / "cache").glob("*.onnx"))
    assert len(cached) == 1 and det.info.sha256[:16] in cached[0].name
    with pytest.raises(ModelFileError, match="torch runtime needs"):
        load_detector("torch", cached[0])


def test_pick_runtime(monkeypatch):
    assert pick_runtime("torch") == "torch"
    with pytest.raises(ValueError, match="unknown runtime"):
        pick_runtime("tflite")
    monkeypatch.setattr(D, "tensorrt_importable", lambda: True)
    monkeypatch.setattr(D, "cuda_available", lambda: True)
    assert pick_runtime("auto") == "tensorrt"
    assert pick_runtime("auto", device="cpu") == "onnx"
    monkeypatch.setattr(D, "cuda_available", lambda: False)
    assert pick_runtime("auto") == "onnx"
    # a GPU host without TensorRT runs torch on CUDA, never ONNX Runtime's CPU provider
    assert pick_runtime("auto", cuda=True, trt=False, ort_providers=["CPUExecutionProvider"]) == "torch"
    assert pick_runtime("auto", cuda=False, ort_providers=[]) == "torch"


def test_a_gpu_host_on_the_cpu_says_so(monkeypatch, tmp_path):
    from worker import main as W

    det = load_detector("onnx", device="cpu")
    monkeypatch.setattr(D, "gpu_present", lambda: "nvidia-smi")
    warning = W.device_warning(det)
    assert "WORKER ON CPU" in warning and "nvidia-smi" in warning
    monkeypatch.setattr(D, "gpu_present", lambda: None)
    assert W.device_warning(det) == ""


def test_missing_weights_message(tmp_path, monkeypatch):
    from models.facedet import weights as W

    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(MissingWeightsError, match="facestream train"):
        load_detector()


def test_threshold_override_and_validation(files):
    det = load_detector("torch", files[0], threshold=0.0, input_size=SIZE)
    assert det.threshold == 0.0
    with pytest.raises(ValueError, match="threshold"):
        load_detector("torch", files[0], threshold=1.5)
    with pytest.raises(ValueError, match="input_size"):
        load_detector("torch", files[0], input_size=300)


def test_cached_onnx_export_must_come_from_the_same_weights(tmp_path):
    """A file planted under the cached export's name is not trusted: re-exported from the weights."""
    import torch

    from models.detector import onnx_for_weights
    from models.facedet.config import get_config
    from models.facedet.export import read_onnx_meta
    from models.facedet.network import build_model
    from models.facedet.weights import read_meta, save_weights

    torch.manual_seed(0)
    w = save_weights(build_model(get_config("fsdet-s")), tmp_path / "w" / "a.safetensors", name="fsdet-s",
                     version="t")
    meta = read_meta(w)
    cache = tmp_path / "cache"
    cache.mkdir()
    planted = cache / f"{meta.name}-{meta.sha256[:16]}.onnx"
    planted.write_bytes(b"not the model")
    got = onnx_for_weights(w, meta, cache)
    assert got == planted and read_onnx_meta(got)[0].sha256 == meta.sha256


def test_onnx_sessions_pinned_per_shape_match_the_dynamic_graph(files, monkeypatch):
    """CPU: each frame runs on a session pinned to its shape (ONNX Runtime then folds the decode's shape
    arithmetic): the same outputs as the dynamic graph on the whole batch, one session per frame shape,
    built once PIN_AFTER frames of it have run, least recent out first."""
    import onnx

    from models.runtimes import onnx_rt, shape_pins
    from models.runtimes.onnx_rt import OnnxRuntime

    monkeypatch.setattr(shape_pins, "PIN_AFTER", 1)
    rt = OnnxRuntime(files[1], threads=1)
    rng = np.random.default_rng(3)
    shapes = [(1, 3, 64, 96), (3, 3, 64, 96), (2, 3, 96, 64)]
    for shape in shapes:
        x = rng.uniform(0, 255, shape).astype(np.float32)
        pinned = rt.infer(x)
        dynamic = rt.session.run(onnx_rt.OUTPUT_NAMES, {rt.input_name: x})
        for a, b in zip(pinned, dynamic, strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
        frame = (1, *shape[1:])
        sess = rt.session_for(frame)
        assert sess is not rt.session and rt.session_for(frame) is sess  # built once, then reused
        assert list(sess.get_inputs()[0].shape) == list(frame)  # every dimension pinned
    assert list(rt._by_shape) == [(1, 3, 64, 96), (1, 3, 96, 64)]  # batches of one frame shape share one
    monkeypatch.setattr(shape_pins, "MAX_SHAPE_SESSIONS", 2)
    rt.session_for((1, 3, 64, 96))  # used again: now the most recent
    rt.infer(rng.uniform(0, 255, (2, 3, 64, 64)).astype(np.float32))
    assert list(rt._by_shape) == [(1, 3, 64, 96), (1, 3, 64, 64)]
    # a shape is pinned only once PIN_AFTER of its frames have run: one-off sizes stay dynamic
    monkeypatch.setattr(shape_pins, "PIN_AFTER", 3)
    rt.infer(rng.uniform(0, 255, (2, 3, 32, 32)).astype(np.float32))
    assert (1, 3, 32, 32) not in rt._by_shape
    rt.infer(rng.uniform(0, 255, (1, 3, 32, 32)).astype(np.float32))
    assert (1, 3, 32, 32) in rt._by_shape
    # a pinned session that cannot be built (the file gone): the dynamic session serves that shape, once asked
    gone = files[1].parent / "gone.onnx"
    gone.write_bytes(files[1].read_bytes())
    grt = OnnxRuntime(gone, threads=1)
    gone.unlink()
    monkeypatch.setattr(shape_pins, "PIN_AFTER", 1)
    x = rng.uniform(0, 255, (2, 3, 64, 96)).astype(np.float32)
    for a, b in zip(grt.infer(x), grt.session.run(onnx_rt.OUTPUT_NAMES, {grt.input_name: x}), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
    assert grt._by_shape[(1, 3, 64, 96)] is grt.session
    # a graph without symbolic dimensions runs on its own session
    fixed = onnx.load(str(files[1]))
    for i, d in enumerate(fixed.graph.input[0].type.tensor_type.shape.dim):
        d.dim_value = (1, 3, 64, 96)[i]
    path = files[1].parent / "fixed.onnx"
    onnx.save(fixed, str(path))
    frt = OnnxRuntime(path, threads=1)
    assert frt.session_for((1, 3, 64, 96)) is frt.session
