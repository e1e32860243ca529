"""Worker metrics. The HTTP endpoints (``/healthz``, ``/metrics``) are ``core.http_health``'s: the worker's
``/healthz`` is 200 when the model is loaded and Redis answers a PING within a second, else 503."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from core import metrics

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

BATCH_SIZE = metrics.histogram("worker_batch_size", "Frames per inference batch", buckets=BATCH_BUCKETS)
INFER_SECONDS = metrics.histogram("worker_inference_seconds", "Detector time per batch")
EVENTS = metrics.counter("worker_events_total", "Detection events published", ["camera"])
EVENTS_RATE = metrics.gauge("worker_events_per_second", "Events published per second (10 s window)")
FACES = metrics.counter("worker_faces_total", "Faces detected", ["camera"])
LATENCY = metrics.histogram("worker_event_latency_seconds", "Capture to event published", ["camera"])
LAG = metrics.gauge("worker_group_lag", "Frames in the stream not yet delivered to the group")
PENDING = metrics.gauge("worker_group_pending", "Frames delivered to the group and not yet acked")
DUPLICATES = metrics.counter(
    "worker_duplicates_total", "Frames whose event was already published (redelivery or duplicate entry)",
    ["kind"],
)
MODEL_LOADED = metrics.gauge("worker_model_loaded", "1 when the detector is loaded")
CPU_DESPITE_GPU = metrics.gauge(
    "worker_cpu_despite_gpu", "1 when this worker infers on the CPU although the host has an NVIDIA GPU"
)
REDIS_UP = metrics.gauge("worker_redis_up", "1 when the last Redis call succeeded")


class RateWindow:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = 10.0):
        self.window_s = window_s
        self._q: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, n: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._q.append((now, n))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._q and self._q[0][0] < now - self.window_s:
            self._q.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            return sum(n for _, n in self._q) / self.window_s
