"""Subscribe to detection events (public API).

    from facestream.events import subscribe

    for ev in subscribe(camera="lobby"):                 # tail: events from now on, any process
        print(ev.camera_id, ev.frame.seq, len(ev.detections))

    for ev in subscribe(group="alerts"):                 # durable: a consumer group on the events stream
        handle(ev)                                        # acked when you ask for the next one

Modes
- ``group=None`` (tail): ``XREAD`` on the durable events stream from now on (``from_now=True``) or
  from the oldest retained event (``from_now=False``). Nothing is stored for the subscriber; a
  restarted tail starts afresh.
- ``group="name"``: a Redis consumer group on the events stream (created on first use at "now" or,
  with ``from_now=False``, at the oldest retained event). Several processes with the same group
  share the events; each event is delivered to one of them. At-least-once: an event is acked only
  when the caller asks for the next one, so the event in hand when a handler raises (or the loop
  breaks), and every event read but not yet handed out, is delivered again: first to the same
  ``consumer`` name when it restarts, and to any consumer of the group once it has been idle for
  ``claim_idle_ms`` (when given). Deduplicate by ``event_id``. With ``camera``, the Redis group is
  one per camera filter (``name|cam1,cam2``, see ``group_name``), so filters never take events
  from each other.
- ``pubsub=True``: the per-camera pub/sub channels (lowest latency, at-most-once, nothing stored).
- ``run_id="..."``: read a replay run's own events stream instead of the live one (tail or group).

``camera`` (an id or a list of ids) filters; ``idle_timeout_s`` ends the iteration after that long
without an event and ``max_events`` after that many. Redis connection errors are retried (tail
mode resumes after the last event it yielded).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import bus
from core.keys import Keys
from core.schema import DetectionEvent
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

__all__ = ["DetectionEvent", "group_name", "parse_event", "subscribe"]

_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def parse_event(fields_or_json: Any) -> DetectionEvent:
    """DetectionEvent from an events-stream entry's fields or from the JSON text of a message."""
    if isinstance(fields_or_json, dict):
        return DetectionEvent.from_fields(fields_or_json)
    return DetectionEvent.model_validate_json(fields_or_json)


def _cameras(camera: str | Iterable[str] | None) -> set[str] | None:
    if camera is None:
        return None
    if isinstance(camera, str):
        return {camera}
    cams = set(camera)
    return cams or None



def _parsed(entries) -> Iterator[tuple[Any, DetectionEvent | None]]:
    """(entry id, event) per stream entry; None for a malformed one (logged)."""
    for eid, fields in entries:
        try:
            yield eid, parse_event(fields)
        except Exception as exc:
            log.warning("skipping malformed event", extra={"id": str(eid), "error": str(exc)[:200]})
            yield eid, None


def _events(entries, cams):
    """Events of the wanted cameras; malformed entries are logged, skipped."""
    for _eid, ev in _parsed(entries):
        if ev is not None and (cams is None or ev.camera_id in cams):
            yield ev


def subscribe(
    camera: str | Iterable[str] | None = None,
    group: str | None = None,
    from_now: bool = True,
    *,
    consumer: str | None = None,
    run_id: str | None = None,
    pubsub: bool = False,
    settings: Settings | None = None,
    redis: Any = None,
    block_ms: int = 1000,
    idle_timeout_s: float | None = None,
    max_events: int | None = None,
    claim_idle_ms: int | None = None,
    count: int = 100,
) -> Iterator[DetectionEvent]:
    """Iterate DetectionEvents; see the module docstring for the modes."""
    settings = settings or get_settings()
    r = redis if redis is not None else bus.connect(settings.redis)
    keys = Keys(settings.redis.prefix)
    cams = _cameras(camera)
    if pubsub:
        if group is not None or run_id is not None:
            raise ValueError("pubsub=True cannot be combined with group or run_id")
        return _pubsub(r, keys, cams, block_ms, idle_timeout_s, max_events)
    stream = keys.run_events(run_id) if run_id else keys.events
    if group is None:
        return _tail(r, stream, cams, from_now, block_ms, idle_timeout_s, max_events, count)
    consumer = consumer or f"{socket.gethostname()}:{os.getpid()}"
    return _group(r, stream, group, consumer, cams, from_now, block_ms, idle_timeout_s, max_events,
                  claim_idle_ms, count)


class _Limits:
    def __init__(self, idle_timeout_s: float | None, max_events: int | None):
        self.idle_timeout_s = idle_timeout_s
        self.max_events = max_events
        self.n = 0
        self.last = time.monotonic()

    def got(self) -> None:
        self.n += 1
        self.last = time.monotonic()

    def done(self) -> bool:
        if self.max_events is not None and self.n >= self.max_events:
            return True
        return self.idle_timeout_s is not None and time.monotonic() - self.last >= self.idle_timeout_s

    def block(self, block_ms: int) -> int:
        if self.idle_timeout_s is None:
            return block_ms
        left = self.idle_timeout_s - (time.monotonic() - self.last)
        return max(1, min(block_ms, int(left * 1000)))


def _last_id(r: Any, stream: str) -> Any:
    rows = r.xrevrange(stream, count=1)
    return rows[0][0] if rows else b"0-0"


def _tail(r, stream, cams, from_now, block_ms, idle_timeout_s, max_events, count) -> Iterator[DetectionEvent]:
    lim = _Limits(idle_timeout_s, max_events)
    last: Any = None
    wait = bus.RetryDelay(0.1, 2.0)
    while not lim.done():
        try:
            if last is None:
                last = _last_id(r, stream) if from_now else b"0-0"
            resp = r.xread({stream: last}, count=count, block=lim.block(block_ms))
            wait.reset()
        except _RETRYABLE as exc:
            log.warning("events tail: redis error, retrying", extra={"error": str(exc)[:200]})
            time.sleep(wait.next())
            continue
        for _s, items in resp or []:
            if items:
                last = items[-1][0]
            for ev in _events(items, cams):
                lim.got()
                yield ev
                if lim.done():
                    return


def group_name(group: str, cams: set[str] | None) -> str:
    """The Redis group behind ``subscribe(group=..., camera=...)``: one per camera filter, so that a
    consumer never acks (and so takes away) events that another filter of the same name wants."""
    return group if cams is None else f"{group}|{','.join(sorted(cams))}"


def _group(r, stream, group, consumer, cams, from_now, block_ms, idle_timeout_s, max_events, claim_idle_ms,
           count) -> Iterator[DetectionEvent]:
    """At-least-once: an event is acked when the caller asks for the next one (or ends the loop through
    max_events / idle_timeout_s after it). Events read but not yet handed out, and the event in hand when
    the caller's loop raises or breaks, stay pending: a restarted consumer of the same name gets them
    first, any consumer after claim_idle_ms."""
    lim = _Limits(idle_timeout_s, max_events)
    grp = group_name(group, cams)
    start = "$" if from_now else "0"
    history = True  # first serve our own pending entries (a restarted consumer)
    next_claim = 0.0
    wait = bus.RetryDelay(0.1, 2.0)

    def ack(*ids: Any) -> None:
        try:
            r.xack(stream, grp, *ids)
        except _RETRYABLE as exc:  # still pending: redelivered later, which at-least-once allows
            log.warning("events group: ack failed", extra={"error": str(exc)[:200]})

    bus.ensure_group(r, stream, grp, start_id=start)
    while not lim.done():
        try:
            entries: list[tuple[Any, dict]] = []
            if history:
                resp = r.xreadgroup(grp, consumer, {stream: "0"}, count=count)
                entries = [(eid, f) for _s, items in resp or [] for eid, f in items]
                gone = [eid for eid, f in entries if not f]
                if gone:
                    r.xack(stream, grp, *gone)
                entries = [(eid, f) for eid, f in entries if f]
                history = bool(entries)
            if not entries and claim_idle_ms and time.monotonic() >= next_claim:
                res = bus.autoclaim(r, stream, grp, consumer, claim_idle_ms, count=count)
                entries = [(e.id, e.fields) for e in res.entries]
                next_claim = time.monotonic() + max(0.05, claim_idle_ms / 2000)
            if not entries:
                resp = r.xreadgroup(grp, consumer, {stream: ">"}, count=count, block=lim.block(block_ms))
                entries = [(eid, f) for _s, items in resp or [] for eid, f in items]
            wait.reset()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            bus.ensure_group(r, stream, grp, start_id="0")  # the server came back empty
            continue
        except _RETRYABLE as exc:
            log.warning("events group: redis error, retrying", extra={"error": str(exc)[:200]})
            time.sleep(wait.next())
            history = True
            continue
        for eid, ev in _parsed(entries):
            if ev is None or (cams is not None and ev.camera_id not in cams):
                ack(eid)  # malformed, or another camera: this group (one per filter) never wants it
                continue
            lim.got()
            yield ev
            ack(eid)  # the caller came back for the next one: this one is handled
            if lim.done():
                return


def _pubsub(r, keys, cams, block_ms, idle_timeout_s, max_events) -> Iterator[DetectionEvent]:
    lim = _Limits(idle_timeout_s, max_events)
    ps = r.pubsub(ignore_subscribe_messages=True)
    try:
        if cams is None:
            ps.psubscribe(keys.events_pattern)
        else:
            ps.subscribe(*(keys.events_channel(c) for c in sorted(cams)))
        while not lim.done():
            msg = ps.get_message(timeout=lim.block(block_ms) / 1000)
            if not msg or msg.get("type") not in ("message", "pmessage"):
                continue
            try:
                ev = parse_event(msg["data"])
            except Exception:
                continue
            if cams is None or ev.camera_id in cams:
                lim.got()
                yield ev
    finally:
        with contextlib.suppress(Exception):
            ps.close()
