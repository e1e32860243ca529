"""Soak: live frames through a worker for a bounded time (FACESTREAM_SOAK_S, default 40 s); Redis memory
and the process's RSS stay flat after warm-up: every key is capped or expires."""

from __future__ import annotations

import os
import resource
import time

import pytest

from tests.worker.helpers import publish_frame, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_memory_stays_flat(rconn, keys, wprefix, random_weights, start_worker):
    from tests.worker.conftest import make_settings

    seconds = float(os.environ.get("FACESTREAM_SOAK_S", "40"))
    wt = start_worker(settings=make_settings(wprefix, random_weights, events_maxlen=300))
    seq = 0

    def run_for(s: float) -> None:
        nonlocal seq
        end = time.monotonic() + s
        while time.monotonic() < end:
            for cam in ("soak-a", "soak-b", "soak-c"):
                publish_frame(rconn, keys, cam, seq, ttl_ms=2000, maxlen=200)
            seq += 1
            time.sleep(0.05)

    run_for(min(10.0, seconds / 3))  # warm-up: streams reach their caps, caches fill
    mem0, rss0 = rconn.info("memory")["used_memory"], _rss_mb()
    run_for(seconds)
    wait_for(lambda: wt.worker.stats["frames"] >= 3 * seq - 3, timeout=30, what="worker caught up")
    time.sleep(2.5)  # payload TTLs (2 s) run out
    mem1, rss1 = rconn.info("memory")["used_memory"], _rss_mb()
    assert rconn.xlen(keys.frames) <= 200 and rconn.xlen(keys.events) <= 300
    assert mem1 - mem0 < 8 * 2**20, (mem0, mem1)  # Redis: capped streams, expiring payloads
    assert rss1 - rss0 < 60, (rss0, rss1)  # worker + test process
    wt.close()
