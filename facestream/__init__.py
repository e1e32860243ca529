"""facestream: real-time face detection for camera fleets (RTSP -> Redis -> batched detector workers).

The public Python API (loaded on first use, so `import facestream` stays cheap)::

    import facestream

    settings = facestream.get_settings()                     # FACESTREAM_* environment
    r = facestream.connect(settings.redis)                   # Redis client with retry
    cams = facestream.Registry(r, facestream.Keys(settings.redis.prefix))
    cams.add("door", "rtsp://user:pass@10.0.0.5/stream1", fps=5)
    for event in facestream.subscribe(camera="door"):        # DetectionEvent objects
        print(event.camera_id, len(event.detections))

    det = facestream.load_detector()                         # shipped model, best runtime here
    faces = det.detect([bgr_image])[0]                       # boxes, scores, landmarks
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("facestream")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"

_API = {
    "get_settings": ("core.settings", "get_settings"),
    "Settings": ("core.settings", "Settings"),
    "Keys": ("core.keys", "Keys"),
    "connect": ("core.bus", "connect"),
    "Camera": ("core.schema", "Camera"),
    "DetectionEvent": ("core.schema", "DetectionEvent"),
    "Registry": ("ingest.registry", "Registry"),
    "replay": ("ingest.replay", "replay"),
    "subscribe": ("facestream.events", "subscribe"),
    "load_detector": ("models.detector", "load_detector"),
}


def __getattr__(name: str):
    if name in _API:
        module, attr = _API[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'facestream' has no attribute {name!r}")


__all__ = ["__version__", *_API]
