"""Collect a replay run from Redis: its info hash and its detection events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from training.evaluate.replay.common import ReplayEvalError

# --------------------------------------------------------------------------------------- collection

@dataclass
class RunData:
    run_id: str
    info: dict[str, str]
    events: list  # core.schema.DetectionEvent, in stream order
    entry_ms: list[int] = field(default_factory=list)  # Redis time (ms) each event entered the run stream
    waited_s: float = 0.0

    @property
    def expected(self) -> int | None:
        v = self.info.get("frames_published")
        return int(v) if v not in (None, "") else None

    @property
    def complete(self) -> bool:
        exp = self.expected
        return self.info.get("status") in ("done", "failed") and exp is not None and len(self.events) >= exp


def _d(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def read_run_info(r: Any, keys: Any, run_id: str) -> dict[str, str]:
    return {_d(k): _d(v) for k, v in (r.hgetall(keys.run_info(run_id)) or {}).items()}


def read_run_events(r: Any, keys: Any, run_id: str, after: str = "-", batch: int = 2000
                    ) -> tuple[list, list[int], str]:
    """Events of the run stream after entry id ``after`` (exclusive unless "-"); returns (events, ms, last id)."""
    from core.schema import DetectionEvent

    events, ms = [], []
    stream = keys.run_events(run_id)
    start = after
    last = after
    while True:
        rows = r.xrange(stream, min=start if start == "-" else f"({start}", count=batch)
        if not rows:
            break
        for eid, fields in rows:
            try:
                events.append(DetectionEvent.from_fields(fields))
            except ValueError:  # not an event entry
                continue
            ms.append(int(_d(eid).split("-", 1)[0]))
        last = start = _d(rows[-1][0])
        if len(rows) < batch:
            break
    return events, ms, last


def collect_run(r: Any, keys: Any, run_id: str, wait_s: float = 30.0, poll_s: float = 0.2) -> RunData:
    """The run's info and events; waits up to ``wait_s`` for the replay to end and every frame's event.

    Raises ReplayEvalError when neither the run info nor any event exists.
    """
    t0 = time.monotonic()
    events: list = []
    ms: list[int] = []
    last = "-"
    while True:
        info = read_run_info(r, keys, run_id)
        ev, m, last = read_run_events(r, keys, run_id, after=last)
        events += ev
        ms += m
        run = RunData(run_id, info, events, ms, time.monotonic() - t0)
        if run.complete or time.monotonic() - t0 >= wait_s:
            break
        time.sleep(poll_s)
    if not info and not events:
        raise ReplayEvalError(f"no replay run {run_id!r}: neither {keys.run_info(run_id)} nor "
                              f"{keys.run_events(run_id)} exists (wrong --run-id or Redis prefix?)")
    return run


