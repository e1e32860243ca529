"""Start/stop/kill/restart the GStreamer RTSP test server (testkit/rtsp_server.py).

The server runs under Debian's ``/usr/bin/python3`` (``gi``); ``rtsp_available()`` says whether it can.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

from testkit import ManagedProcess, free_port

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
PYAV_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "200000"}

_available: tuple[bool, str] | None = None


def rtsp_available(python: str = SYSTEM_PYTHON) -> tuple[bool, str]:
    """(ok, reason): can ``python`` import gi with Gst and GstRtspServer 1.0?"""
    global _available
    if _available is None:
        if not os.path.exists(python):
            _available = (False, f"{python} not found (apt-get install python3-gi)")
        else:
            code = ("import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0'); "
                    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
                    "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')")
            r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
            _available = (r.returncode == 0, "" if r.returncode == 0 else
                          "GStreamer RTSP server not usable from /usr/bin/python3 (apt-get install python3-gi "
                          "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad,ugly} gstreamer1.0-libav): "
                          + (r.stderr.strip().splitlines() or ["?"])[-1])
    return _available


class RtspServer(ManagedProcess):
    """One RTSP server process serving ``clip`` at ``rtsp://127.0.0.1:<port><path>``.

    ``url`` includes the credentials when ``user`` is set; ``url_without_auth`` / ``url_with(user, pw)``
    build others (e.g. a wrong password). ``stop()`` = SIGTERM, ``kill()`` = SIGKILL, ``restart()`` =
    start again on the same port. ``clients`` counts client connections seen by the server.
    """

    def __init__(self, clip: str | Path, port: int | None = None, path: str = "/cam", *,
                 user: str | None = None, password: str | None = None, loop: bool = True,
                 shared: bool = False, encode: str = "auto", max_frames: int = 0,
                 host: str = "127.0.0.1", python: str = SYSTEM_PYTHON):
        self.clip = str(clip)
        self.host = host
        self.port = port or free_port(host)
        self.path = path if path.startswith("/") else "/" + path
        self.user, self.password = user, password
        self.loop, self.shared, self.encode, self.max_frames = loop, shared, encode, max_frames
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.clients = 0
        self.lines: list[str] = []
        self._ready = threading.Event()

    # -- urls ---------------------------------------------------------------------------------------
    def url_with(self, user: str | None, password: str | None) -> str:
        auth = ""
        if user is not None:
            auth = quote(user, safe="") + (":" + quote(password, safe="") if password is not None else "") + "@"
        return f"rtsp://{auth}{self.host}:{self.port}{self.path}"

    @property
    def url(self) -> str:
        return self.url_with(self.user, self.password)

    @property
    def url_without_auth(self) -> str:
        return self.url_with(None, None)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0, attempts: int = 3) -> RtspServer:
        if self.running:
            return self
        args = [self.python, str(SERVER_SCRIPT), "--clip", self.clip, "--port", str(self.port),
                "--host", self.host, "--path", self.path, "--encode", self.encode]
        if self.user is not None:
            args += ["--user", self.user, "--password", self.password or ""]
        if not self.loop:
            args.append("--no-loop")
        if self.shared:
            args.append("--shared")
        if self.max_frames:
            args += ["--max-frames", str(self.max_frames)]
        last = ""
        for _attempt in range(attempts):  # the port may linger briefly after a kill
            self._ready.clear()
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, bufsize=1)
            threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True).start()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not self._ready.is_set() and self.proc.poll() is None:
                self._ready.wait(0.05)
            if self._ready.is_set():
                return self
            if self.proc.poll() is None:
                self.kill()
                raise RuntimeError(f"RTSP server not ready within {timeout}s")
            self.proc.wait()
            errors = [ln for ln in self.lines if ln.startswith("ERROR")]
            last = (errors[-1] if errors else "") + " " + (self.proc.stderr.read() or "")[-2000:]
            self.proc = None
            if "port busy" not in last:
                break
            time.sleep(0.3)
        raise RuntimeError(f"RTSP server failed to start: {last.strip()}")

    def _read_stdout(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            line = line.strip()
            self.lines.append(line)
            if line.startswith("READY"):
                self._ready.set()
            elif line == "CLIENT":
                self.clients += 1

    def _stopped(self) -> None:
        self._close_pipes()

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing its RTSP sessions."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()

    def restart(self, timeout: float = 60.0) -> RtspServer:
        """Stop (if running) and start again on the same port and path."""
        self.stop()
        return self.start(timeout)

    def _close_pipes(self) -> None:
        for f in (self.proc.stdin, self.proc.stderr):
            with contextlib.suppress(OSError):
                f.close()
        self.proc = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
