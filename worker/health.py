"""Worker metrics and the HTTP endpoints ``/healthz`` and ``/metrics`` (port 0: no server).

``/healthz`` answers 200 ``{"status": "ok", ...}`` when the model is loaded and Redis answers a
PING within a second, else 503 with the failing check named. ``/metrics`` is the Prometheus text
of ``core.metrics.REGISTRY`` (every role's metrics in this process).
"""

from __future__ import annotations

import errno
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


PORT_TRIES = 16  # N workers on one host take 9108, 9109, ... with no configuration


class HttpBindError(RuntimeError):
    """No port could be bound; the message names the address and what to set."""


def bind_http(host: str, port: int, handler) -> ThreadingHTTPServer:
    """Bind `port`, or the next free one of PORT_TRIES when it is taken (port 0: any free port)."""
    ports = [0] if port == 0 else range(port, min(port + PORT_TRIES, 65_536))
    for p in ports:
        try:
            return ThreadingHTTPServer((host, p), handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise HttpBindError(f"cannot listen on {host}:{p}: {exc.strerror or exc}") from None
    raise HttpBindError(f"cannot listen on {host}: ports {port}-{ports[-1]} are all in use; "
                        "set FACESTREAM_WORKER__HTTP_PORT (0: any free port)")


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

        self.httpd = bind_http(host, port, Handler)
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
