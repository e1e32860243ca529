"""Network faults between a worker and Redis, through a real TCP proxy: latency and a partition.
The worker recovers by itself and the invariants hold: every frame at most one event, live frames
served or counted as stale, nothing left pending once the network is back."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import pytest

from testkit.fault_proxy import FaultProxy
from tests.worker.conftest import make_settings
from tests.worker.helpers import pending_count, publish_frame, read_events, wait_for

pytestmark = pytest.mark.chaos


@pytest.fixture
def proxy(wsettings):
    p = FaultProxy(urlsplit(wsettings.redis.url).port or 6379)
    yield p
    p.close()


def _through(proxy, wprefix, random_weights):
    s = make_settings(wprefix, random_weights)
    fast = dict(url=proxy.url, socket_timeout_s=1.0, socket_connect_timeout_s=0.5, retry_attempts=1,
                connect_timeout_s=5)
    return s.model_copy(update={"redis": s.redis.model_copy(update=fast)})


def _feed(r, keys, cam, stop, fps=20.0):
    seq = 0
    while not stop.is_set():
        publish_frame(r, keys, cam, seq)
        seq += 1
        time.sleep(1 / fps)
    return seq


def test_worker_rides_out_a_partition(rconn, keys, wprefix, random_weights, start_worker, proxy):
    wt = start_worker(settings=_through(proxy, wprefix, random_weights))
    stop = threading.Event()
    sent = []
    feeder = threading.Thread(target=lambda: sent.append(_feed(rconn, keys, "cam-p", stop)), daemon=True)
    feeder.start()
    wait_for(lambda: rconn.xlen(keys.events) >= 5, timeout=20, what="events before the fault")
    proxy.partition()
    time.sleep(3.0)  # longer than the socket timeout and the staleness budget
    during = rconn.xlen(keys.events)
    proxy.heal()
    wait_for(lambda: rconn.xlen(keys.events) >= during + 10, timeout=30, what="events after healing")
    stop.set()
    feeder.join(5)
    st = wt.worker.stats

    def accounted() -> int:  # an event, or a counted stale drop (frames queued during the cut)
        return rconn.xlen(keys.events) + st["stale_too_old"] + st["stale_expired"]

    # every frame is accounted for, and nothing is left delivered-but-unacked
    wait_for(lambda: accounted() >= sent[0] and pending_count(rconn, keys) == 0, timeout=30,
             what=f"all {sent[0]} frames accounted for (stats {st})")
    assert wt.thread.is_alive(), "the worker died"
    ids = [e.event_id for e in read_events(rconn, keys.events)]
    assert len(ids) == len(set(ids)), "an event id was published twice"
    assert st["redis_errors"] >= 1 and proxy.accepted >= 2  # it did see the fault and reconnect
    wt.close()


def test_worker_keeps_every_live_frame_under_added_latency(rconn, keys, wprefix, random_weights, start_worker,
                                                           proxy):
    proxy.delay_s = 0.01  # 10 ms each way per packet: a 20 ms round trip, a remote Redis
    wt = start_worker(settings=_through(proxy, wprefix, random_weights))
    for seq in range(20):
        publish_frame(rconn, keys, "cam-l", seq)
        time.sleep(0.05)
    wait_for(lambda: rconn.xlen(keys.events) >= 20, timeout=30, what="every event")
    evs = read_events(rconn, keys.events)
    assert sorted(e.frame.seq for e in evs) == list(range(20))
    assert max(e.timings_ms.total for e in evs) < 2000  # inside the staleness budget
    wt.close()


def test_ingest_rides_out_a_partition(redis_settings, redis_client, tmp_path):
    """Ingest's Redis link cut for 3 s (longer than its lease TTL): it reconnects by itself, takes its
    camera back, and frames flow again; nothing it publishes after losing the lease gets through."""
    from core import bus
    from core.keys import Keys
    from ingest.registry import Registry
    from ingest.supervisor import Supervisor
    from testkit.clips import make_clip
    from tests.ingest.conftest import fast_settings

    clip = make_clip(tmp_path / "loop.mp4", frames=100, fps=25, width=320, height=240)
    keys = Keys(redis_settings.prefix)
    proxy = FaultProxy(urlsplit(redis_settings.url).port or 6379)
    try:
        via = bus.connect(redis_settings.model_copy(update={"url": proxy.url, "socket_timeout_s": 1.0,
                                                              "retry_attempts": 1, "connect_timeout_s": 5}))
        Registry(redis_client, keys).add("loop-cam", str(clip.path), fps=5, detect_size=160)
        with Supervisor(via, keys, fast_settings(lease_ttl_ms=1500, lease_renew_ms=300)):
            wait_for(lambda: redis_client.xlen(keys.frames) >= 3, timeout=20, what="frames before the cut")
            proxy.partition()
            time.sleep(3.0)
            cut_len = redis_client.xlen(keys.frames)
            assert redis_client.get(keys.camera_lease("loop-cam")) is None  # its lease lapsed meanwhile
            proxy.heal()
            wait_for(lambda: redis_client.xlen(keys.frames) >= cut_len + 5, timeout=30, what="frames after healing")
            assert redis_client.get(keys.camera_lease("loop-cam")) is not None  # held again
        from core.schema import FrameRef

        seqs = [FrameRef.from_fields(f).seq for _, f in redis_client.xrange(keys.frames)]
        assert len(seqs) == len(set(seqs))  # no seq twice, across the reconnect
    finally:
        proxy.close()
