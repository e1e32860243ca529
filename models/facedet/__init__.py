"""FSDet, our face detector: config, network, letterbox, decode + NMS.

The network (and so torch) loads on first use: a worker on ONNX Runtime or TensorRT needs only the
numpy pre/post-processing and starts without importing torch.
"""

from .config import DEFAULT_VARIANT, STRIDES, VARIANTS, DetectorConfig, get_config
from .postprocess import Detections, PostprocessConfig, nms, postprocess, postprocess_torch
from .preprocess import Letterbox, letterbox

_LAZY = {"FaceDetNet", "build_model"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_VARIANT",
    "STRIDES",
    "VARIANTS",
    "Detections",
    "DetectorConfig",
    "FaceDetNet",
    "Letterbox",
    "PostprocessConfig",
    "build_model",
    "get_config",
    "letterbox",
    "nms",
    "postprocess",
    "postprocess_torch",
]
