"""ONNX Runtime: CPU (configurable intra-op threads) or the CUDA execution provider when installed."""

from __future__ import annotations

import os

import numpy as np

from .base import Outputs, Runtime, RuntimeUnavailable

OUTPUT_NAMES = ["scores", "boxes", "landmarks"]


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
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = int(inter_threads)
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
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
        # compressed variants (training/compress) say what they hold: fp32 | fp16 | int8
        self.precision = self.session.get_modelmeta().custom_metadata_map.get("precision", "fp32")

    def infer(self, batch: np.ndarray) -> Outputs:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        s, b, k = self.session.run(OUTPUT_NAMES, {self.input_name: x})
        return s, b, k

    def end_profiling(self) -> str:
        return self.session.end_profiling()


def _cuda_ok() -> bool:
    from .base import cuda_available

    return cuda_available()
