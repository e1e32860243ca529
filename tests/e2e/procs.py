"""Process helpers for end-to-end tests: `facestream` subcommands as subprocesses, each logging to a
file that the test prints on failure. (Redis and RTSP servers come from testkit.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from testkit.redis_service import session_url

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


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


def facestream_env(prefix: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    env.update({
        "FACESTREAM_REDIS__URL": redis_url or session_url(),
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
