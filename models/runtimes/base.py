"""The runtime interface every backend implements."""

from __future__ import annotations

import importlib.util

import numpy as np

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]


class RuntimeUnavailable(RuntimeError):
    """The requested runtime cannot run here (library or device missing)."""


class Runtime:
    """One loaded model on one device.

    infer(batch float32 (N, 3, H, W) BGR 0..255, C-contiguous) ->
        scores (N, A) float32, boxes (N, A, 4) float32 xyxy input px, landmarks (N, A, 10) float32.
    """

    name: str = "base"  # torch | onnxruntime | tensorrt (ModelInfo.runtime)
    precision: str = "fp32"  # fp32 | fp16 | int8
    device: str = "cpu"
    max_batch: int | None = None  # largest batch infer() accepts (None: any)

    def infer(self, batch: np.ndarray) -> Outputs:  # pragma: no cover - interface
        raise NotImplementedError

    def warmup(self, shape: tuple[int, int, int, int]) -> None:
        self.infer(np.zeros(shape, np.float32))

    def close(self) -> None:
        """Release device memory / sessions (optional)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r}, precision={self.precision!r})"


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # broken CUDA driver installs raise here
        return False


def tensorrt_importable() -> bool:
    return importlib.util.find_spec("tensorrt") is not None
