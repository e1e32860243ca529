"""The HTTP endpoints of every role: ``/healthz`` (JSON, 200 when every check passes, else 503 naming the
failing one) and ``/metrics`` (Prometheus text of ``core.metrics.REGISTRY``). One small threaded server,
bound to loopback unless configured; port 0: no server."""

from __future__ import annotations

import errno
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core import metrics

log = logging.getLogger(__name__)

PORT_TRIES = 16  # N workers on one host take 9108, 9109, ... with no configuration


class HttpBindError(RuntimeError):
    """No port could be bound; the message names the address and what to set."""


def bind_http(host: str, port: int, handler, setting: str = "the role's HTTP_PORT") -> ThreadingHTTPServer:
    """Bind `port`, or the next free one of PORT_TRIES when it is taken (port 0: any free port)."""
    ports = [0] if port == 0 else range(port, min(port + PORT_TRIES, 65_536))
    for p in ports:
        try:
            return ThreadingHTTPServer((host, p), handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise HttpBindError(f"cannot listen on {host}:{p}: {exc.strerror or exc}") from None
    raise HttpBindError(f"cannot listen on {host}: ports {port}-{ports[-1]} are all in use; "
                        f"set {setting} (0: any free port)")


class HealthServer:
    """ThreadingHTTPServer in a daemon thread. ``checks`` returns {name: (ok, detail)}."""

    def __init__(self, host: str, port: int, checks: Callable[[], dict[str, tuple[bool, Any]]],
                 setting: str = "FACESTREAM_WORKER__HTTP_PORT"):
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

        self.httpd = bind_http(host, port, Handler, setting)
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
