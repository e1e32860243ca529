"""Process helpers for end-to-end tests: `facestream` subcommands, a private redis-server, the
GStreamer RTSP server (tests/services/rtsp_server.py). Every process logs to a file that the test
prints on failure."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_gst_rtsp() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0


class Proc:
    """A subprocess with its output in ``log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path):
        self.name = name
        self.log = Path(logdir) / f"{name}.log"
        self._fh = open(self.log, "wb")  # noqa: SIM115 (closed in wait/close)
        self.proc = subprocess.Popen(argv, env=env, stdout=self._fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._fh.close()
        return rc

    def close(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def facestream(name: str, args: list[str], env: dict[str, str], logdir: Path) -> Proc:
    return Proc(name, [sys.executable, "-m", "facestream.cli", *args], env, logdir)


def facestream_env(prefix: str, redis_url: str = "redis://127.0.0.1:6379/0", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    env.update({
        "FACESTREAM_REDIS__URL": redis_url,
        "FACESTREAM_REDIS__PREFIX": prefix,
        "FACESTREAM_REDIS__CONNECT_TIMEOUT_S": "30",
        "FACESTREAM_REDIS__RETRY_ATTEMPTS": "2",
        "FACESTREAM_REDIS__SOCKET_TIMEOUT_S": "3",
        "FACESTREAM_LOG__LEVEL": "INFO",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


class RedisServer:
    """A private redis-server (AOF on, so a restart keeps the registry, streams and groups)."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.port = port or free_port()
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        assert exe, "redis-server not installed"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down_s: float = 0.5) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


class RtspServer:
    """tests/services/rtsp_server.py serving ``clip`` at rtsp://127.0.0.1:PORT/cam (looped, shared)."""

    def __init__(self, clip: Path, logdir: Path, path: str = "/cam"):
        self.port = free_port()
        self.path = path
        argv = [SYSTEM_PYTHON, str(ROOT / "tests/services/rtsp_server.py"), "--clip", str(clip), "--port",
                str(self.port), "--path", path, "--shared"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(Path(logdir) / f"rtsp-{self.port}.log", "wb"),  # noqa: SIM115
                                     start_new_session=True, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY"):
            self.close()
            raise RuntimeError(f"RTSP server did not start: {line!r}")

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
