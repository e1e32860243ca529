"""Inference runtimes behind one interface (`Runtime.infer(batch) -> (scores, boxes, landmarks)`).

GPU-only backends import their libraries lazily: importing this package never needs CUDA or TensorRT.
"""

from .base import Runtime, RuntimeUnavailable, cuda_available, tensorrt_importable

__all__ = ["Runtime", "RuntimeUnavailable", "cuda_available", "tensorrt_importable"]
