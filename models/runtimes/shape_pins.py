"""Per-frame-shape inference objects for the CPU runtimes: an ONNX Runtime session with its symbolic
dimensions pinned, an OpenVINO model compiled for a static shape. Either runs a frame of that shape
faster than the dynamic graph (docs/benchmarks.md) but costs a build (~60 ms / ~0.5 s) and memory, so a
shape gets one only once PIN_AFTER of its frames have run (one-off sizes stay on the dynamic graph), and
at most MAX_SHAPE_SESSIONS are kept, least recently used out first.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

MAX_SHAPE_SESSIONS = 8  # ORT: ~60 ms to build, ~20-30 MB of arena each (640x480); OpenVINO ~0.5 s
PIN_AFTER = 8  # frames of a shape before it gets its own: a build pays off after ~60 frames


class ShapePins(OrderedDict):
    """shape -> pinned object (most recently used last); `pinned(shape, frames, dynamic)` returns it, or
    `dynamic` until the shape has earned one. `build(shape)` makes it (and handles its own failures)."""

    def __init__(self, build: Callable[[tuple[int, ...]], Any]):
        super().__init__()
        self._build = build
        self._seen: Counter[tuple[int, ...]] = Counter()  # frames per shape not pinned yet
        self._lock = threading.Lock()  # the cache, not the runs

    def pinned(self, shape: tuple[int, ...], frames: int, dynamic: Any) -> Any:
        with self._lock:
            obj = self.get(shape)
            if obj is not None:
                self.move_to_end(shape)
                return obj
            if len(self._seen) > 1024:  # bounded: many one-off sizes
                self._seen.clear()
            self._seen[shape] += frames
            if self._seen[shape] < PIN_AFTER:
                return dynamic
            del self._seen[shape]
            obj = self[shape] = self._build(shape)
            while len(self) > MAX_SHAPE_SESSIONS:
                self.popitem(last=False)
            return obj
