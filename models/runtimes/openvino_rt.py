"""OpenVINO on the CPU: the runtime that makes an INT8 variant pay off on x86.

ONNX Runtime's INT8 kernels are slower than its float ones for this network (QLinearConv of the depthwise
layers and the 3-channel stem; docs/benchmarks.md), so on ONNX Runtime an INT8 variant only saves disk.
OpenVINO reads the same QDQ ONNX file and runs its convolutions on oneDNN's int8 kernels (VNNI / AMX where
the CPU has them): the INT8 variant then costs about 0.6x the float model on ONNX Runtime. Float files
run too, but ONNX Runtime is faster for them, so `auto` picks OpenVINO only for INT8 variants.

Shapes as in the ONNX Runtime runtime: a frame shape gets its own statically shaped compiled model once
PIN_AFTER frames of it have run (a compile costs ~0.5 s, a static model runs ~1.7x faster than the
dynamic one), least recently used out first; one-off sizes run on the dynamic model.
Inference precision is pinned to f32: on AMX CPUs OpenVINO would otherwise run every float layer in bf16,
and the in-graph decode's pixel coordinates need f32 (bf16 holds 8 bits of mantissa: +-2 px at 640).
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from .base import Outputs, Runtime, RuntimeUnavailable
from .onnx_rt import OUTPUT_NAMES
from .shape_pins import ShapePins

log = logging.getLogger(__name__)


def openvino_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


class _Compiled:
    """One compiled model and its infer request; a request is not re-entrant, so runs take the lock."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.outputs = [compiled.output(n) for n in OUTPUT_NAMES]
        self.lock = threading.Lock()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        with self.lock:
            res = self.request.infer({0: x})
            return [np.array(res[o], dtype=np.float32, copy=True) for o in self.outputs]


class OpenVinoRuntime(Runtime):
    name = "openvino"

    def __init__(self, path: str | os.PathLike, device: str | None = None, threads: int | None = None,
                 pin_shapes: bool = True):
        if device not in (None, "auto", "cpu"):
            raise RuntimeUnavailable(f"openvino runtime: serves the CPU only, not {device!r}")
        try:
            import openvino as ov
        except ImportError as e:
            raise RuntimeUnavailable(f"openvino runtime: the openvino package is not installed ({e}); "
                                     "pip install 'openvino==2026.4.*', or use runtime 'onnx'") from None
        from models.facedet.export import read_onnx_meta

        _meta, md = read_onnx_meta(path)  # ModelFileError for a missing or unreadable file, before OpenVINO
        self.precision = md.get("precision", "fp32")
        self.device, self.threads = "cpu", threads
        self._core = ov.Core()
        self._config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self._model = self._core.read_model(str(path))
        self.input_name = self._model.inputs[0].get_any_name()
        self._dynamic = _Compiled(self._core.compile_model(self._model, "CPU", self._config))
        self._by_shape: ShapePins | None = ShapePins(self._pin) if pin_shapes else None

    def compiled_for(self, shape: tuple[int, ...], frames: int = 1) -> _Compiled:
        """The model compiled for this input shape (once `frames` of it reach PIN_AFTER), else the dynamic one."""
        return self._dynamic if self._by_shape is None else self._by_shape.pinned(shape, frames, self._dynamic)

    def _pin(self, shape: tuple[int, ...]) -> _Compiled:
        t0 = time.perf_counter()
        model = self._model.clone()
        model.reshape({self.input_name: list(shape)})
        c = _Compiled(self._core.compile_model(model, "CPU", self._config))
        log.info("openvino model compiled for input %s in %.0f ms", "x".join(map(str, shape)),
                 (time.perf_counter() - t0) * 1e3)
        return c

    def infer(self, batch: np.ndarray) -> Outputs:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 4 or len(x) == 0:
            s, b, k = self._dynamic.run(x)
            return s, b, k
        c = self.compiled_for((1, *x.shape[1:]), len(x))
        outs = [c.run(x[i : i + 1]) for i in range(len(x))]
        s, b, k = (np.concatenate(parts) for parts in zip(*outs, strict=True))
        return s, b, k

    def close(self) -> None:
        if self._by_shape is not None:
            self._by_shape.clear()
