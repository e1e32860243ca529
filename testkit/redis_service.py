"""Redis for tests: the shared server on 127.0.0.1:6379 when it answers, else a private redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from testkit import ManagedProcess, free_port


def redis_answers(host: str = "127.0.0.1", port: int = 6379, timeout: float = 0.3) -> bool:
    """True when a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisEndpoint:
    host: str
    port: int
    owned: bool  # True: started by the tests (a RedisServer)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


class RedisServer(ManagedProcess):
    # stop(): graceful SIGTERM (no persistence configured, so nothing is saved)
    """A private ``redis-server`` on a free loopback port: start/stop/kill/restart keep the port.

    No persistence (``--save '' --appendonly no``), so a restart comes back empty.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", extra_args: tuple[str, ...] = (),
                 binary: str | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = list(extra_args)
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.dir = Path(tempfile.mkdtemp(prefix="fs-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint(self.host, self.port, owned=True)

    def client(self, **kw) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=5, **kw)

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        args = [self.binary, "--port", str(self.port), "--bind", self.host, "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", str(self.dir), *self.extra_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} (port {self.port} busy?)")
            if redis_answers(self.host, self.port):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def kill(self) -> None:
        """SIGKILL, like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, timeout: float = 10.0) -> RedisServer:
        self.stop()
        return self.start(timeout)

    def config_set(self, name: str, value: str | int) -> None:
        with self.client() as c:
            c.config_set(name, value)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


_SESSION_URL = ["redis://127.0.0.1:6379/0"]


def session_url() -> str:
    """The URL of the test session's Redis (the shared one, or the private one the root conftest started)."""
    return _SESSION_URL[0]


def set_session_url(url: str) -> None:
    _SESSION_URL[0] = url
