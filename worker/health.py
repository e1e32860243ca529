"""Worker metrics and the HTTP endpoints ``/healthz`` and ``/metrics`` (port 0: no server).

``/healthz`` answers 200 ``{"status": "ok", ...}`` when the model is loaded and Redis answers a
PING within a second, else 503 with the failing check named. ``/metrics`` is the Prometheus text
of ``core.metrics.REGISTRY`` (every role's metrics in this process).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


class HealthServer:
    """ThreadingHTTPServer in a daemon thread. ``checks`` returns {name: (ok, detail)}."""

    def __init__(self, host: str, port: int, checks: Callable[[], dict[str, tuple[bool, Any]]]):
        self.checks = checks
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    results = outer.checks()
                    ok = all(v[0] for v in results.values())
                    body = json.dumps(
                        {"status": "ok" if ok else "fail", "checks": {k: {"ok": v[0], "detail": v[1]}
                                                                     for k, v in results.items()}}
                    ).encode()
                    self._send(200 if ok else 503, body, "application/json")
                elif path == "/metrics":
                    body, ctype = metrics.render()
                    self._send(200, body, ctype)
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                log.debug("http " + format, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health-http", daemon=True)

    def start(self) -> HealthServer:
        self.thread.start()
        log.info("health endpoint listening", extra={"port": self.port})
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
