"""The ingest supervisor: claims cameras through Redis leases and runs one reader per camera.

Several ingest processes share a fleet. Each registers itself in ``keys.ingest_members`` (a sorted set
scored by expiry time, refreshed every tick) and claims free cameras up to its fair share,
``ceil(enabled cameras / live members)`` (and ``max_cameras`` when set). A process holding more than its
share (others joined) hands one camera back per tick. A dead process stops renewing: its leases
expire after ``lease_ttl_ms`` and the survivors claim the cameras on their next tick, so a takeover
takes at most ``lease_ttl_ms + lease_renew_ms`` plus the time to open the stream.

The registry is re-read when ``keys.cameras_changed`` announces a change (pub/sub) and every
``resync_s`` as a safety net. A camera whose settings changed gets a new reader; a removed or disabled
one is stopped and its lease released. A lost lease (renewal refused: another process owns it now)
stops the reader at once without touching the new owner's lease.

Shutdown (``stop()``, SIGTERM/SIGINT in ``run()``): readers stop (status ``stopped``), pending frames
are flushed, containers closed, leases released.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

from core import metrics
from core.bus import Lease, RetryDelay, make_owner_token
from core.keys import Keys
from core.schema import Camera, CameraState, CameraStatus
from core.settings import IngestSettings
from ingest import metrics as m
from ingest.publisher import LivePublisher, Publisher
from ingest.reader import CameraReader
from ingest.registry import Registry, write_status

log = logging.getLogger(__name__)


@dataclass
class _Owned:
    camera: Camera
    lease: Lease
    reader: CameraReader
    acquired: float


class Supervisor:
    """Run with ``run()`` (blocks until SIGTERM/SIGINT or ``stop()``), or ``start()`` + ``stop()``."""

    def __init__(self, redis: Any, keys: Keys, settings: IngestSettings, *, owner: str | None = None,
                 max_cameras: int | None = None, metrics_port: int | None = None,
                 metrics_host: str | None = None, resync_s: float | None = None):
        self.r = redis
        self.keys = keys
        self.settings = settings  # IngestSettings
        ingest_id = settings.ingest_id
        self.owner = owner or (f"{ingest_id}:{make_owner_token()}" if ingest_id else make_owner_token())
        self.max_cameras = max_cameras if max_cameras is not None else settings.max_cameras
        self.metrics_port = metrics_port if metrics_port is not None else settings.http_port
        self.metrics_host = metrics_host or settings.http_host
        self.resync_s = resync_s if resync_s is not None else settings.resync_s
        self.registry = Registry(redis, keys)
        self.publisher = Publisher(redis, keys, maxlen=settings.frames_maxlen,
                                   payload_ttl_ms=settings.max_frame_age_ms)
        self.live = LivePublisher(self.publisher, settings.max_frame_age_ms)
        self.owned: dict[str, _Owned] = {}
        self.stopping: list[_Owned] = []  # readers told to stop; lease released once they end
        self.cameras: dict[str, Camera] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._dirty = True
        self._last_sync = 0.0
        self._last_status = 0.0
        self._threads: list[threading.Thread] = []
        self._metrics_server = None
        self.ticks = 0
        self._last_tick = 0.0

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> Supervisor:
        metrics.set_build_info("ingest")
        if self.metrics_port:
            from core.http_health import HealthServer

            self._metrics_server = HealthServer(self.metrics_host, self.metrics_port, self.checks,
                                                setting="FACESTREAM_INGEST__HTTP_PORT").start()
        self.live.start()
        t = threading.Thread(target=self._listen, name="ingest-registry-listener", daemon=True)
        t.start()
        self._threads.append(t)
        t = threading.Thread(target=self._loop, name="ingest-supervisor", daemon=True)
        t.start()
        self._threads.append(t)
        log.info("ingest started", extra={"owner": self.owner})
        return self

    def run(self, install_signals: bool = True) -> None:
        """Start and block until SIGTERM/SIGINT or ``stop()``; then shut down cleanly."""
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()

    def stop(self, timeout: float | None = None) -> None:
        """Stop readers (status 'stopped'), flush frames, release leases. Idempotent."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(5.0)
        self._threads = []
        owned = list(self.owned.values()) + self.stopping
        self.owned, self.stopping = {}, []
        for o in owned:
            o.reader.stop()
        budget = timeout if timeout is not None else self.settings.read_timeout_s + 1.0
        deadline = time.monotonic() + budget
        for o in owned:
            o.reader.join(max(0.0, deadline - time.monotonic()))
        self.live.flush(1.0)
        self.live.stop()
        for o in owned:
            try:
                if o.reader.is_alive():  # stuck in a read: report stopped ourselves
                    st = o.reader.status()
                    st.state = CameraState.stopped
                    write_status(self.r, self.keys, st)
                o.lease.release()
            except Exception as exc:
                log.warning("release failed", extra={"camera": o.camera.id, "error": str(exc)})
            m.forget_camera(o.camera.id)
        with contextlib.suppress(Exception):
            self.r.zrem(self.keys.ingest_members, self.owner)
        m.CAMERAS_OWNED.set(0)
        if self._metrics_server is not None:
            with contextlib.suppress(Exception):
                self._metrics_server.stop()
            self._metrics_server = None
        log.info("ingest stopped", extra={"owner": self.owner})

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- registry notifications ---------------------------------------------------------------------
    def _listen(self) -> None:
        wait = RetryDelay(0.2, 5.0)
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.r.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.keys.cameras_changed)
                self._dirty = True  # we may have missed changes while (re)subscribing
                self._wake.set()
                wait.reset()
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None and msg.get("type") == "message":
                        self._dirty = True
                        self._wake.set()
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("registry subscription lost; retrying", extra={"error": str(exc)})
                self._stop.wait(wait.next())
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    # -- health ---------------------------------------------------------------------------------------
    def checks(self) -> dict:
        """/healthz: Redis answers, the reconcile loop is ticking, and which cameras are online."""
        try:
            redis_ok, redis_detail = bool(self.r.ping()), "ok"
        except Exception as exc:
            redis_ok, redis_detail = False, f"{type(exc).__name__}"
        age = time.monotonic() - self._last_tick if self._last_tick else None
        loop_ok = age is not None and age < max(5.0, 5 * self.settings.lease_renew_ms / 1000)
        states = {}
        for cam_id, o in list(self.owned.items()):
            states[cam_id] = o.reader.state.value
        return {
            "redis": (redis_ok, redis_detail),
            "supervisor": (loop_ok, {"owner": self.owner, "last_tick_s": None if age is None else round(age, 2),
                                     "cameras": states}),
        }

    # -- the reconcile loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        period = self.settings.lease_renew_ms / 1000.0
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.tick()
            except Exception as exc:  # Redis hiccup: readers keep going until their leases lapse
                log.warning("supervisor tick failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            self._wake.wait(max(0.01, period - (time.monotonic() - t0)))
            self._wake.clear()

    def tick(self) -> None:
        """One reconcile step: membership, registry sync, lease renewals, claims, hand-backs, status."""
        self.ticks += 1
        self._last_tick = time.monotonic()
        s = self.settings
        now = time.monotonic()
        mk = self.keys.ingest_members
        now_ms = int(time.time() * 1000)
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(mk, {self.owner: now_ms + s.lease_ttl_ms})
        pipe.zremrangebyscore(mk, "-inf", now_ms)
        pipe.zcard(mk)
        members = max(1, int(pipe.execute()[2]))

        if self._dirty or now - self._last_sync >= self.resync_s:
            self._dirty = False
            self._last_sync = now
            self.cameras = {c.id: c for c in self.registry.list() if c.enabled}

        self._reap_stopping()

        # renew what we hold; stop readers of removed/changed cameras and of lost leases
        for cam_id, o in list(self.owned.items()):
            current = self.cameras.get(cam_id)
            if current is None:
                self._drop(cam_id, reason="removed", removed=cam_id not in self.registry)
                continue
            if not o.lease.renew():
                log.warning("lease lost", extra={"camera": cam_id, "holder": o.lease.holder()})
                self._drop(cam_id, reason="lease lost", release=False)
                continue
            if current.model_dump(exclude={"created_ns"}) != o.camera.model_dump(exclude={"created_ns"}):
                log.info("camera changed; restarting its reader", extra={"camera": cam_id})
                o.reader.notify_status = False
                o.reader.stop()
                self.stopping.append(_Owned(o.camera, Lease(self.r, o.lease.key, o.lease.ttl_ms, "-"),
                                            o.reader, o.acquired))
                o.camera = current
                o.reader = self._new_reader(current)
                o.reader.start()

        # fair share, then claim free cameras (or hand back above the share)
        n = len(self.cameras)
        share = math.ceil(n / members) if n else 0
        if self.max_cameras:
            share = min(share, self.max_cameras)
        if len(self.owned) > share:
            victim = max(self.owned.values(), key=lambda o: o.acquired)  # the newest: least disruption
            log.info("handing a camera back (above fair share)",
                     extra={"camera": victim.camera.id, "share": share, "members": members})
            self._drop(victim.camera.id, reason="rebalance")
        elif len(self.owned) < share:
            self._claim(share - len(self.owned))
        m.CAMERAS_OWNED.set(len(self.owned))

        if now - self._last_status >= s.status_interval_s:
            self._last_status = now
            self.write_statuses()

    def _claim(self, want: int) -> None:
        free = [c for c in self.cameras if c not in self.owned and not self._is_stopping(c)]
        if not free:
            return
        # spread claim attempts: each process tries cameras in its own order
        free.sort(key=lambda c: zlib.crc32(f"{self.owner}:{c}".encode()))
        pipe = self.r.pipeline(transaction=False)
        for c in free:
            pipe.exists(self.keys.camera_lease(c))
        candidates = [c for c, held in zip(free, pipe.execute(), strict=True) if not held]
        for cam_id in candidates:
            if want <= 0:
                break
            lease = Lease(self.r, self.keys.camera_lease(cam_id), self.settings.lease_ttl_ms, self.owner)
            if not lease.acquire():
                continue
            cam = self.cameras[cam_id]
            reader = self._new_reader(cam)
            self.owned[cam_id] = _Owned(cam, lease, reader, time.monotonic())
            reader.start()
            want -= 1
            log.info("camera claimed", extra={"camera": cam_id})

    def _is_stopping(self, cam_id: str) -> bool:
        return any(o.camera.id == cam_id for o in self.stopping)

    def _new_reader(self, cam: Camera) -> CameraReader:
        return CameraReader(cam, self.settings, self.live.submit, on_status=self._on_status, owner=self.owner,
                            lease_key=self.keys.camera_lease(cam.id))

    def _on_status(self, st: CameraStatus) -> None:
        if st.camera_id in self.cameras:
            write_status(self.r, self.keys, st)

    def _drop(self, cam_id: str, reason: str, release: bool = True, removed: bool = False) -> None:
        o = self.owned.pop(cam_id, None)
        if o is None:
            return
        log.info("camera released", extra={"camera": cam_id, "reason": reason})
        if removed:
            o.reader.notify_status = False
        o.reader.stop()
        self.live.discard(cam_id)
        self.publisher.forget(cam_id)
        if not release:  # someone else holds it: never touch their lease
            o.lease = Lease(self.r, o.lease.key, o.lease.ttl_ms, "-")
        self.stopping.append(o)

    def _reap_stopping(self) -> None:
        """Release leases of readers that have finished (keep renewing until then)."""
        keep = []
        for o in self.stopping:
            if o.reader.is_alive():
                if o.lease.owner == self.owner:
                    o.lease.renew()
                keep.append(o)
                continue
            if o.lease.owner == self.owner and o.camera.id not in self.owned:
                o.lease.release()
            if o.camera.id not in self.owned:
                m.forget_camera(o.camera.id)
        self.stopping = keep

    def write_statuses(self) -> None:
        if not self.owned:
            return
        pipe = self.r.pipeline(transaction=False)
        nowns = time.time_ns()
        for cam_id, o in self.owned.items():
            st = o.reader.status()
            if st.last_frame_ns:
                age = (nowns - st.last_frame_ns) / 1e9
                m.LAST_FRAME_AGE.labels(camera=cam_id).set(age)
                # watchdog: PyAV's read timeout should have fired; if not, say so instead of 'online'
                if st.state is CameraState.online and age > 2 * self.settings.read_timeout_s + 1:
                    st.state = CameraState.stalled
                    st.detail = f"no frame for {age:.1f}s (reader blocked)"
            write_status(self.r, self.keys, st, pipe=pipe)
        pipe.execute()

    # -- introspection (tests, CLI) -----------------------------------------------------------------
    def owned_ids(self) -> list[str]:
        return sorted(self.owned)

    def reader(self, cam_id: str) -> CameraReader | None:
        o = self.owned.get(cam_id)
        return o.reader if o else None

