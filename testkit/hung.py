"""A TCP endpoint that accepts connections and never answers (a camera that hangs)."""

from __future__ import annotations

import contextlib
import socket
import threading

from testkit import free_port


class HungEndpoint:
    """Listens on a loopback port, accepts, reads and discards, never writes a byte."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, path: str = "/cam"):
        self.host = host
        self.port = port or free_port(host)
        self.path = path
        self.connections = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, self.port))
        self._sock.listen(16)
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hung-endpoint", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}{self.path}"

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.setblocking(False)
            self._conns.append(conn)
            for c in list(self._conns):  # drain so the client never blocks on send
                with contextlib.suppress(BlockingIOError, OSError):
                    c.recv(65536)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for c in self._conns:
            c.close()
        self._sock.close()

    def __enter__(self) -> HungEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
