"""The worker run loop.

    worker = Worker(settings)          # settings: core.settings.Settings
    worker.run(stop_event)             # until stop_event is set; or run_worker(settings) with signals

One iteration: (every claim interval) reclaim idle entries -> collect a batch (max_batch within
max_wait_ms) -> parse FrameRefs -> drop stale frames (payload expired or older than the budget;
live frames only) -> fetch + decode payloads -> detect -> map to original pixels -> publish events
and ack (one atomic script per frame, pipelined). Poison frames (unparseable ref, undecodable
payload, a frame the detector fails on alone) are dead-lettered at once; frames whose processing
keeps killing workers are dead-lettered after ``max_deliveries`` deliveries.

Redis errors never end the loop: it backs off, reconnects (redis-py reconnects per command),
recreates the group if the server came back empty and re-reads its own pending entries.
SIGTERM/SIGINT: finish the batch in hand (publish + ack), then exit; a second signal exits at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import bus, metrics
from core.http_health import HealthServer
from core.keys import Keys
from core.schema import FrameRef
from core.settings import Settings
from worker import health
from worker.batcher import Batcher
from worker.consumer import FrameConsumer
from worker.loading import device_warning, load_worker_detector
from worker.pipeline import Pipeline, Work
from worker.publisher import ALREADY_ACKED, DUPLICATE, PUBLISHED, EventPublisher

log = logging.getLogger(__name__)

IDLE_BLOCK_MS = 1000  # an idle worker wakes this often (reclaim, heartbeat, shutdown)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _Prepared:
    """A batch fetched and decoded, waiting for inference."""

    entries: list
    stale_ids: list
    ready: list


class Worker:
    def __init__(
        self,
        settings: Settings,
        detector: Any = None,
        redis_client: Any = None,
        worker_id: str | None = None,
        idle_block_ms: int = IDLE_BLOCK_MS,
    ):
        self.settings = settings
        ws = settings.worker
        self.ws = ws
        self.keys = Keys(settings.redis.prefix)
        self.worker_id = worker_id or ws.worker_id or default_worker_id()
        self.max_age_ms = ws.max_frame_age_ms or settings.ingest.max_frame_age_ms
        self.detector = detector
        self.r = redis_client
        # an idle worker wakes often enough to see a dead peer within dead_after_ms
        self.idle_block_ms = max(50, min(idle_block_ms, ws.dead_after_ms // 4))
        self.claim_interval_s = max(0.05, min(ws.claim_idle_ms / 2000, 5.0))
        self.dead_check_s = ws.dead_after_ms / 4000
        self.heartbeat_s = ws.heartbeat_interval_ms / 1000
        self.stats: dict[str, int] = {
            "batches": 0, "frames": 0, "events": 0, "faces": 0, "stale_expired": 0, "stale_too_old": 0,
            "dead_lettered": 0, "duplicates": 0, "already_acked": 0, "reclaimed": 0, "redis_errors": 0,
        }
        self.started_ns = time.time_ns()
        self.rate = health.RateWindow()
        self.health_server: HealthServer | None = None
        self._redis_ok = False
        self._health_redis = None
        self.ready = threading.Event()
        self._stopped = False
        self.device_warning = ""
        self.camera_seen: dict[str, float] = {}  # camera -> last event (monotonic): metric series cleanup

    # -- setup ------------------------------------------------------------------------------------
    def _setup(self) -> None:
        if self.detector is None:
            self.detector = load_worker_detector(self.settings)
        self._warmup()
        metrics.set_build_info("worker")
        health.MODEL_LOADED.set(1)
        self.device_warning = device_warning(self.detector)
        health.CPU_DESPITE_GPU.set(1 if self.device_warning else 0)
        if self.device_warning:
            log.warning(self.device_warning)
        if self.r is None:
            self.r = self._connect_forever()
        self.consumer = FrameConsumer(
            self.r, self.keys, self.worker_id,
            claim_idle_ms=self.ws.claim_idle_ms, max_deliveries=self.ws.max_deliveries,
        )
        self.pipeline = Pipeline(self.detector, self.worker_id, gpu_decode=self.ws.gpu_decode)
        self.publisher = EventPublisher(
            self.r, self.keys, self.consumer.group, self.worker_id,
            events_maxlen=self.ws.events_maxlen, guard_ttl_ms=self.ws.event_guard_ttl_ms,
            run_ttl_ms=self.settings.ingest.run_ttl_s * 1000,
        )
        self.batcher = Batcher(self.consumer.read, self.ws.max_batch, self.ws.max_wait_ms, self.idle_block_ms)
        if self.ws.http_port:
            self.health_server = HealthServer(self.ws.http_host, self.ws.http_port, self.checks).start()

    def _warmup(self) -> None:
        """One tiny inference so the first real batch does not pay for lazy initialisation."""
        import numpy as np

        try:
            self.detector.detect([np.zeros((360, 640, 3), np.uint8)])
        except Exception as exc:
            log.warning("detector warm-up failed", extra={"error": str(exc)[:200]})

    def _connect_forever(self):
        wait = bus.RetryDelay(0.2, 5.0)
        while True:
            try:
                return bus.connect(self.settings.redis)
            except bus.BusError as exc:
                log.warning("redis unreachable; retrying", extra={"error": str(exc)})
                time.sleep(wait.next())

    def checks(self) -> dict[str, tuple[bool, Any]]:
        model_ok = self.detector is not None
        model_detail = self.detector.info.model_dump() if model_ok else "not loaded"
        try:
            if self._health_redis is None:
                rs = self.settings.redis.model_copy(
                    update={"retry_attempts": 0, "socket_timeout_s": 1.0, "socket_connect_timeout_s": 1.0}
                )
                self._health_redis = bus.connect(rs, ping=False)
            self._health_redis.ping()
            redis_ok, redis_detail = True, "ok"
        except Exception as exc:
            redis_ok, redis_detail = False, f"{type(exc).__name__}: {exc}"[:200]
        device = getattr(getattr(self.detector, "runtime", None), "device", "?")
        return {
            "device": (True, self.device_warning or device),  # ok: it serves; the warning says what is lost
            "model": (model_ok, model_detail),
            "redis": (redis_ok, redis_detail),
            "worker": (True, {"id": self.worker_id, **self.stats}),
        }

    # -- loop -------------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> dict[str, int]:
        stop = stop or threading.Event()
        self._setup()
        backlog: list[bus.Entry] = []
        recover = True
        next_claim = 0.0
        next_dead_check = 0.0
        next_beat = 0.0
        alive = threading.Thread(target=self._stay_alive, args=(stop,), name="worker-alive", daemon=True)
        alive.start()
        next_prune = time.monotonic() + 60
        wait = bus.RetryDelay(0.1, 2.0)
        pool = (ThreadPoolExecutor(1, thread_name_prefix="worker-prefetch") if self.ws.pipeline_depth > 1
                else None)
        pending = None
        log.info(
            "worker started",
            extra={"worker": self.worker_id, "model": self.detector.info.name,
                   "runtime": self.detector.info.runtime, "max_batch": self.ws.max_batch},
        )
        self.ready.set()
        try:
            while not stop.is_set():
                try:
                    if recover:
                        self.consumer.ensure_group()
                        backlog.extend(self.consumer.recover_own(self.ws.max_batch * 4))
                        recover = False
                    now = time.monotonic()
                    if now >= next_dead_check:
                        backlog.extend(self.consumer.take_over_dead(self.ws.max_batch * 4, self.keys.worker_alive))
                        next_dead_check = now + self.dead_check_s
                    if now >= next_claim and len(backlog) < self.ws.max_batch:
                        backlog.extend(self.consumer.reclaim(self.ws.max_batch))
                        next_claim = now + self.claim_interval_s
                    if now >= next_beat:
                        self._heartbeat()
                        next_beat = now + self.heartbeat_s
                    if now >= next_prune:
                        self.consumer.prune_consumers(max(3_600_000, 10 * self.ws.claim_idle_ms))
                        next_prune = now + 600
                    mb = self.ws.max_batch
                    first, backlog = backlog[:mb], backlog[mb:]
                    if pool is None:
                        prepared = self._fetch(first, stop)
                    else:  # the next batch is fetched and decoded while this one is inferred
                        if pending is None:
                            pending = pool.submit(self._fetch, first, stop)
                        else:
                            backlog = first + backlog
                        prepared, pending = pending.result(), None
                        if not stop.is_set():
                            first, backlog = backlog[:mb], backlog[mb:]
                            pending = pool.submit(self._fetch, first, stop)
                    if prepared is not None:
                        self._complete(prepared)
                    self.stats["dead_lettered"] = self.consumer.dead_lettered
                    self.stats["reclaimed"] = self.consumer.reclaimed
                    self._set_redis_ok(True)
                    wait.reset()
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    self._redis_failed("connection", exc)
                    pending = self._abandon(pending)
                    backlog, recover = [], True
                    stop.wait(wait.next())
                except RedisError as exc:
                    self._redis_failed("command", exc)
                    pending = self._abandon(pending)
                    backlog, recover = [], True
                    stop.wait(wait.next())
                except Exception:
                    # e.g. the detector failed on every frame of a batch: leave them pending (they
                    # come back through recover_own and are dead-lettered after max_deliveries)
                    log.exception("batch failed; frames stay pending")
                    pending = self._abandon(pending)
                    backlog, recover = [], True
                    stop.wait(1.0)
            if pending is not None:  # stopping: finish the batch already fetched (frames in hand)
                try:
                    prepared = pending.result(timeout=60)
                    if prepared is not None:
                        self._complete(prepared)
                except Exception:  # left pending in the group: recovered by this worker or taken over
                    log.warning("could not finish the prefetched batch; its frames stay pending")
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            self._shutdown()
        return dict(self.stats)

    @staticmethod
    def _abandon(pending):
        """Wait for an in-flight prefetch and drop it: its frames stay pending and come back through
        recover_own (never processed twice concurrently)."""
        if pending is not None:
            with contextlib.suppress(Exception):
                pending.result(timeout=60)
        return None

    def _fetch(self, first: list[bus.Entry], stop: threading.Event):
        entries = self.batcher.collect(first=first, stop=stop)
        return self._prepare(entries) if entries else None

    def _set_redis_ok(self, ok: bool) -> None:
        if ok != self._redis_ok:
            health.REDIS_UP.set(1 if ok else 0)
            if ok:
                log.info("redis reachable", extra={"worker": self.worker_id})
        self._redis_ok = ok

    def _redis_failed(self, op: str, exc: Exception) -> None:
        self.stats["redis_errors"] += 1
        metrics.REDIS_ERRORS.labels(role="worker", op=op).inc()
        if self._redis_ok or self.stats["redis_errors"] % 20 == 1:
            log.warning("redis error; retrying", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
        self._set_redis_ok(False)

    def _stay_alive(self, stop: threading.Event) -> None:
        """Refresh the liveness key from its own thread: a long batch never makes this worker look dead,
        a SIGKILL makes it look dead within dead_after_ms."""
        ttl = self.ws.dead_after_ms
        key = self.keys.worker_alive(self.worker_id)
        while not stop.is_set() and not self._stopped:
            try:
                self.r.set(key, os.getpid(), px=ttl)
            except Exception as exc:  # the main loop reports Redis trouble; this just tries again
                log.debug("liveness refresh failed", extra={"error": str(exc)[:200]})
            stop.wait(ttl / 4000)

    def _shutdown(self) -> None:
        self._stopped = True  # the liveness thread ends even when run() ends by an exception
        try:
            if self.r is not None:
                self.r.delete(self.keys.worker_heartbeat(self.worker_id), self.keys.worker_alive(self.worker_id))
        except Exception:
            pass
        if self.health_server is not None:
            self.health_server.stop()
        log.info("worker stopped", extra={"worker": self.worker_id, **self.stats})

    def forget_idle_cameras(self, now: float | None = None) -> list[str]:
        """Remove the per-camera series of cameras without an event for camera_forget_s."""
        now = time.monotonic() if now is None else now
        gone = [c for c, t in self.camera_seen.items() if now - t > self.ws.camera_forget_s]
        for cam in gone:
            del self.camera_seen[cam]
            for m in (health.EVENTS, health.FACES, health.LATENCY, metrics.FRAMES_DROPPED):
                metrics.remove_series(m, "camera", cam)
        return gone

    def _heartbeat(self) -> None:
        self.forget_idle_cameras()
        lag, pending = self.consumer.lag()
        health.LAG.set(lag)
        health.PENDING.set(pending)
        health.EVENTS_RATE.set(self.rate.rate())
        key = self.keys.worker_heartbeat(self.worker_id)
        info = self.detector.info
        fields = {
            "worker_id": self.worker_id, "pid": os.getpid(), "host": socket.gethostname(),
            "started_ns": self.started_ns, "updated_ns": time.time_ns(),
            "model": f"{info.name}@{info.version}", "runtime": info.runtime,
            "lag": lag, "pending": pending, **self.stats,
        }
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(key, mapping=fields)
        # generous TTL: a CPU-starved worker must not look dead; crashed ones are found by claim_idle_ms
        pipe.pexpire(key, max(10 * self.settings.worker.heartbeat_interval_ms, 30_000))
        streams = (self.keys.frames, self.keys.frames_replay, self.keys.events, self.keys.frames_dead)
        for s in streams:
            pipe.xlen(s)
        lengths = pipe.execute()[2:]
        for s, n in zip(streams, lengths, strict=True):
            metrics.STREAM_LENGTH.labels(stream=s.removeprefix(self.keys.prefix + ":")).set(n)

    # -- one batch --------------------------------------------------------------------------------
    def process(self, entries: list[bus.Entry]) -> None:
        """One batch, start to finish (the run loop overlaps the two halves of consecutive batches)."""
        self._complete(self._prepare(entries))

    def _prepare(self, entries: list[bus.Entry]) -> _Prepared:
        """Parse, drop stale frames, fetch and decode payloads: everything before inference."""
        picked_ns = time.time_ns()
        works: list[Work] = []
        for e in entries:
            try:
                ref = FrameRef.from_fields(e.fields)
            except Exception as exc:
                self._dead(e, f"invalid_ref: {type(exc).__name__}: {exc}", camera="")
                continue
            works.append(Work(entry=e, ref=ref, picked_ns=picked_ns))

        # stale by age (live frames only; no payload fetch needed)
        stale_ids: list[Any] = []
        fresh: list[Work] = []
        for w in works:
            live = w.ref.source.kind != "replay"
            if live and (picked_ns - w.ref.capture_ns) / 1e6 > self.max_age_ms:
                self._drop(w, "stale", "stale_too_old")
                stale_ids.append(w.entry)
            else:
                fresh.append(w)

        payloads = []
        if fresh:
            pipe = self.r.pipeline(transaction=False)
            for w in fresh:
                pipe.get(w.ref.key)
            payloads = pipe.execute()
        fetched: list[tuple[Work, bytes]] = []
        for w, payload in zip(fresh, payloads, strict=True):
            if payload is None:
                if w.ref.source.kind == "replay":  # replays never drop: a missing payload is an error
                    self._dead(w.entry, "payload_missing: replay frame payload expired or deleted",
                               camera=w.ref.camera_id)
                else:
                    self._drop(w, "expired_payload", "stale_expired")
                    stale_ids.append(w.entry)
                continue
            fetched.append((w, payload))
        self.pipeline.decode_batch(fetched)
        ready: list[Work] = []
        for w, _ in fetched:
            if w.error:
                self._dead(w.entry, w.error, camera=w.ref.camera_id)
                continue
            ready.append(w)
        return _Prepared(entries, stale_ids, ready)

    def _complete(self, prepared: _Prepared) -> None:
        """Infer, build events and publish them exactly once (acking the stale frames with them)."""
        entries, stale_ids, ready = prepared.entries, prepared.stale_ids, prepared.ready
        if ready:
            infer_ms = self.pipeline.infer(ready)
            health.BATCH_SIZE.observe(len(ready))
            health.INFER_SECONDS.observe(infer_ms / 1000)
            self.stats["batches"] += 1
        ok = []
        for w in ready:
            if w.error:
                self._dead(w.entry, w.error, camera=w.ref.camera_id)
            else:
                ok.append(w)

        now_ns = time.time_ns()
        items = [(w.entry.id, self.pipeline.event(w, now_ns)) for w in ok]
        outcomes = self.publisher.publish(items, ack_only=stale_ids)
        self.stats["frames"] += len(entries)
        published = 0
        for (_, ev), out in zip(items, outcomes, strict=True):
            if out.status == PUBLISHED:
                published += 1
                self.stats["events"] += 1
                self.stats["faces"] += len(ev.detections)
                self.camera_seen[ev.camera_id] = time.monotonic()
                health.EVENTS.labels(camera=ev.camera_id).inc()
                health.FACES.labels(camera=ev.camera_id).inc(len(ev.detections))
                health.LATENCY.labels(camera=ev.camera_id).observe(ev.timings_ms.total / 1000)
                metrics.FRAME_AGE.labels(stage="event").observe(ev.timings_ms.total / 1000)
                metrics.FRAME_AGE.labels(stage="queue").observe(ev.timings_ms.queue / 1000)
            elif out.status == ALREADY_ACKED:
                self.stats["already_acked"] += 1
                health.DUPLICATES.labels(kind="already_acked").inc()
            elif out.status == DUPLICATE:
                self.stats["duplicates"] += 1
                health.DUPLICATES.labels(kind="event_id").inc()
                log.info("duplicate event id suppressed", extra={"event_id": ev.event_id})
        self.rate.add(published)

    def _drop(self, w: Work, reason: str, stat: str) -> None:
        self.stats[stat] += 1
        metrics.FRAMES_DROPPED.labels(camera=w.ref.camera_id, reason=reason).inc()

    def _dead(self, entry: bus.Entry, reason: str, camera: str) -> None:
        self.consumer.dead_letter(entry, reason)
        metrics.FRAMES_DROPPED.labels(camera=camera, reason="dead_letter").inc()


def run_worker(settings: Settings, detector: Any = None) -> dict[str, int]:
    """Run a worker in the foreground until SIGTERM/SIGINT (finish the batch in hand, then exit)."""
    stop = threading.Event()

    def _handler(signum, _frame):
        if stop.is_set():
            log.warning("second signal: exiting now")
            os._exit(128 + signum)
        log.info("signal received: finishing the batch in hand", extra={"signal": signum})
        stop.set()

    old = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return Worker(settings, detector=detector).run(stop)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
