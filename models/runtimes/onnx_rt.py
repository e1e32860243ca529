"""ONNX Runtime: CPU (configurable intra-op threads) or the CUDA execution provider when installed.

Our graphs take any batch and size, and decode boxes in the graph from the feature maps' shapes. A session
whose symbolic dimensions are pinned to the input's (`add_free_dimension_override_by_name`) lets ONNX
Runtime fold that shape arithmetic into constants and drop layout reorders (276 -> 143 nodes after
optimisation): the same outputs, ~1.2x faster on CPU (docs/benchmarks.md). A worker sees a few shapes (its
cameras' detect sizes, batch sizes up to max_batch), so one such session is kept per shape, least recently
used first out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict

import numpy as np

from .base import Outputs, Runtime, RuntimeUnavailable

OUTPUT_NAMES = ["scores", "boxes", "landmarks"]
log = logging.getLogger(__name__)
MAX_SHAPE_SESSIONS = 16  # ~60 ms and ~2 MB each to build


def session_options(threads: int | None = None, inter_threads: int = 1, spin: bool = True,
                    dims: dict[str, int] | None = None):
    """The SessionOptions every facestream ONNX session uses; `dims` pins symbolic input dimensions."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = int(inter_threads)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:  # on an oversubscribed machine, spinning worker threads steal the cores they wait for
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for name, value in (dims or {}).items():
        so.add_free_dimension_override_by_name(name, int(value))
    return so


def pinned_dims(session, shape: tuple[int, ...]) -> dict[str, int]:
    """Symbolic dimension name -> the value in `shape`, for the session's first input."""
    dims = session.get_inputs()[0].shape
    return {d: int(v) for d, v in zip(dims, shape, strict=False) if isinstance(d, str) and d}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, device: str | None = None, threads: int | None = None,
                 inter_threads: int = 1, profile: bool = False):
        import onnxruntime as ort

        avail = available_providers()
        want_cuda = device is not None and str(device).startswith("cuda")
        if device in (None, "auto"):
            want_cuda = "CUDAExecutionProvider" in avail and _cuda_ok()
        if want_cuda and "CUDAExecutionProvider" not in avail:
            raise RuntimeUnavailable(
                f"onnx runtime: device {device!r} needs onnxruntime-gpu (CUDAExecutionProvider); "
                f"installed providers: {avail}"
            )
        so = session_options(threads, inter_threads)
        if profile:
            so.enable_profiling = True
        if want_cuda:
            dev_id = int(str(device).split(":")[1]) if device and ":" in str(device) else 0
            providers = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
            self.device = f"cuda:{dev_id}"
        else:
            providers = ["CPUExecutionProvider"]
            self.device = "cpu"
        self.threads = threads
        self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self._path, self._providers, self._inter = str(path), providers, inter_threads
        # profiling diagnoses the one session it was asked of; otherwise one session per input shape
        self._by_shape: OrderedDict[tuple[int, ...], object] | None = None if profile else OrderedDict()
        self._lock = threading.Lock()  # the cache, not the runs: ORT sessions run concurrently
        # compressed variants (training/compress) say what they hold: fp32 | fp16 | int8
        self.precision = self.session.get_modelmeta().custom_metadata_map.get("precision", "fp32")

    def session_for(self, shape: tuple[int, ...]):
        """The session pinned to this input shape (built on first use), or the dynamic one."""
        if self._by_shape is None:
            return self.session
        with self._lock:
            sess = self._by_shape.get(shape)
            if sess is not None:
                self._by_shape.move_to_end(shape)
                return sess
            dims = pinned_dims(self.session, shape)
            if not dims:  # a fixed-shape graph: nothing to pin
                return self.session
            import onnxruntime as ort

            t0 = time.perf_counter()
            sess = ort.InferenceSession(self._path, providers=self._providers,
                                        sess_options=session_options(self.threads, self._inter, dims=dims))
            log.info("onnx session pinned to input %s in %.0f ms", "x".join(map(str, shape)),
                     (time.perf_counter() - t0) * 1e3)
            self._by_shape[shape] = sess
            while len(self._by_shape) > MAX_SHAPE_SESSIONS:
                self._by_shape.popitem(last=False)
            return sess

    def infer(self, batch: np.ndarray) -> Outputs:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        s, b, k = self.session_for(tuple(x.shape)).run(OUTPUT_NAMES, {self.input_name: x})
        return s, b, k

    def end_profiling(self) -> str:
        return self.session.end_profiling()


def _cuda_ok() -> bool:
    from .base import cuda_available

    return cuda_available()
