"""The worker's side of the frames streams' consumer group (``detectors``): live and replay.

Live frames and replay frames have a stream each (``keys.frames``, ``keys.frames_replay``) under the same
group name. Every read takes live entries first and fills the rest of the batch from the replay
stream, so a replay (hundreds of frames queued by design) never makes a live frame wait, and the live
stream's MAXLEN trim never touches an unread replay frame.

- ``read(count, block_ms)``: new entries (``XREADGROUP >``), live first; blocks on both when idle.
- ``recover_own()``: entries already delivered to this consumer name and never acked (a worker
  restarted under the same id, or a batch interrupted by a Redis error): ``XREADGROUP 0``.
- ``reclaim()``: ``XAUTOCLAIM`` entries idle longer than ``claim_idle_ms`` (a stuck worker's),
  dead-lettering those delivered more than ``max_deliveries`` times.
- ``take_over_dead()``: the pending entries of workers whose liveness key expired (SIGKILL), at once.
- ``dead_letter(entry, reason)``: copy to ``frames:dead`` with the reason and ack (one MULTI).

Redis restarts: a server that comes back empty has no group; every call that meets ``NOGROUP``
recreates it (``start_id=0``, so frames published before the group existed are still served).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ResponseError

from core import bus, metrics
from core.keys import Keys

log = logging.getLogger(__name__)

DEAD_LETTERS = metrics.counter(
    "worker_dead_letters_total", "Frames moved to the dead-letter stream, by reason", ["reason"]
)
DEAD_MIN_IDLE_MS = 100  # a consumer that touched the group this recently is not taken over
RECLAIMED = metrics.counter("worker_reclaimed_total", "Entries taken over from idle consumers (XAUTOCLAIM)")


def _reason_label(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head if head in ("decode_error", "infer_error", "invalid_ref", "payload_missing") else "deliveries"


class FrameConsumer:
    def __init__(
        self,
        r: Any,
        keys: Keys,
        consumer: str,
        *,
        claim_idle_ms: int,
        max_deliveries: int,
        group: str | None = None,
        dead_maxlen: int = 10_000,
    ):
        self.r = r
        self.keys = keys
        self.streams = (keys.frames, keys.frames_replay)  # read in this order: live first
        self.group = group or keys.worker_group
        self.consumer = consumer
        self.claim_idle_ms = int(claim_idle_ms)
        self.max_deliveries = int(max_deliveries)
        self.dead_maxlen = dead_maxlen
        self._claim_cursor: dict[str, Any] = dict.fromkeys(self.streams, "0-0")
        self._surplus: list[bus.Entry] = []  # a blocking read of both streams can return more than asked
        self.dead_lettered = 0
        self.reclaimed = 0

    # -- group ------------------------------------------------------------------------------------
    def ensure_group(self) -> bool:
        created = False
        for stream in self.streams:
            if bus.ensure_group(self.r, stream, self.group, start_id="0"):
                created = True
                log.info("created consumer group", extra={"stream": stream, "group": self.group})
        return created

    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()
            return fn(*args, **kw)

    # -- reads ------------------------------------------------------------------------------------
    def read(self, count: int, block_ms: int | None) -> list[bus.Entry]:
        """Up to ``count`` new entries, live before replay; waits ``block_ms`` on both when there are none.
        One round trip when frames are waiting (both streams in one pipeline); replay entries read beyond
        the batch wait in a small buffer (at most ``count``), behind the next live frames."""
        want_replay = max(0, count - len(self._surplus))

        def both():
            pipe = self.r.pipeline(transaction=False)
            pipe.xreadgroup(self.group, self.consumer, {self.streams[0]: ">"}, count=count)
            if want_replay:
                pipe.xreadgroup(self.group, self.consumer, {self.streams[1]: ">"}, count=want_replay)
            return pipe.execute()

        res = self._call(both)
        live = bus.entries_of(res[0])
        replay = bus.entries_of(res[1]) if want_replay else []
        entries = live + self._surplus + replay
        if not entries and block_ms is not None and block_ms > 0:  # BLOCK 0 would wait forever
            entries = self._call(bus.read_group, self.r, list(self.streams), self.group, self.consumer, count,
                                 block_ms)
            entries.sort(key=lambda e: self.streams.index(_s(e.stream)))
        got, self._surplus = entries[:count], entries[count:]
        return got

    def recover_own(self, count: int) -> list[bus.Entry]:
        """Pending entries of this consumer (history read; counts as a delivery), live first."""
        entries: list[bus.Entry] = []
        for stream in self.streams:
            resp = self._call(self.r.xreadgroup, self.group, self.consumer, {stream: "0"}, count=count)
            gone = []
            mine = []
            for _stream, items in resp or []:
                for eid, fields in items:
                    if not fields:  # trimmed from the stream while pending: nothing left to process
                        gone.append(eid)
                    else:
                        mine.append(bus.Entry(stream, eid, fields))
            if gone:
                bus.ack(self.r, stream, self.group, *gone)
            if mine:
                counts = bus.pending_deliveries(self.r, stream, self.group, [e.id for e in mine])
                for e in mine:
                    e.deliveries = counts.get(e.id, e.deliveries)
            entries += mine
        return self._screen(entries)

    def reclaim(self, count: int) -> list[bus.Entry]:
        """Claim entries idle > claim_idle_ms (one XAUTOCLAIM page a stream); dead-letter over-delivered ones."""
        out: list[bus.Entry] = []
        for stream in self.streams:
            res = self._call(
                bus.autoclaim, self.r, stream, self.group, self.consumer, self.claim_idle_ms,
                count=count, start_id=self._claim_cursor[stream],
            )
            self._claim_cursor[stream] = res.next_id or "0-0"
            out += res.entries
        if out:
            self.reclaimed += len(out)
            RECLAIMED.inc(len(out))
            log.info("reclaimed idle frames", extra={"count": len(out), "ids": [_s(e.id) for e in out[:5]]})
        return self._screen(out)

    def take_over_dead(self, count: int, alive_key) -> list[bus.Entry]:
        """Claim the pending entries of consumers whose liveness key (``alive_key(name)``) is gone: a
        SIGKILLed worker's live frames go on within the staleness budget, not after claim_idle_ms."""
        pipe = self.r.pipeline(transaction=False)  # one round trip for both streams: this runs often
        for stream in self.streams:
            pipe.xinfo_consumers(stream, self.group)
        out: list[bus.Entry] = []
        for stream, rows in zip(self.streams, pipe.execute(raise_on_error=False), strict=True):
            if not isinstance(rows, Exception):  # no stream or group yet
                out += self._take_over_dead(stream, rows, count, alive_key)
        return self._screen(out)

    def _take_over_dead(self, stream: str, rows: list, count: int, alive_key) -> list[bus.Entry]:
        cands = [_s(c.get("name")) for c in rows
                 if _s(c.get("name")) != self.consumer and int(c.get("pending") or 0) > 0
                 and int(c.get("idle") or 0) >= DEAD_MIN_IDLE_MS]
        if not cands:
            return []
        pipe = self.r.pipeline(transaction=False)
        for name in cands:
            pipe.exists(alive_key(name))
        dead = [n for n, alive in zip(cands, pipe.execute(), strict=True) if not alive]
        out: list[bus.Entry] = []
        for name in dead:
            pend = self.r.xpending_range(stream, self.group, min="-", max="+", count=count, consumername=name)
            if not pend:
                continue
            times = {p["message_id"]: int(p["times_delivered"]) for p in pend}
            claimed = self.r.xclaim(stream, self.group, self.consumer, 0, list(times))
            gone = [eid for eid, f in claimed if not f]
            if gone:  # trimmed while pending: nothing left to process
                bus.ack(self.r, stream, self.group, *gone)
            got = [bus.Entry(stream, eid, f, times.get(eid, 1) + 1) for eid, f in claimed if f]
            self.reclaimed += len(got)
            RECLAIMED.inc(len(got))
            log.warning("took over the frames of a dead worker",
                        extra={"consumer": name, "count": len(got), "stream": stream})
            out += got
        return out

    def _screen(self, entries: list[bus.Entry]) -> list[bus.Entry]:
        live = []
        for e in entries:
            if e.deliveries > self.max_deliveries:
                self.dead_letter(e, f"delivered {e.deliveries} times (max {self.max_deliveries})")
            else:
                live.append(e)
        return live

    # -- acks / dead letters ----------------------------------------------------------------------
    def dead_letter(self, entry: bus.Entry, reason: str) -> None:
        bus.dead_letter(
            self.r, _s(entry.stream), self.group, entry, reason, self.keys.frames_dead, maxlen=self.dead_maxlen
        )
        self.dead_lettered += 1
        DEAD_LETTERS.labels(reason=_reason_label(reason)).inc()
        log.warning(
            "frame dead-lettered",
            extra={"id": _s(entry.id), "reason": reason[:300], "deliveries": entry.deliveries},
        )

    def prune_consumers(self, idle_ms: int) -> int:
        """Delete consumers with nothing pending that have been idle longer than ``idle_ms`` (dead
        workers' names pile up otherwise). Safe: a live one is re-created by its next read."""
        n = 0
        for stream in self.streams:
            try:
                rows = self.r.xinfo_consumers(stream, self.group)
            except ResponseError:
                continue
            for c in rows:
                name = _s(c.get("name"))
                if (name != self.consumer and int(c.get("pending") or 0) == 0
                        and int(c.get("idle") or 0) > idle_ms):
                    self.r.xgroup_delconsumer(stream, self.group, name)
                    n += 1
        return n

    # -- lag --------------------------------------------------------------------------------------
    def lag(self) -> tuple[int, int]:
        """(entries not yet delivered to the group, entries delivered but not acked), both streams."""
        lag = pending = 0
        for stream in self.streams:
            lp = bus.group_lag(self.r, stream, self.group)
            if lp is not None:
                lag, pending = lag + lp[0], pending + lp[1]
        return lag, pending


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
