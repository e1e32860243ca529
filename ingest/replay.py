"""Replay a video file through the live ingest path (same source, sampler, encoder, publisher), losslessly.

Differences from a live camera, all about never dropping a frame:

- frames are published synchronously (no latest-frame slot), so nothing is replaced or aged out;
- payloads live ``replay_frame_ttl_ms`` (long) instead of the live staleness budget;
- backpressure: before publishing, the replay checks how many frames the workers have not finished
  (the consumer group's ``lag`` + ``pending``, from XINFO GROUPS) and sleeps while that exceeds
  ``window``. ``window`` is at most half the frames stream cap, so the exact MAXLEN trim (which removes
  the OLDEST entries) can never reach an entry a worker has not read yet;
- the consumer group is created (at ``$``, before the first frame) if no worker has created it yet,
  so the replay's frames are delivered to workers that start later.

Frames carry ``Source(kind="replay", run_id=R)``, seq counts sampled frames from 0 within the run, and
payload keys are ``keys.frame(cam, seq, run_id)``. The run summary goes to ``keys.run_info(run_id)``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from core.bus import ensure_group, group_lag
from core.keys import Keys
from core.logging import error_words, redact_text, redact_url
from core.schema import PayloadCodec, Source, validate_camera_id
from core.settings import IngestSettings
from ingest.encoder import Encoder
from ingest.publisher import CameraStats, OutFrame, Publisher
from ingest.sampler import PtsSampler
from ingest.sources import IngestError, SourceOptions, VideoSource

log = logging.getLogger(__name__)

PACES = ("realtime", "asfast")


class ReplayError(RuntimeError):
    def __init__(self, message: str, summary: ReplaySummary | None = None):
        super().__init__(message)
        self.summary = summary


class ReplayStopped(Exception):
    """The replay was stopped from outside (SIGTERM): the run is marked failed, not left "running"."""


@dataclass
class ReplaySummary:
    run_id: str
    camera_id: str
    file: str  # redacted
    pace: str
    fps: float
    detect_size: int
    codec: str
    frames_decoded: int = 0
    frames_published: int = 0
    first_seq: int = 0
    last_seq: int = -1
    started_ns: int = 0
    ended_ns: int = 0
    waited_s: float = 0.0  # time spent waiting on backpressure
    source_fps: float = 0.0
    width: int = 0
    height: int = 0
    status: str = "running"  # running | done | failed
    error: str = ""

    @property
    def wall_s(self) -> float:
        return max(0.0, (self.ended_ns or time.time_ns()) - self.started_ns) / 1e9

    @property
    def decode_fps(self) -> float:
        return self.frames_decoded / self.wall_s if self.wall_s else 0.0

    def to_hash(self) -> dict[str, str]:
        d = asdict(self)
        d["wall_s"] = round(self.wall_s, 3)
        d["decode_fps"] = round(self.decode_fps, 2)
        return {k: str(v) for k, v in d.items()}

    def text(self) -> str:
        return (
            f"replay {self.run_id}: camera={self.camera_id} file={self.file} status={self.status}\n"
            f"  decoded {self.frames_decoded} frames ({self.width}x{self.height}, {self.source_fps:g} fps), "
            f"published {self.frames_published} at {self.fps:g} fps / {self.detect_size}px {self.codec} "
            f"(seq {self.first_seq}..{self.last_seq})\n"
            f"  wall {self.wall_s:.2f}s ({self.decode_fps:.1f} decoded frames/s), "
            f"waited on workers {self.waited_s:.2f}s"
            + (f"\n  error: {self.error}" if self.error else "")
        )


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def group_backlog(r: Any, stream: str, group: str, limit: int = 10_000) -> int | None:
    """Entries the group has not finished: lag (not yet delivered) + pending (delivered, not acked).

    None when the stream or the group does not exist.
    """
    lp = group_lag(r, stream, group, limit)
    return None if lp is None else sum(lp)


def replay(
    path: str,
    camera_id: str,
    *,
    redis: Any,
    keys: Keys,
    settings: IngestSettings,
    pace: str = "asfast",
    run_id: str | None = None,
    fps: float = 5.0,
    detect_size: int = 640,
    codec: PayloadCodec | str = PayloadCodec.jpeg,
    jpeg_quality: int = 90,
    window: int | None = None,
    group: str | None = None,
    wait_timeout_s: float | None = None,
    check_every: int = 8,
    progress: Callable[[ReplaySummary], None] | None = None,
    max_frames: int | None = None,
    duration_s: float | None = None,
) -> ReplaySummary:
    """Publish every sampled frame of ``path`` exactly once as camera ``camera_id``; returns the summary.

    ``pace``: ``asfast`` (as fast as decode and the workers allow) or ``realtime`` (by PTS).
    ``window``: most frames the workers may have outstanding (default: settings.replay_window, at most
    frames_maxlen // 2).
    Waiting longer than ``wait_timeout_s`` without progress raises ReplayError (summary attached).
    ``max_frames`` / ``duration_s`` (of source time) end the run early, as "done": the way to replay a
    live URL, which has no end of its own.
    """
    validate_camera_id(camera_id)
    if pace not in PACES:
        raise ValueError(f"pace must be one of {PACES}, got {pace!r}")
    codec = PayloadCodec(codec)
    run_id = run_id or new_run_id()
    validate_camera_id(run_id)  # same charset: it becomes part of keys
    cap = max(1, settings.frames_maxlen // 2)
    window = min(window or settings.replay_window, cap)
    if wait_timeout_s is None:
        wait_timeout_s = settings.replay_wait_timeout_s
    group = group or keys.worker_group
    check_every = max(1, min(check_every, window // 2 or 1))

    summary = ReplaySummary(run_id=run_id, camera_id=camera_id, file=redact_url(path), pace=pace, fps=fps,
                            detect_size=detect_size, codec=codec.value, started_ns=time.time_ns())
    info_key = keys.run_info(run_id)
    if redis.exists(info_key):
        raise ReplayError(f"run id {run_id!r} already exists")
    redis.hset(info_key, mapping=summary.to_hash())

    publisher = Publisher(redis, keys, maxlen=settings.frames_maxlen, payload_ttl_ms=settings.replay_frame_ttl_ms)
    encoder = Encoder(detect_size, codec, jpeg_quality)
    sampler = PtsSampler(fps, reset_gap_s=1e9)  # a file's PTS never legitimately jumps: keep the grid
    stats = CameraStats(camera_id)
    source = Source(kind="replay", run_id=run_id)
    opts = SourceOptions(open_timeout_s=settings.open_timeout_s, read_timeout_s=settings.read_timeout_s,
                         thread_type=settings.decode_thread_type)
    ensure_group(redis, keys.frames_replay, group, start_id="$")

    seq = 0
    outstanding = 0  # our frames published since the last backlog check (upper bound on growth)
    backlog = 0

    def wait_for_room() -> None:
        nonlocal backlog, outstanding
        t0 = time.monotonic()
        last_seen = None
        last_progress = t0
        while True:
            b = group_backlog(redis, keys.frames_replay, group, limit=window + 1)
            if b is None:  # group deleted under us (a reset): recreate, keep going
                ensure_group(redis, keys.frames_replay, group, start_id="$")
                b = 0
            backlog, outstanding = b, 0
            if b + check_every <= window:
                break
            now = time.monotonic()
            if last_seen is None or b < last_seen:
                last_progress = now
            last_seen = b
            if now - last_progress > wait_timeout_s:
                raise ReplayError(f"workers made no progress for {wait_timeout_s:g}s "
                                  f"({b} frames outstanding in group {group!r})", summary)
            time.sleep(0.02)
        summary.waited_s += time.monotonic() - t0

    try:
        with VideoSource(path, opts, live=False) as src:
            summary.source_fps = round(src.average_fps or 0.0, 3)
            t_first: float | None = None
            wall_first = 0.0
            t_start: float | None = None
            for df in src.frames():
                summary.frames_decoded += 1
                if summary.frames_decoded == 1:
                    summary.width, summary.height = df.width, df.height
                if df.t is not None and t_start is None:
                    t_start = df.t
                if max_frames is not None and summary.frames_published >= max_frames:
                    break
                if duration_s is not None and df.t is not None and df.t - t_start >= duration_s:
                    break
                if pace == "realtime" and df.t is not None:
                    if t_first is None:
                        t_first, wall_first = df.t, time.monotonic()
                    ahead = (df.t - t_first) - (time.monotonic() - wall_first)
                    if ahead > 0:
                        time.sleep(ahead)
                if not sampler.accept(df.t):
                    continue
                if outstanding + backlog + 1 > window or outstanding >= check_every:
                    wait_for_room()
                enc = encoder.encode(df.frame)
                out = OutFrame(
                    camera_id=camera_id, encoded=enc, width=df.width, height=df.height, pts=df.pts,
                    time_base=str(df.time_base) if df.time_base is not None else None,
                    capture_ns=df.capture_ns, decode_ms=df.decode_ms, source=source, seq=seq, stats=stats,
                )
                publisher.publish([out])
                summary.last_seq = seq
                seq += 1
                outstanding += 1
                summary.frames_published += 1
                if progress is not None and summary.frames_published % 50 == 0:
                    progress(summary)
        summary.status = "done"
    except (IngestError, ReplayError) as exc:
        summary.status, summary.error = "failed", redact_text(exc)
        raise ReplayError(f"replay of {redact_url(path)} failed: {summary.error}", summary) from None
    except BaseException as exc:  # any error text may quote the URL: stored and raised redacted
        summary.status, summary.error = "failed", redact_text(f"{type(exc).__name__}: {error_words(exc) or exc}")
        raise
    finally:
        summary.ended_ns = time.time_ns()
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.hset(info_key, mapping=summary.to_hash())
            pipe.expire(info_key, settings.run_ttl_s)  # bounded by construction
            pipe.execute()
        except Exception as exc:  # pragma: no cover
            log.warning("could not write the run summary: %s", exc)
    return summary
