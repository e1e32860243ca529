"""The one way to run the face detector: weights -> runtime -> letterbox -> infer -> NMS -> original pixels.

    det = load_detector(runtime="auto", weights=None)   # shipped models/weights/fsdet-m.safetensors
    det.info                                            # core.schema.ModelInfo
    det.detect([bgr_uint8_image, ...])                  # list[Detections] in each image's original pixels

The worker, the evaluator and the CLI all use this API.

Batching and padding: every image is letterboxed (long side -> input_size, aspect kept, image top-left,
or at its own size when input_size is 0 -- the worker's default, so a camera's detect_size is the detect size;
zero pad right/bottom to a multiple of 32). Images whose padded shapes differ are NOT padded further to a
common shape: the extra zero pad would sit where a lone image sees the convolutions' implicit border, and
features near the right/bottom edge would change. Instead `detect` runs one batch per padded shape
(camera fleets send one or a few resolutions, so this costs nothing in practice), which makes
`detect(batch)[i] == detect([frame_i])` hold up to float noise for any mix of shapes.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.schema import RUNTIMES, ModelInfo
from models.cache import check_private, default_cache_dir
from models.facedet.config import DetectorConfig
from models.facedet.postprocess import Detections, PostprocessConfig, postprocess
from models.facedet.preprocess import Letterbox, letterbox
from models.facedet.weights import (
    HOW_TO_GET_WEIGHTS,
    MissingWeightsError,
    ModelFileError,
    WeightsMeta,
    default_weights_path,
    file_sha256,
    require_weights,
)
from models.runtimes.base import Runtime, RuntimeUnavailable, cuda_available, tensorrt_importable
from models.runtimes.openvino_rt import openvino_importable

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5

__all__ = [
    "HOW_TO_GET_WEIGHTS", "RUNTIMES", "Detections", "Detector", "MissingWeightsError", "ModelFileError",
    "RuntimeUnavailable", "default_weights_path", "detector_from_model", "load_detector", "pick_runtime",
]


def _check_image(i: int, im) -> None:
    if not isinstance(im, np.ndarray) or im.ndim != 3 or im.shape[2] != 3 or im.size == 0:
        shape = getattr(im, "shape", type(im).__name__)
        raise ValueError(f"image {i}: expected a BGR uint8 HxWx3 array, got {shape}")
    if im.dtype != np.uint8:
        raise ValueError(f"image {i}: expected dtype uint8, got {im.dtype}")


@dataclass
class Detector:
    runtime: Runtime
    meta: WeightsMeta
    post: PostprocessConfig
    input_size: int
    info: ModelInfo

    @property
    def config(self) -> DetectorConfig:
        return self.meta.config

    @property
    def threshold(self) -> float:
        return self.post.score_threshold

    # -- stages (the worker may time them separately) --------------------------------------------------

    def preprocess(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, list[int], list[Letterbox]]]:
        """Letterbox and group by padded shape: [(batch float32 NCHW, image indices, letterboxes)]."""
        groups: dict[tuple[int, int], list[tuple[int, np.ndarray, Letterbox]]] = defaultdict(list)
        for i, im in enumerate(images):
            _check_image(i, im)
            boxed, lb = letterbox(im, self.input_size or max(im.shape[:2]), self.config.pad_multiple)
            groups[boxed.shape[:2]].append((i, boxed, lb))
        out = []
        cap = self.runtime.max_batch or len(images) or 1
        for (h, w), items in groups.items():
            for start in range(0, len(items), cap):
                chunk = items[start:start + cap]
                batch = np.empty((len(chunk), 3, h, w), np.float32)
                for j, (_, boxed, _) in enumerate(chunk):
                    batch[j] = boxed.transpose(2, 0, 1)
                out.append((batch, [c[0] for c in chunk], [c[2] for c in chunk]))
        return out

    def postprocess(self, outputs, letterboxes: list[Letterbox]) -> list[Detections]:
        scores, boxes, landmarks = outputs
        dets = postprocess(scores, boxes, landmarks if self.config.landmarks else None, self.post)
        for d, lb in zip(dets, letterboxes, strict=True):
            d.boxes, d.landmarks = lb.to_original(d.boxes, d.landmarks)
        return dets

    def detect(self, images: list[np.ndarray], timings: dict | None = None) -> list[Detections]:
        """Faces per image, boxes xyxy and landmarks in the image's original pixels.

        `timings`, when given, accumulates preprocess_ms / infer_ms / postprocess_ms.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise TypeError("detect() takes a list of images; wrap a single image as [image]")
        images = list(images)
        if not images:
            return []
        t0 = time.perf_counter()
        if getattr(self.runtime, "device_preprocess", False):  # torch on CUDA: letterbox + NMS on the GPU
            for i, im in enumerate(images):
                if isinstance(im, np.ndarray):
                    _check_image(i, im)
            dets = self.runtime.detect_frames(images, self.input_size, self.config.pad_multiple, self.post,
                                              self.config.landmarks)
            if timings is not None:
                timings["infer_ms"] = timings.get("infer_ms", 0.0) + 1e3 * (time.perf_counter() - t0)
            return dets
        groups = self.preprocess(images)
        t1 = time.perf_counter()
        results: list[Detections | None] = [None] * len(images)
        t_inf = t_post = 0.0
        for batch, idx, lbs in groups:
            a = time.perf_counter()
            outs = self.runtime.infer(batch)
            b = time.perf_counter()
            for i, d in zip(idx, self.postprocess(outs, lbs), strict=True):
                results[i] = d
            t_inf += b - a
            t_post += time.perf_counter() - b
        if timings is not None:
            timings["preprocess_ms"] = timings.get("preprocess_ms", 0.0) + 1e3 * (t1 - t0)
            timings["infer_ms"] = timings.get("infer_ms", 0.0) + 1e3 * t_inf
            timings["postprocess_ms"] = timings.get("postprocess_ms", 0.0) + 1e3 * t_post
        return results  # type: ignore[return-value]

    __call__ = detect

    def close(self) -> None:
        self.runtime.close()


# -- loading -------------------------------------------------------------------------------------------


def pick_runtime(runtime: str = "auto", device: str | None = None, *, precision: str = "fp32",
                 cuda: bool | None = None, trt: bool | None = None, ort_providers: list[str] | None = None,
                 openvino: bool | None = None) -> str:
    """auto: the fastest runtime that really runs on this host -- TensorRT (importable + CUDA) > torch on
    CUDA > ONNX Runtime's CUDA provider > ONNX Runtime on CPU > torch on CPU; on the CPU an INT8 variant
    goes to OpenVINO when it is installed (ONNX Runtime's INT8 kernels are slower than its float ones
    here). ONNX Runtime without its CUDA provider is never picked on a GPU host: it would silently run on
    the CPU. (``cuda``/``trt``/``ort_providers``/``openvino`` override the probes of this host, for tests.)"""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime != "auto":
        return runtime
    wants_cpu = device is not None and str(device) == "cpu"
    cuda = cuda_available() if cuda is None else cuda
    if not wants_cpu and cuda:
        if tensorrt_importable() if trt is None else trt:
            return "tensorrt"
        return "torch"  # torch CUDA: fp16, channels_last, batched NMS on the GPU
    if ort_providers is None:
        try:
            import onnxruntime

            ort_providers = list(onnxruntime.get_available_providers())
        except ImportError:
            ort_providers = []
    if precision == "int8" and (openvino_importable() if openvino is None else openvino):
        return "openvino"
    return "onnx" if ort_providers else "torch"


def model_precision(weights: str | os.PathLike) -> str:
    """fp32 | fp16 | int8: what a model file holds (compressed variants say so in their metadata)."""
    from models.facedet.export import read_model_meta

    return meta_precision(read_model_meta(weights, with_sha=False))


def meta_precision(meta: WeightsMeta) -> str:
    return str((meta.extra or {}).get("precision", "fp32"))


def cpu_runtime(weights: str | os.PathLike) -> str:
    """The runtime `auto` serves this model file with on a CPU host (evaluations and gates use it, so they
    measure what a worker serves): openvino for an INT8 variant when installed, else onnx."""
    return pick_runtime("auto", "cpu", precision=model_precision(weights))


def gpu_present() -> str | None:
    """What shows this host has an NVIDIA GPU (a device node or nvidia-smi), whatever torch can see."""
    if any(Path("/dev").glob("nvidia[0-9]*")):
        return "/dev/nvidia*"
    import shutil

    return "nvidia-smi" if shutil.which("nvidia-smi") else None


def onnx_for_weights(weights: Path, meta: WeightsMeta, cache_dir: Path | None = None) -> Path:
    """An ONNX export of exactly these weights: the sibling .onnx when its weights_sha256 matches,
    else a cached export (built once under a file lock)."""
    from filelock import FileLock

    from models.facedet.export import export_onnx, read_onnx_meta

    sibling = weights.with_suffix(".onnx")
    if sibling.is_file():
        try:
            if read_onnx_meta(sibling)[0].sha256 == meta.sha256:
                return sibling
            log.warning("%s was exported from other weights (sha mismatch); exporting afresh", sibling)
        except ModelFileError as exc:
            log.warning("ignoring %s: %s", sibling, exc)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    check_private(cache)
    target = cache / f"{meta.name}-{meta.sha256[:16]}.onnx"
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            check_private(target)
            try:  # trust a cached export only when it says it came from exactly these weights
                if read_onnx_meta(target)[0].sha256 == meta.sha256:
                    return target
            except ModelFileError:
                pass
            log.warning("cached %s is not an export of %s; exporting afresh", target, weights)
        log.info("exporting %s to %s", weights, target)
        export_onnx(weights, target)
    return target


def _weights_for_onnx(onnx_path: Path, meta: WeightsMeta) -> Path:
    sibling = onnx_path.with_suffix(".safetensors")
    if sibling.is_file() and file_sha256(sibling) == meta.sha256:
        return sibling
    raise ModelFileError(
        f"the torch runtime needs .safetensors weights; {onnx_path} is ONNX and no matching "
        f"{sibling.name} lies beside it. Pass the .safetensors file, or use runtime='onnx'."
    )


def detector_from_model(model, meta: WeightsMeta | None = None, threshold: float = 0.02, nms_iou: float = 0.4,
                        input_size: int | None = None, max_detections: int = 750, device=None) -> Detector:
    """A Detector around an in-memory FaceDetNet (training's dev evaluation, threshold calibration): the
    serving path -- same letterbox, batching and NMS -- on the torch runtime."""
    from models.runtimes.torch_rt import TorchRuntime

    if device is None:
        device = next(model.parameters()).device
    meta = meta or WeightsMeta(config=model.cfg, name=model.cfg.name)
    rt = TorchRuntime(model, device=str(device), fp16=False, channels_last=False)
    size = int(meta.config.input_size if input_size is None else input_size)
    post = PostprocessConfig(score_threshold=float(threshold), nms_iou=float(nms_iou),
                             max_detections=int(max_detections))
    info = ModelInfo(name=meta.name, version=meta.version, sha256=meta.sha256, runtime=rt.name,
                     precision=rt.precision, input_size=size or None)
    return Detector(runtime=rt, meta=meta, post=post, input_size=size, info=info)


def load_detector(
    runtime: str = "auto",
    weights: str | os.PathLike | None = None,
    threshold: float | None = None,
    nms_iou: float = 0.4,
    max_detections: int = 750,
    device: str | None = None,
    input_size: int | None = None,
    *,
    threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **runtime_options,
) -> Detector:
    """Load weights (.safetensors or .onnx; default the shipped fsdet-m) on a runtime.

    threshold: None -> the weights' shipped threshold, else 0.5. device: None/"auto", "cpu", "cuda[:N]".
    input_size: letterbox long side (None: the weights' 640; 0: every image at its own size, padded only).
    threads: CPU intra-op threads (ONNX Runtime: per session; torch: torch.set_num_threads, process-wide).
    runtime_options go to the runtime's constructor
    (torch: fp16, channels_last, cuda_graphs; tensorrt: precision, max_batch, opt_batch, ...).
    Raises MissingWeightsError (with how to get weights) when there are none, ModelFileError for a bad file,
    RuntimeUnavailable when the runtime cannot run here.
    """
    if device == "auto":
        device = None
    wpath = require_weights(weights)
    from models.facedet.export import read_model_meta

    is_onnx = wpath.suffix.lower() == ".onnx"
    meta = read_model_meta(wpath)
    kind = pick_runtime(runtime, device, precision=meta_precision(meta))
    cfg = meta.config
    size = int(cfg.input_size if input_size is None else input_size)
    if size < 0 or size % cfg.pad_multiple:
        raise ValueError(f"input_size must be a positive multiple of {cfg.pad_multiple}, got {size}")

    rt: Runtime
    if kind == "torch":
        from models.facedet.weights import load_model
        from models.runtimes.torch_rt import TorchRuntime

        model, meta = load_model(_weights_for_onnx(wpath, meta) if is_onnx else wpath)
        rt = TorchRuntime(model, device=device, threads=threads, **runtime_options)
    elif kind == "onnx":
        from models.runtimes.onnx_rt import OnnxRuntime

        onnx_path = wpath if is_onnx else onnx_for_weights(wpath, meta, cache_dir)
        rt = OnnxRuntime(onnx_path, device=device, threads=threads, **runtime_options)
    elif kind == "openvino":
        from models.runtimes.openvino_rt import OpenVinoRuntime

        onnx_path = wpath if is_onnx else onnx_for_weights(wpath, meta, cache_dir)
        rt = OpenVinoRuntime(onnx_path, device=device, threads=threads, **runtime_options)
    else:
        from models.runtimes.tensorrt_rt import TensorRTRuntime

        onnx_path = wpath if is_onnx else onnx_for_weights(wpath, meta, cache_dir)
        rt = TensorRTRuntime(onnx_path, device=device, cache_dir=cache_dir or default_cache_dir(),
                             max_side=size or 1920, **runtime_options)

    if threshold is None:
        threshold = meta.threshold if meta.threshold is not None else DEFAULT_THRESHOLD
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    post = PostprocessConfig(score_threshold=float(threshold), nms_iou=float(nms_iou),
                             max_detections=int(max_detections))
    info = ModelInfo(name=meta.name, version=meta.version, sha256=meta.sha256, runtime=rt.name,
                     precision=rt.precision, input_size=size or None)
    return Detector(runtime=rt, meta=meta, post=post, input_size=size, info=info)
