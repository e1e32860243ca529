"""Collect one inference batch: up to ``max_batch`` frames (across cameras) within ``max_wait_ms``.

The wait starts at the first frame of the batch, not at the call: an idle worker blocks up to
``idle_block_ms`` for a first frame (and then returns an empty batch so the run loop can do its
housekeeping: reclaim, heartbeat, shutdown), and a busy worker never holds a frame more than
``max_wait_ms`` for company. ``XREADGROUP COUNT n`` returns whatever is available at once, so
under load batches fill without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Batcher:
    def __init__(
        self,
        read: Callable[[int, int | None], list[Any]],
        max_batch: int,
        max_wait_ms: int,
        idle_block_ms: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``read(count, block_ms)`` returns up to ``count`` entries, waiting up to ``block_ms``
        (None: do not block)."""
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.read = read
        self.max_batch = int(max_batch)
        self.max_wait_s = max(0, max_wait_ms) / 1000
        self.idle_block_ms = max(1, int(idle_block_ms))
        self.clock = clock

    def collect(self, first: list[Any] | None = None, stop: threading.Event | None = None) -> list[Any]:
        """Entries for one batch. ``first``: entries already in hand (reclaimed), served first."""
        batch = list(first or [])[: self.max_batch]
        deadline = self.clock() + self.max_wait_s if batch else None
        while len(batch) < self.max_batch:
            if stop is not None and stop.is_set():
                break
            if deadline is None:
                block: int | None = self.idle_block_ms
            else:
                remaining = deadline - self.clock()
                # past the deadline: one last non-blocking read picks up what is already there
                block = int(remaining * 1000) if remaining >= 0.001 else None
            got = self.read(self.max_batch - len(batch), block)
            if got:
                batch.extend(got)
                if deadline is None:
                    deadline = self.clock() + self.max_wait_s
                continue
            if deadline is None or block is None:
                break  # idle (nothing within idle_block_ms) or deadline reached
        return batch
