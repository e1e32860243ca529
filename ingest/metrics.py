"""Prometheus metrics of the ingest role (one registry: core.metrics.REGISTRY).

Per camera: decoded and published frames (counters) and their rates over the last status window
(gauges), drops by reason (the shared ``facestream_frames_dropped_total``), reconnects, stalls, and the
current state (``facestream_ingest_camera_state{camera,state}`` is 1 for the current state).
"""

from __future__ import annotations

from core import metrics
from core.schema import CameraState

FRAMES_DECODED = metrics.counter("ingest_frames_decoded_total", "Frames decoded", ["camera"])
FRAMES_SAMPLED = metrics.counter("ingest_frames_sampled_total", "Frames kept by the fps sampler", ["camera"])
FRAMES_PUBLISHED = metrics.counter("ingest_frames_published_total", "Frames published to Redis", ["camera"])
FRAMES_DROPPED = metrics.FRAMES_DROPPED  # labels: camera, reason
RECONNECTS = metrics.counter("ingest_reconnects_total", "Reconnect attempts after a failure", ["camera"])
STALLS = metrics.counter("ingest_stalls_total", "Online streams that stalled or ended", ["camera"])
ERRORS = metrics.counter("ingest_errors_total", "Source failures by reason", ["camera", "reason"])
DECODED_FPS = metrics.gauge("ingest_decoded_fps", "Decoded frames per second (last window)", ["camera"])
PUBLISHED_FPS = metrics.gauge("ingest_published_fps", "Published frames per second (last window)", ["camera"])
LAST_FRAME_AGE = metrics.gauge("ingest_last_frame_age_seconds", "Time since the last decoded frame", ["camera"])
CAMERA_STATE = metrics.gauge("ingest_camera_state", "1 for the camera's current state", ["camera", "state"])
CAMERAS_OWNED = metrics.gauge("ingest_cameras_owned", "Cameras this ingest process holds a lease on")
PUBLISH_SECONDS = metrics.histogram("ingest_publish_seconds", "Redis round trip of one publish batch")
ENCODE_SECONDS = metrics.histogram("ingest_encode_seconds", "Resize + encode time of one frame")


def set_state(camera: str, state: CameraState) -> None:
    for s in CameraState:
        CAMERA_STATE.labels(camera=camera, state=s.value).set(1 if s is state else 0)


PER_CAMERA = (FRAMES_DECODED, FRAMES_SAMPLED, FRAMES_PUBLISHED, FRAMES_DROPPED, RECONNECTS, STALLS, ERRORS,
              DECODED_FPS, PUBLISHED_FPS, LAST_FRAME_AGE, CAMERA_STATE)


def forget_camera(camera: str) -> None:
    """Remove all of a camera's series, every family and label combination (camera removed or handed
    to another process)."""
    for m in PER_CAMERA:
        metrics.remove_series(m, "camera", camera)
