"""FSDet, our face detector: config, network, letterbox, decode + NMS."""

from .config import DEFAULT_VARIANT, STRIDES, VARIANTS, DetectorConfig, get_config
from .network import FaceDetNet, build_model
from .postprocess import Detections, PostprocessConfig, nms, postprocess, postprocess_torch
from .preprocess import Letterbox, letterbox, make_batch

__all__ = [
    "DEFAULT_VARIANT", "STRIDES", "VARIANTS", "DetectorConfig", "Detections", "FaceDetNet", "Letterbox",
    "PostprocessConfig", "build_model", "get_config", "letterbox", "make_batch", "nms", "postprocess",
    "postprocess_torch",
]
