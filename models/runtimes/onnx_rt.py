"""ONNX Runtime: CPU (configurable intra-op threads) or the CUDA execution provider when installed.

On the CPU every frame of a batch runs on its own, on a session whose symbolic dimensions are pinned to
that frame's shape (`add_free_dimension_override_by_name`): ONNX Runtime then folds the in-graph decode's
shape arithmetic into constants and drops layout reorders (276 -> 143 nodes after optimisation). Same
outputs; per frame, batch-1 runs on a pinned session beat a dynamic batch of 8 by 1.4x (2 threads) to
1.6x (1 thread), and a pinned batch of 8 too (CPU batching only adds cache misses); see
docs/benchmarks.md. A worker sees few frame shapes (its cameras' detect sizes), so one pinned session per
shape, ~20-30 MB each, least recently used out first, built once PIN_AFTER frames of that shape have run
(a one-off size, like most images of an evaluation set, stays on the dynamic session rather than paying a
~60 ms build). The CUDA provider runs the batch whole, as exported.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from .base import Outputs, Runtime, RuntimeUnavailable
from .shape_pins import ShapePins

OUTPUT_NAMES = ["scores", "boxes", "landmarks"]
log = logging.getLogger(__name__)


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
                 inter_threads: int = 1, profile: bool = False, pin_shapes: bool = True):
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
        # CPU: a pinned session per frame shape; profiling diagnoses the one session it was asked of
        pin = self.device == "cpu" and pin_shapes and not profile
        self._symbolic = bool(pinned_dims(self.session, (1, 3, 1, 1)))  # a fixed-shape graph has nothing to pin
        self._by_shape: ShapePins | None = ShapePins(self._pin) if pin else None  # ORT sessions run concurrently
        # compressed variants (training/compress) say what they hold: fp32 | fp16 | int8
        self.precision = self.session.get_modelmeta().custom_metadata_map.get("precision", "fp32")

    def session_for(self, shape: tuple[int, ...], frames: int = 1):
        """The session pinned to this input shape (built once `frames` of it reach PIN_AFTER), else the
        dynamic one."""
        if self._by_shape is None or not self._symbolic:
            return self.session
        return self._by_shape.pinned(shape, frames, self.session)

    def _pin(self, shape: tuple[int, ...]):
        import onnxruntime as ort

        t0 = time.perf_counter()
        try:
            sess = ort.InferenceSession(self._path, providers=self._providers, sess_options=session_options(
                self.threads, self._inter, dims=pinned_dims(self.session, shape)))
            log.info("onnx session pinned to input %s in %.0f ms", "x".join(map(str, shape)),
                     (time.perf_counter() - t0) * 1e3)
            return sess
        except Exception as e:  # e.g. the file changed under us: serve on, unpinned, for this shape
            log.warning("onnx: no pinned session for input %s (%s); the dynamic one serves it",
                        "x".join(map(str, shape)), str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
            return self.session

    def infer(self, batch: np.ndarray) -> Outputs:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if self._by_shape is None or x.ndim != 4 or len(x) == 0:  # the CUDA provider, or input it will refuse
            s, b, k = self.session.run(OUTPUT_NAMES, {self.input_name: x})
            return s, b, k
        sess = self.session_for((1, *x.shape[1:]), len(x))
        outs = [sess.run(OUTPUT_NAMES, {self.input_name: x[i : i + 1]}) for i in range(len(x))]
        s, b, k = (np.concatenate(parts) for parts in zip(*outs, strict=True))
        return s, b, k

    def end_profiling(self) -> str:
        return self.session.end_profiling()


def _cuda_ok() -> bool:
    from .base import cuda_available

    return cuda_available()
