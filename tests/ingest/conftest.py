"""Ingest test fixtures: Redis with a private key prefix, short timeouts, a test clip, the GStreamer
RTSP server (tests/services/rtsp_server.py) as a restartable subprocess, a hung TCP endpoint.

The RTSP/hung-endpoint helpers here are thin wrappers over tests/services; they defer to shared
fixtures in tests/conftest.py when those exist (same names).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from core import bus
from core.keys import Keys
from core.settings import IngestSettings, RedisSettings

SERVICES = Path(__file__).resolve().parents[1] / "services"
SYSTEM_PYTHON = "/usr/bin/python3"


def _has_gst_rtsp() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0


HAS_RTSP = _has_gst_rtsp()
needs_rtsp = pytest.mark.skipif(not HAS_RTSP, reason="GStreamer RTSP server (python3-gi, gst-rtsp-server) missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- redis ------------------------------------------------------------------------------------------


@pytest.fixture
def prefix():
    p = f"test-ingest-{uuid.uuid4().hex[:10]}"
    yield p
    r = bus.connect(RedisSettings(prefix=p))
    bus.delete_prefix(r, p)
    r.close()


@pytest.fixture
def r(prefix):
    client = bus.connect(RedisSettings(prefix=prefix))
    yield client
    client.close()


@pytest.fixture
def keys(prefix) -> Keys:
    return Keys(prefix)


def fast_settings(**kw) -> IngestSettings:
    base = dict(lease_ttl_ms=2000, lease_renew_ms=300, open_timeout_s=2.0, read_timeout_s=1.0,
                backoff_min_s=0.1, backoff_max_s=0.5, stable_s=1.0, status_interval_s=0.2, http_port=0,
                resync_s=30.0, frames_maxlen=1000, max_frame_age_ms=5000)
    base.update(kw)
    return IngestSettings(**base)


@pytest.fixture
def isettings() -> IngestSettings:
    return fast_settings()


# -- media ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """4 s of 320x240 H.264 at 25 fps (100 frames, frame index drawn in)."""
    from tests.services.clips import make_clip

    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=100, fps=25, width=320, height=240)


class RtspServer:
    """tests/services/rtsp_server.py in a subprocess: start, stop (SIGTERM), kill (SIGKILL), restart."""

    def __init__(self, clip: Path, path: str = "/cam", user: str | None = None, password: str | None = None,
                 port: int | None = None, shared: bool = True):
        self.clip, self.path, self.user, self.password = Path(clip), path, user, password
        self.port = port or free_port()
        self.shared = shared
        self.proc: subprocess.Popen | None = None

    def url(self, path: str | None = None, user: str | None = None, password: str | None = None) -> str:
        cred = f"{user}:{password}@" if user is not None else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}{path or self.path}"

    def start(self, timeout: float = 15.0) -> RtspServer:
        cmd = [SYSTEM_PYTHON, str(SERVICES / "rtsp_server.py"), "--clip", str(self.clip), "--port", str(self.port),
               "--path", self.path]
        if self.user:
            cmd += ["--user", self.user, "--password", self.password or ""]
        if self.shared:
            cmd.append("--shared")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env)
        result: list[str] = []

        def read():
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                if line.startswith(("READY", "ERROR")):
                    result.append(line.strip())
                    break
            for _ in self.proc.stdout:  # drain CLIENT lines
                pass

        threading.Thread(target=read, daemon=True).start()
        wait_for(lambda: result or self.proc.poll() is not None, timeout, what="RTSP server READY")
        if not result or not result[0].startswith("READY"):
            raise RuntimeError(f"RTSP server failed: {result}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> RtspServer:
        self.stop()
        return self.start()


@pytest.fixture
def rtsp_server(clip):
    """Factory: ``rtsp_server(path="/cam", user=None, password=None)`` -> started RtspServer."""
    if not HAS_RTSP:
        pytest.skip("GStreamer RTSP server (python3-gi, gst-rtsp-server) missing")
    servers: list[RtspServer] = []

    def make(**kw) -> RtspServer:
        s = RtspServer(clip.path, **kw).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def hung_endpoint():
    """A TCP port that accepts connections and never says a word. Yields (host, port)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                conns.append(c)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()
    stop.set()
    t.join(2)
    for c in conns:
        c.close()
    srv.close()


def facestream_exe() -> list[str]:
    exe = shutil.which("facestream", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "facestream.cli"]
