"""One camera's reader thread and its watchdog state machine.

States (core.schema.CameraState) and transitions::

    connecting --first frame--> online --read timeout / stream ended / error--> stalled --> backoff
        |                                                                                    |
        +--open failed: timeout / connection---------------------------------------------> backoff
        +--open failed: auth / not_found / codec / invalid--> error (waits the max delay)
    backoff / error --delay elapsed--> connecting     any state --stop()--> stopped

- Open and read timeouts are PyAV's ``timeout=(open_s, read_s)``: a hung server or a silent stream
  raises within the read timeout; a stream that ENDS (PyAV's decode loop just stops when an RTSP
  server dies) is a failure too (reason ``ended``).
- Backoff is exponential with full jitter (``backoff_min_s * 2**n``, capped at ``backoff_max_s``, times
  a random factor in [0.5, 1]), reset once the camera has been online for ``stable_s``. Failures that a
  retry will not fix soon (auth, not_found, codec) wait the maximum delay.
- A file URL registered as a camera plays at real time (paced by PTS) and loops, like a live camera.
- Decoding runs in PyAV with the GIL released, so one thread per camera is enough; one bad camera
  never blocks another (each has its own thread, container and timeouts).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from core.logging import redact_url
from core.schema import Camera, CameraState, CameraStatus, ErrorReason, Source
from core.settings import IngestSettings
from ingest import metrics as m
from ingest.encoder import Encoder
from ingest.publisher import CameraStats, OutFrame
from ingest.sampler import PtsSampler
from ingest.sources import IngestError, SourceOptions, VideoSource, describe_error, is_live_url

log = logging.getLogger(__name__)

PERSISTENT = {ErrorReason.auth, ErrorReason.not_found, ErrorReason.codec, ErrorReason.invalid}


def backoff_delay(attempt: int, min_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d] where d = min(max_s, min_s * 2**attempt)."""
    d = min(max_s, min_s * (2 ** min(attempt, 30)))
    return d * (0.5 + 0.5 * (rng or random).random())


_DOWN = (CameraState.connecting, CameraState.backoff, CameraState.stalled, CameraState.error)


class CameraReader(threading.Thread):
    """Reads one camera until ``stop()``; hands sampled, encoded frames to ``sink``.

    ``on_status(status)`` is called on every state transition (the supervisor writes it to Redis);
    ``status()`` returns a fresh snapshot at any time.
    """

    def __init__(self, camera: Camera, settings: IngestSettings, sink: Callable[[OutFrame], None],
                 on_status: Callable[[CameraStatus], None] | None = None, owner: str = "",
                 source_options: SourceOptions | None = None, lease_key: str | None = None):
        super().__init__(name=f"reader-{camera.id}", daemon=True)
        self.camera = camera
        self.settings = settings  # IngestSettings
        self.sink = sink
        self.on_status = on_status
        self.owner = owner
        self.lease = (lease_key, owner) if lease_key else None  # fences every frame it publishes
        self.stats = CameraStats(camera.id)
        self.encoder = Encoder(camera.detect_size, camera.codec, camera.jpeg_quality)
        self.sampler = PtsSampler(camera.fps)
        self.live = is_live_url(camera.url)
        self.source_options = source_options or SourceOptions(
            transport=camera.transport.value,
            open_timeout_s=settings.open_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            thread_type=settings.decode_thread_type,
        )
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.state = CameraState.connecting
        self.reason = ErrorReason.none
        self.detail = ""
        self.since_ns = time.time_ns()
        self.attempt = 0
        self.online_since: float | None = None
        self.next_retry_ns = 0
        self.rng = random.Random()
        self.notify_status = True  # False: a removed camera must not recreate its status hash

    # -- control ------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._halt.set()

    @property
    def stopping(self) -> bool:
        return self._halt.is_set()

    # -- status -------------------------------------------------------------------------------------
    def status(self) -> CameraStatus:
        self.stats.update_rates()
        with self._lock:
            running = self.state is CameraState.online  # a stopped or failing camera decodes nothing now
            return CameraStatus(
                camera_id=self.camera.id, state=self.state, reason=self.reason, detail=self.detail,
                since_ns=self.since_ns, last_frame_ns=self.stats.last_frame_ns,
                fps=round(self.stats.fps, 2) if running else 0.0,
                published_fps=round(self.stats.published_fps, 2) if running else 0.0,
                reconnects=self.stats.reconnects,
                drops=self.stats.dropped, owner=self.owner,
            )

    def _transition(self, state: CameraState, reason: ErrorReason = ErrorReason.none, detail: str = "") -> None:
        with self._lock:
            changed = (state, reason) != (self.state, self.reason)
            # "since" is when the camera went down, not the last retry: connecting/backoff/stalled/error
            # cycles keep it, so a camera failing for 7 minutes shows 7 minutes
            still_down = state in _DOWN and self.state in _DOWN and self.since_ns
            self.state, self.reason, self.detail = state, reason, detail
            if changed and not still_down:
                self.since_ns = time.time_ns()
        m.set_state(self.camera.id, state)
        if changed:
            lvl = logging.WARNING if state in (CameraState.error, CameraState.stalled) else logging.INFO
            log.log(lvl, "camera %s", state.value, extra={"camera": self.camera.id, "state": state.value,
                                                          "reason": reason.value, "detail": detail})
            if self.on_status is not None and self.notify_status:
                try:
                    self.on_status(self.status())
                except Exception as exc:  # Redis down: status is best effort, frames go on
                    log.debug("status write failed: %s", exc)

    # -- main loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        s = self.settings
        try:
            while not self._halt.is_set():
                self._transition(CameraState.connecting, self.reason, self.detail)
                reason, detail = self._read_once()
                if self._halt.is_set():
                    break
                was_online = self.online_since is not None
                if was_online and time.monotonic() - self.online_since >= s.stable_s:
                    self.attempt = 0
                self.online_since = None
                m.ERRORS.labels(camera=self.camera.id, reason=reason.value).inc()
                if reason in PERSISTENT and not was_online:
                    # a retry will not fix it soon: wait the longest delay, in state 'error'
                    delay = backoff_delay(30, s.backoff_min_s, s.backoff_max_s, self.rng)
                    state = CameraState.error
                else:
                    if was_online:
                        self.stats.stalls += 1
                        m.STALLS.labels(camera=self.camera.id).inc()
                        self._transition(CameraState.stalled, reason, detail)
                    delay = backoff_delay(self.attempt, s.backoff_min_s, s.backoff_max_s, self.rng)
                    state = CameraState.backoff
                self.attempt += 1
                self.next_retry_ns = time.time_ns() + int(delay * 1e9)
                self._transition(state, reason, f"{detail} (retry in {delay:.1f}s)")
                if self._halt.wait(delay):
                    break
                self.stats.reconnects += 1
                m.RECONNECTS.labels(camera=self.camera.id).inc()
        except Exception as exc:  # a bug: report it, never die silently
            log.exception("camera reader crashed", extra={"camera": self.camera.id})
            self._transition(CameraState.error, ErrorReason.invalid, describe_error(exc))
            return
        self._transition(CameraState.stopped, ErrorReason.none, "")

    def _read_once(self) -> tuple[ErrorReason, str]:
        """Open, read until failure or stop. Returns the failure (reason, redacted detail)."""
        cam = self.camera
        try:
            src = VideoSource(cam.url, self.source_options, live=self.live)
            with src:
                self.sampler.reset()
                while True:
                    t_first: float | None = None
                    wall_first = 0.0
                    for df in src.frames():
                        if self._halt.is_set():
                            return ErrorReason.none, ""
                        st = self.stats
                        st.decoded += 1
                        st.last_frame_ns = df.capture_ns
                        m.FRAMES_DECODED.labels(camera=cam.id).inc()
                        if self.online_since is None:
                            self.online_since = time.monotonic()
                            self._transition(CameraState.online)
                        elif self.attempt and time.monotonic() - self.online_since >= self.settings.stable_s:
                            self.attempt = 0
                        if not self.live and df.t is not None:  # a file plays at real time
                            if t_first is None:
                                t_first, wall_first = df.t, time.monotonic()
                            ahead = (df.t - t_first) - (time.monotonic() - wall_first)
                            if ahead > 0 and self._halt.wait(min(ahead, 1.0)):
                                return ErrorReason.none, ""
                        if not self.sampler.accept(df.t):
                            continue
                        st.sampled += 1
                        m.FRAMES_SAMPLED.labels(camera=cam.id).inc()
                        t0 = time.perf_counter()
                        enc = self.encoder.encode(df.frame)
                        m.ENCODE_SECONDS.observe(time.perf_counter() - t0)
                        self.sink(OutFrame(
                            camera_id=cam.id, encoded=enc, width=df.width, height=df.height, pts=df.pts,
                            time_base=str(df.time_base) if df.time_base is not None else None,
                            capture_ns=df.capture_ns, decode_ms=df.decode_ms, source=Source(kind="live"),
                            stats=st, lease=self.lease,
                        ))
                    if self.live:  # frames() raises at the end of a live stream; defensive
                        return ErrorReason.ended, "stream ended"
                    # a file camera loops: reopen from the start
                    src.close()
                    src.open()
                    self.sampler.reset()
        except IngestError as exc:
            return exc.reason, exc.detail or exc.reason.value
        except Exception as exc:
            from ingest.sources import classify_error

            return classify_error(exc), describe_error(exc)

    def __repr__(self) -> str:
        return f"CameraReader({self.camera.id}, {redact_url(self.camera.url)}, {self.state.value})"
