"""The worker's side of the frames stream consumer group (``detectors``).

- ``read(count, block_ms)``: new entries (``XREADGROUP >``).
- ``recover_own()``: entries already delivered to this consumer name and never acked (a worker
  restarted under the same id, or a batch interrupted by a Redis error): ``XREADGROUP 0``.
- ``reclaim()``: ``XAUTOCLAIM`` entries idle longer than ``claim_idle_ms`` (a dead or stuck
  worker's), dead-lettering those delivered more than ``max_deliveries`` times.
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
        self.stream = keys.frames
        self.group = group or keys.worker_group
        self.consumer = consumer
        self.claim_idle_ms = int(claim_idle_ms)
        self.max_deliveries = int(max_deliveries)
        self.dead_maxlen = dead_maxlen
        self._claim_cursor: Any = "0-0"
        self.dead_lettered = 0
        self.reclaimed = 0

    # -- group ------------------------------------------------------------------------------------
    def ensure_group(self) -> bool:
        created = bus.ensure_group(self.r, self.stream, self.group, start_id="0")
        if created:
            log.info("created consumer group", extra={"stream": self.stream, "group": self.group})
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
        if block_ms is not None and block_ms <= 0:
            block_ms = None  # BLOCK 0 would wait forever
        return self._call(bus.read_group, self.r, self.stream, self.group, self.consumer, count, block_ms)

    def recover_own(self, count: int) -> list[bus.Entry]:
        """Pending entries of this consumer (history read; counts as a delivery)."""
        resp = self._call(self.r.xreadgroup, self.group, self.consumer, {self.stream: "0"}, count=count)
        entries: list[bus.Entry] = []
        gone = []
        for _stream, items in resp or []:
            for eid, fields in items:
                if not fields:  # trimmed from the stream while pending: nothing left to process
                    gone.append(eid)
                else:
                    entries.append(bus.Entry(self.stream, eid, fields))
        if gone:
            bus.ack(self.r, self.stream, self.group, *gone)
        if entries:
            counts = bus.pending_deliveries(self.r, self.stream, self.group, [e.id for e in entries])
            for e in entries:
                e.deliveries = counts.get(e.id, e.deliveries)
        return self._screen(entries)

    def reclaim(self, count: int) -> list[bus.Entry]:
        """Claim entries idle > claim_idle_ms (one XAUTOCLAIM page); dead-letter over-delivered ones."""
        res = self._call(
            bus.autoclaim, self.r, self.stream, self.group, self.consumer, self.claim_idle_ms,
            count=count, start_id=self._claim_cursor,
        )
        self._claim_cursor = res.next_id or "0-0"
        if res.entries:
            self.reclaimed += len(res.entries)
            RECLAIMED.inc(len(res.entries))
            log.info(
                "reclaimed idle frames",
                extra={"count": len(res.entries), "ids": [_s(e.id) for e in res.entries[:5]]},
            )
        return self._screen(res.entries)

    def take_over_dead(self, count: int, alive_key) -> list[bus.Entry]:
        """Claim the pending entries of consumers whose liveness key (``alive_key(name)``) is gone: a
        SIGKILLed worker's live frames go on within the staleness budget, not after claim_idle_ms."""
        try:
            rows = self.r.xinfo_consumers(self.stream, self.group)
        except ResponseError:
            return []
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
            pend = self.r.xpending_range(self.stream, self.group, min="-", max="+", count=count, consumername=name)
            if not pend:
                continue
            times = {p["message_id"]: int(p["times_delivered"]) for p in pend}
            claimed = self.r.xclaim(self.stream, self.group, self.consumer, 0, list(times))
            gone = [eid for eid, f in claimed if not f]
            if gone:  # trimmed while pending: nothing left to process
                bus.ack(self.r, self.stream, self.group, *gone)
            got = [bus.Entry(self.stream, eid, f, times.get(eid, 1) + 1) for eid, f in claimed if f]
            self.reclaimed += len(got)
            RECLAIMED.inc(len(got))
            log.warning("took over the frames of a dead worker", extra={"consumer": name, "count": len(got)})
            out += got
        return self._screen(out)

    def _screen(self, entries: list[bus.Entry]) -> list[bus.Entry]:
        live = []
        for e in entries:
            if e.deliveries > self.max_deliveries:
                self.dead_letter(e, f"delivered {e.deliveries} times (max {self.max_deliveries})")
            else:
                live.append(e)
        return live

    # -- acks / dead letters ----------------------------------------------------------------------
    def ack(self, *ids: Any) -> int:
        return bus.ack(self.r, self.stream, self.group, *ids)

    def dead_letter(self, entry: bus.Entry, reason: str) -> None:
        bus.dead_letter(
            self.r, self.stream, self.group, entry, reason, self.keys.frames_dead, maxlen=self.dead_maxlen
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
        try:
            rows = self.r.xinfo_consumers(self.stream, self.group)
        except ResponseError:
            return 0
        for c in rows:
            name = _s(c.get("name"))
            if name != self.consumer and int(c.get("pending") or 0) == 0 and int(c.get("idle") or 0) > idle_ms:
                self.r.xgroup_delconsumer(self.stream, self.group, name)
                n += 1
        return n

    # -- lag --------------------------------------------------------------------------------------
    def lag(self) -> tuple[int, int]:
        """(entries not yet delivered to the group, entries delivered but not acked)."""
        try:
            groups = self.r.xinfo_groups(self.stream)
        except ResponseError:
            return 0, 0
        for g in groups:
            name = g.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                return int(g.get("lag") or 0), int(g.get("pending") or 0)
        return 0, 0


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
