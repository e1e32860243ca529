"""Publish events and ack their frames, atomically and idempotently, in one pipelined round trip.

Per frame one Lua script runs (EVALSHA, pipelined for the whole batch):

1. ``XACK frames detectors <entry id>``: if it returns 0 the entry is no longer pending, i.e.
   another delivery of the same entry (a worker we took it over from, or that took it over from
   us) already published and acked it -> publish nothing (``ALREADY_ACKED``).
2. ``SET {prefix}:event:{event_id} <worker> NX PX <guard ttl>`` (when the guard TTL > 0): if the
   key exists, a *different* stream entry with the same event id was already published (e.g. an
   ingest XADD that was retried after a lost reply) -> publish nothing (``DUPLICATE``).
3. ``XADD events MAXLEN <cap> * event <json>`` (durable stream, exact cap), for replay runs also
   ``XADD run:{run_id}:events``, then ``PUBLISH events:{cam} <json>`` (at-most-once fan-out).

Because the ack, the guard and the XADD happen in one script, a frame is never acked without its
event and an event is never published twice, whatever dies when: a worker killed before the
script ran leaves the entry pending (it is reclaimed and processed again); one killed after it
leaves nothing to redo. A client-side retry of the script after a lost reply hits rule 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.keys import Keys
from core.schema import EVENT_FIELD, DetectionEvent

PUBLISHED = 1
ALREADY_ACKED = 0
DUPLICATE = -1


_PUBLISH_LUA = """
-- KEYS: frames stream, events stream, guard key, run events stream ('' when not a replay)
-- ARGV: group, entry id, event json, channel, events maxlen, guard ttl ms, worker id, run maxlen
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  if not redis.call('SET', KEYS[3], ARGV[7], 'NX', 'PX', ttl) then
    return -1
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '*', 'EVENT_FIELD', ARGV[3])
if KEYS[4] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[8], '*', 'EVENT_FIELD', ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[9])  -- a run's events outlive it by run_ttl, then go
end
redis.call('PUBLISH', ARGV[4], ARGV[3])
return 1
""".replace("EVENT_FIELD", EVENT_FIELD)


@dataclass
class Outcome:
    event_id: str
    camera_id: str
    status: int  # PUBLISHED | ALREADY_ACKED | DUPLICATE


class EventPublisher:
    def __init__(
        self,
        r: Any,
        keys: Keys,
        group: str,
        worker_id: str,
        events_maxlen: int,
        guard_ttl_ms: int,
        run_events_maxlen: int | None = None,
        run_ttl_ms: int = 7 * 86_400_000,
    ):
        self.r = r
        self.keys = keys
        self.group = group
        self.worker_id = worker_id
        self.events_maxlen = int(events_maxlen)
        self.guard_ttl_ms = int(guard_ttl_ms)
        self.run_events_maxlen = int(run_events_maxlen or events_maxlen)
        self.run_ttl_ms = int(run_ttl_ms)
        self._script = r.register_script(_PUBLISH_LUA)

    def publish(self, items: Sequence[tuple[Any, DetectionEvent]], ack_only: Sequence[Any] = ()) -> list[Outcome]:
        """Publish ``(entry_id, event)`` pairs and XACK ``ack_only`` entries (stale frames), pipelined.
        Each entry is acked on its frames stream (live or replay, from the event's / entry's source).

        Raises redis errors as they come (nothing is acked for a script that did not run).
        """
        if not items and not ack_only:
            return []
        pipe = self.r.pipeline(transaction=False)
        for entry_id, ev in items:
            run_id = ev.source.run_id if ev.source.kind == "replay" else None
            js = ev.model_dump_json()
            self._script(
                keys=[
                    self.keys.frames_stream(ev.source.kind),
                    self.keys.events,
                    self.keys.event_guard(ev.event_id),
                    self.keys.run_events(run_id) if run_id else "",
                ],
                args=[
                    self.group,
                    entry_id,
                    js,
                    self.keys.events_channel(ev.camera_id),
                    self.events_maxlen,
                    self.guard_ttl_ms,
                    self.worker_id,
                    self.run_events_maxlen,
                    self.run_ttl_ms,
                ],
                client=pipe,
            )
        by_stream: dict[Any, list[Any]] = {}
        for e in ack_only:
            by_stream.setdefault(e.stream, []).append(e.id)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        res = pipe.execute()
        return [
            Outcome(ev.event_id, ev.camera_id, int(status))
            for (_, ev), status in zip(items, res[: len(items)], strict=True)
        ]
