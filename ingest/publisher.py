"""Publish encoded frames to Redis (claim check): payload ``SET key PX ttl``, then ``XADD`` a FrameRef.

``Publisher`` does the writes for a batch of frames in one pipeline (one round trip), live or replay.
``LivePublisher`` is the live path: a thread with ONE slot per camera. A reader never waits on Redis:
``submit()`` replaces the camera's pending frame (the replaced one is dropped and counted as
``queue_full``), and a frame older than the staleness budget when its turn comes is dropped as
``stale``. So a slow Redis or a slow network costs drops, never a backlog or latency; the frames
stream is capped (exact MAXLEN) and payloads expire (PX = max_frame_age_ms).

Frame sequence numbers come from ``INCRBY keys.camera_seq(cam) block``: each process reserves a block of
ids, so seqs stay unique across process restarts and takeovers (gaps are possible, duplicates are not).
The counter is floored at the wall clock in microseconds (one Lua call): a Redis that restarts empty or
is restored from an older snapshot goes on above every seq it issued before, so event ids
(``camera:seq``) never repeat. Replays number frames from 0 per run (their ids include the run id).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from core.bus import xadd_bounded
from core.keys import Keys
from core.schema import FrameRef, Source
from ingest import metrics as m
from ingest.encoder import EncodedFrame

log = logging.getLogger(__name__)


class DropReason:
    queue_full = "queue_full"  # a newer frame of the same camera replaced it before Redis took it
    stale = "stale"  # older than max_frame_age_ms when its turn came
    redis_error = "redis_error"  # the publish round trip failed
    lease_lost = "lease_lost"  # fenced: the camera's lease no longer holds this process's token


class CameraStats:
    """Counters of one camera (shared by its reader and the publisher thread; ints under the GIL)."""

    def __init__(self, camera_id: str):
        self.camera_id = camera_id
        self.decoded = 0
        self.sampled = 0
        self.published = 0
        self.drops: dict[str, int] = {}
        self.reconnects = 0
        self.stalls = 0
        self.last_frame_ns = 0
        self._win_t = time.monotonic()
        self._win_decoded = 0
        self._win_published = 0
        self.fps = 0.0
        self.published_fps = 0.0

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n
        m.FRAMES_DROPPED.labels(camera=self.camera_id, reason=reason).inc(n)

    def on_published(self, n: int = 1) -> None:
        self.published += n
        m.FRAMES_PUBLISHED.labels(camera=self.camera_id).inc(n)

    def update_rates(self, min_window_s: float = 0.5) -> None:
        now = time.monotonic()
        dt = now - self._win_t
        if dt < min_window_s:
            return
        self.fps = (self.decoded - self._win_decoded) / dt
        self.published_fps = (self.published - self._win_published) / dt
        self._win_t, self._win_decoded, self._win_published = now, self.decoded, self.published
        m.DECODED_FPS.labels(camera=self.camera_id).set(self.fps)
        m.PUBLISHED_FPS.labels(camera=self.camera_id).set(self.published_fps)


@dataclass
class OutFrame:
    """A sampled, encoded frame waiting to be published."""

    camera_id: str
    encoded: EncodedFrame
    width: int  # original frame size
    height: int
    pts: int | None
    time_base: str | None
    capture_ns: int
    decode_ms: float = 0.0
    source: Source = field(default_factory=Source)
    seq: int | None = None  # replays set it; live frames get one from the camera's counter
    stats: CameraStats | None = None
    lease: tuple[str, str] | None = None  # (lease key, owner token): published only while Redis says so


# KEYS[1] seq counter; ARGV[1] block; ARGV[2] floor (wall clock, us). Returns the block's last seq.
# Monotonic while Redis lives (INCRBY), and above the clock after it comes back empty or older.
_RESERVE_LUA = """
local block = tonumber(ARGV[1])
local v = redis.call('INCRBY', KEYS[1], block)
local floor = tonumber(ARGV[2])
if v - block < floor then
  v = floor + block
  redis.call('SET', KEYS[1], string.format('%d', v))
end
return v
"""


# Fencing: a live frame is written only while its camera's lease holds this process's token, checked
# by Redis in the same script as the writes -- two ingest processes never publish one camera at once,
# whatever a slow Redis or a paused process did to their local view of the lease.
# KEYS: lease, payload key, frames stream. ARGV: owner, payload, px, maxlen, then field/value pairs.
_FENCED_PUBLISH_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], '*', unpack(ARGV, 5))
return 1
"""


class Publisher:
    """Synchronous, pipelined frame writes. Thread-safe for distinct cameras (one seq block each)."""

    def __init__(self, r: Any, keys: Keys, *, maxlen: int, payload_ttl_ms: int, seq_block: int = 64):
        self.r = r
        self.keys = keys
        self.maxlen = int(maxlen)
        self.payload_ttl_ms = int(payload_ttl_ms)
        self.seq_block = max(1, int(seq_block))
        self._seq: dict[str, list[int]] = {}  # cam -> [next, end_exclusive]
        self._lock = threading.Lock()

    def _reserve(self, cams: list[str]) -> None:
        need = [c for c in dict.fromkeys(cams) if c not in self._seq or self._seq[c][0] >= self._seq[c][1]]
        if not need:
            return
        floor = time.time_ns() // 1000
        pipe = self.r.pipeline(transaction=False)
        for c in need:
            pipe.eval(_RESERVE_LUA, 1, self.keys.camera_seq(c), self.seq_block, floor)
        for c, hi in zip(need, pipe.execute(), strict=True):
            hi = int(hi)
            self._seq[c] = [hi - self.seq_block + 1, hi + 1]

    def next_seq(self, camera_id: str) -> int:
        with self._lock:
            self._reserve([camera_id])
            s = self._seq[camera_id]
            seq = s[0]
            s[0] += 1
            return seq

    def forget(self, camera_id: str) -> None:
        """Drop the camera's reserved seq block (lease lost: another process numbers its frames now)."""
        with self._lock:
            self._seq.pop(camera_id, None)

    def frame_ref(self, f: OutFrame, seq: int) -> FrameRef:
        return FrameRef(
            camera_id=f.camera_id, seq=seq, pts=f.pts, time_base=f.time_base, capture_ns=f.capture_ns,
            width=f.width, height=f.height, payload_width=f.encoded.width, payload_height=f.encoded.height,
            codec=f.encoded.codec, key=self.keys.frame(f.camera_id, seq, f.source.run_id),
            source=f.source, decode_ms=round(f.decode_ms, 3),
        )

    def publish(self, frames: list[OutFrame]) -> list[FrameRef]:
        """Write ``frames`` in one pipeline; returns their FrameRefs (raises on a Redis error)."""
        if not frames:
            return []
        refs = []
        for f in frames:
            seq = f.seq if f.seq is not None else self.next_seq(f.camera_id)
            refs.append(self.frame_ref(f, seq))
        pipe = self.r.pipeline(transaction=False)
        for f, ref in zip(frames, refs, strict=True):
            stream = self.keys.frames_stream(f.source.kind)
            if f.lease is None:  # replays: no lease, nothing to fence
                pipe.set(ref.key, f.encoded.data, px=self.payload_ttl_ms)
                xadd_bounded(pipe, stream, ref.to_fields(), self.maxlen)
            else:
                flat = [x for kv in ref.to_fields().items() for x in kv]
                pipe.eval(_FENCED_PUBLISH_LUA, 3, f.lease[0], ref.key, stream, f.lease[1],
                          f.encoded.data, self.payload_ttl_ms, self.maxlen, *flat)
        t0 = time.perf_counter()
        res = pipe.execute()
        m.PUBLISH_SECONDS.observe(time.perf_counter() - t0)
        out, i = [], 0
        for f, ref in zip(frames, refs, strict=True):
            ok = True
            if f.lease is None:
                i += 2
            else:
                ok, i = bool(res[i]), i + 1
            if f.stats is not None:
                f.stats.on_published() if ok else f.stats.drop(DropReason.lease_lost)
            if ok:
                out.append(ref)
        return out


class LivePublisher(threading.Thread):
    """The live path: one pending slot per camera, drained by this thread in pipelined batches."""

    def __init__(self, publisher: Publisher, max_frame_age_ms: int, max_batch: int = 64,
                 retry_s: float = 0.2):
        super().__init__(name="ingest-publisher", daemon=True)
        self.publisher = publisher
        self.max_age_ns = int(max_frame_age_ms) * 1_000_000
        self.max_batch = max_batch
        self.retry_s = retry_s
        self._slots: dict[str, OutFrame] = {}
        self._cond = threading.Condition()
        self._halt = threading.Event()
        self.batches = 0
        self.errors = 0
        self._last_error_log = 0.0

    def submit(self, frame: OutFrame) -> None:
        """Hand a frame over without waiting; a camera's older pending frame is dropped."""
        with self._cond:
            old = self._slots.get(frame.camera_id)
            self._slots[frame.camera_id] = frame
            self._cond.notify()
        if old is not None and old.stats is not None:
            old.stats.drop(DropReason.queue_full)

    def pending(self) -> int:
        with self._cond:
            return len(self._slots)

    def discard(self, camera_id: str) -> None:
        with self._cond:
            self._slots.pop(camera_id, None)

    def stop(self, timeout: float = 2.0) -> None:
        self._halt.set()
        with self._cond:
            self._cond.notify_all()
        if self.is_alive():
            self.join(timeout)

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every pending frame was taken (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pending():
                return True
            time.sleep(0.005)
        return False

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._slots and not self._halt.is_set():
                    self._cond.wait(0.5)
                if self._halt.is_set() and not self._slots:
                    return
                cams = list(self._slots)[: self.max_batch]
                batch = [self._slots.pop(c) for c in cams]
            now = time.time_ns()
            fresh = []
            for f in batch:
                if now - f.capture_ns > self.max_age_ns:
                    if f.stats is not None:
                        f.stats.drop(DropReason.stale)
                else:
                    fresh.append(f)
            if not fresh:
                continue
            try:
                self.publisher.publish(fresh)
                self.batches += 1
            except Exception as exc:  # Redis down or slow: drop, count, keep going
                self.errors += 1
                for f in fresh:
                    if f.stats is not None:
                        f.stats.drop(DropReason.redis_error)
                if time.monotonic() - self._last_error_log > 5.0:
                    self._last_error_log = time.monotonic()
                    log.warning("frame publish failed; dropping frames",
                                extra={"error": f"{type(exc).__name__}: {exc}", "frames": len(fresh)})
                self._halt.wait(self.retry_s)
