"""Every Redis key and stream name, in one place. The prefix is configurable (tests isolate by it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "facestream"

    # -- cameras -------------------------------------------------------------
    @property
    def cameras(self) -> str:
        """HASH camera_id -> Camera JSON (the registry)."""
        return f"{self.prefix}:cameras"

    @property
    def cameras_changed(self) -> str:
        """PUB/SUB channel: registry changed (payload: camera id)."""
        return f"{self.prefix}:cameras:changed"

    def camera_status(self, cam: str) -> str:
        """HASH: CameraStatus fields."""
        return f"{self.prefix}:camera:{cam}:status"

    def camera_lease(self, cam: str) -> str:
        """STRING (SET NX PX): the ingest process that owns the camera."""
        return f"{self.prefix}:camera:{cam}:lease"

    def camera_seq(self, cam: str) -> str:
        """INT counter: last frame seq issued for the camera (seq survives ingest restarts)."""
        return f"{self.prefix}:camera:{cam}:seq"

    @property
    def ingest_members(self) -> str:
        """ZSET of live ingest processes: member = owner id, score = expiry (ms since the epoch)."""
        return f"{self.prefix}:ingest:members"

    # -- frames --------------------------------------------------------------
    def frame(self, cam: str, seq: int, run_id: str | None = None) -> str:
        """STRING: encoded frame payload, TTL = staleness budget (live) or long (replay)."""
        if run_id:
            return f"{self.prefix}:frame:{cam}:{run_id}:{seq}"
        return f"{self.prefix}:frame:{cam}:{seq}"

    @property
    def frames(self) -> str:
        """STREAM of live FrameRef entries, read by workers through a consumer group."""
        return f"{self.prefix}:frames"

    @property
    def frames_replay(self) -> str:
        """STREAM of replay FrameRef entries: its own stream, so a replay never delays live frames (workers
        read live first) and live trimming never removes an unread replay frame."""
        return f"{self.prefix}:frames:replay"

    def frames_stream(self, source_kind: str) -> str:
        """The frames stream of a frame whose ``source.kind`` is ``live`` or ``replay``."""
        return self.frames_replay if source_kind == "replay" else self.frames

    @property
    def frames_dead(self) -> str:
        """STREAM of frames that failed k deliveries (poison)."""
        return f"{self.prefix}:frames:dead"

    # -- events --------------------------------------------------------------
    @property
    def events(self) -> str:
        """STREAM of DetectionEvent JSON (durable; subscribers use their own groups)."""
        return f"{self.prefix}:events"

    def events_channel(self, cam: str) -> str:
        """PUB/SUB channel per camera (low-latency, at-most-once)."""
        return f"{self.prefix}:events:{cam}"

    @property
    def events_pattern(self) -> str:
        return f"{self.prefix}:events:*"

    def run_events(self, run_id: str) -> str:
        """STREAM of a replay run's events (kept for evaluation)."""
        return f"{self.prefix}:run:{run_id}:events"

    def event_guard(self, event_id: str) -> str:
        """STRING (SET NX PX): idempotency guard of a published event id (worker; TTL'd)."""
        return f"{self.prefix}:event:{event_id}"

    def run_info(self, run_id: str) -> str:
        """HASH: replay run summary (frames decoded/published, camera, file, started/ended)."""
        return f"{self.prefix}:run:{run_id}"

    # -- workers -------------------------------------------------------------
    def worker_heartbeat(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def worker_alive(self, worker_id: str) -> str:
        """STRING with a TTL of dead_after_ms: gone = the worker is dead (its frames are taken over)."""
        return f"{self.prefix}:worker:{worker_id}:alive"

    @property
    def worker_group(self) -> str:
        return "detectors"
