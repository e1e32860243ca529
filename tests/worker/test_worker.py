"""The worker against the real Redis (private key prefix) with a random fsdet-s on ONNX Runtime CPU."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from core import metrics
from core.payload import decode_payload
from core.schema import DetectionEvent
from testkit import free_port
from tests.worker.conftest import make_settings
from tests.worker.helpers import face_like_image, pending_count, publish_frame, read_events, wait_for
from worker.pipeline import payload_to_original
from worker.publisher import ALREADY_ACKED, PUBLISHED, EventPublisher


def events_by_id(r, keys) -> dict[str, DetectionEvent]:
    evs = read_events(r, keys.events)
    ids = [e.event_id for e in evs]
    assert len(ids) == len(set(ids)), "duplicate events"
    return {e.event_id: e for e in evs}


def test_one_event_per_frame_across_cameras(rconn, keys, start_worker, detector):
    ps = rconn.pubsub(ignore_subscribe_messages=True)
    ps.psubscribe(keys.events_pattern)
    wt = start_worker()
    refs = []
    for seq in range(6):
        for cam in ("cam-a", "cam-b"):
            refs.append(publish_frame(rconn, keys, cam, seq, face_like_image(320, 180, seq),
                                      original=(1280, 720)))
    wait_for(lambda: rconn.xlen(keys.events) >= len(refs), what="events")
    evs = events_by_id(rconn, keys)
    assert sorted(evs) == sorted(f"{r.camera_id}:{r.seq}" for r in refs)
    for ref in refs:
        ev = evs[f"{ref.camera_id}:{ref.seq}"]
        assert ev.camera_id == ref.camera_id and ev.frame.seq == ref.seq
        assert (ev.frame.width, ev.frame.height) == (1280, 720)
        assert ev.frame.capture_ns == ref.capture_ns and ev.frame.pts == ref.pts
        assert ev.frame.time_base == "1/90000"
        assert ev.source.kind == "live" and ev.schema_version == 1
        assert ev.model == detector.info and ev.model.runtime == "onnxruntime"
        assert ev.worker_id == wt.worker.worker_id
        t = ev.timings_ms
        assert t.infer > 0 and t.decode > 0 and 0 <= t.queue <= t.total < 10_000
        assert ev.detections == []  # a random model at threshold 0.5: still one event per frame
    assert pending_count(rconn, keys) == 0
    got = set()
    deadline = time.monotonic() + 5
    while len(got) < len(refs) and time.monotonic() < deadline:
        m = ps.get_message(timeout=0.2)
        if m:
            got.add(json.loads(m["data"])["event_id"])
    assert len(got) == len(refs)
    assert wt.worker.stats["events"] == len(refs) and wt.worker.stats["batches"] >= 1
    ps.close()


def test_boxes_are_mapped_to_original_pixels(rconn, keys, start_worker, low_threshold_detector):
    start_worker(det=low_threshold_detector)
    img = face_like_image(320, 180, 7)
    ref = publish_frame(rconn, keys, "cam1", 0, img, original=(1280, 720), codec="raw")
    wait_for(lambda: rconn.xlen(keys.events) >= 1, what="event")
    ev = read_events(rconn, keys.events)[0]
    assert len(ev.detections) == 5
    frame = decode_payload(img.tobytes(), ref.codec, ref.payload_width, ref.payload_height)
    expected = low_threshold_detector.detect([frame])[0]
    boxes, lms = payload_to_original(ref, expected.boxes, expected.landmarks)
    got = np.array([d.box for d in ev.detections])
    np.testing.assert_allclose(got, boxes, atol=0.01)
    assert got[:, 0::2].max() <= 1280 and got[:, 1::2].max() <= 720
    assert got[:, 2:].max() > 320  # really in original pixels, not payload pixels
    np.testing.assert_allclose(np.array(ev.detections[0].landmarks).ravel(), lms[0], atol=0.01)


def test_stale_frames_are_acked_without_event_and_counted(rconn, keys, start_worker):
    before_old = metrics.FRAMES_DROPPED.labels(camera="cam-stale", reason="stale")._value.get()
    before_exp = metrics.FRAMES_DROPPED.labels(camera="cam-stale", reason="expired_payload")._value.get()
    # published before the worker runs: one too old, one whose payload expires, one fresh
    publish_frame(rconn, keys, "cam-stale", 1, capture_ns=time.time_ns() - 60 * 10**9)
    publish_frame(rconn, keys, "cam-stale", 2, ttl_ms=1)
    publish_frame(rconn, keys, "cam-replay", 3, capture_ns=time.time_ns() - 3600 * 10**9, run_id="r1")
    time.sleep(0.05)
    publish_frame(rconn, keys, "cam-stale", 4)
    wt = start_worker()
    wait_for(lambda: rconn.xlen(keys.events) >= 2, what="events")
    wait_for(lambda: pending_count(rconn, keys) == 0 and wt.worker.stats["frames"] >= 4, what="acks")
    evs = events_by_id(rconn, keys)
    assert sorted(evs) == ["cam-replay:r1:3", "cam-stale:4"]  # replays are never stale
    assert [e.event_id for e in read_events(rconn, keys.run_events("r1"))] == ["cam-replay:r1:3"]
    assert wt.worker.stats["stale_too_old"] == 1 and wt.worker.stats["stale_expired"] == 1
    assert metrics.FRAMES_DROPPED.labels(camera="cam-stale", reason="stale")._value.get() == before_old + 1
    assert (metrics.FRAMES_DROPPED.labels(camera="cam-stale", reason="expired_payload")._value.get()
            == before_exp + 1)


def test_poison_frames_are_dead_lettered_and_the_worker_goes_on(rconn, keys, start_worker):
    wt = start_worker()
    publish_frame(rconn, keys, "cam1", 0)
    publish_frame(rconn, keys, "cam1", 1, payload=b"\xff\xd8 not a jpeg")
    rconn.xadd(keys.frames, {"ref": "{not json"})
    publish_frame(rconn, keys, "cam1", 2, codec="raw", payload=b"short")
    for seq in range(3, 6):
        publish_frame(rconn, keys, "cam1", seq)
    wait_for(lambda: rconn.xlen(keys.events) >= 4, what="events")
    wait_for(lambda: rconn.xlen(keys.frames_dead) >= 3, what="dead letters")
    assert sorted(events_by_id(rconn, keys)) == ["cam1:0", "cam1:3", "cam1:4", "cam1:5"]
    reasons = sorted(f[b"_reason"].decode().split(":")[0] for _, f in rconn.xrange(keys.frames_dead))
    assert reasons == ["decode_error", "decode_error", "invalid_ref"]
    wait_for(lambda: pending_count(rconn, keys) == 0, what="acks")
    assert wt.thread.is_alive()


def test_entries_of_a_dead_consumer_are_reclaimed_and_published_once(rconn, keys, start_worker):
    for seq in range(5):
        publish_frame(rconn, keys, "cam1", seq)
    from core import bus

    bus.ensure_group(rconn, keys.frames, keys.worker_group)
    taken = bus.read_group(rconn, keys.frames, keys.worker_group, "dead-worker", 3)  # then "crashes"
    assert len(taken) == 3
    wt = start_worker()
    wait_for(lambda: rconn.xlen(keys.events) >= 5, timeout=10, what="events incl. reclaimed")
    time.sleep(0.7)  # a further claim round must not republish anything
    assert sorted(events_by_id(rconn, keys)) == [f"cam1:{i}" for i in range(5)]
    assert wt.worker.consumer.reclaimed == 3 and pending_count(rconn, keys) == 0


def test_publish_is_idempotent(rconn, keys, wsettings, detector):
    from core import bus
    from worker.pipeline import Pipeline, Work

    bus.ensure_group(rconn, keys.frames, keys.worker_group)
    ref = publish_frame(rconn, keys, "cam1", 0)
    dup = publish_frame(rconn, keys, "cam1", 0)  # the same frame XADDed twice (a retried XADD)
    entries = bus.read_group(rconn, keys.frames, keys.worker_group, "w", 10)
    pl = Pipeline(detector, "w")
    ev = pl.event(Work(entry=entries[0], ref=ref, picked_ns=time.time_ns()))
    pub = EventPublisher(rconn, keys, keys.worker_group, "w", events_maxlen=100, guard_ttl_ms=60_000)
    assert [o.status for o in pub.publish([(entries[0].id, ev)])] == [PUBLISHED]
    # a second delivery of the same entry (slow worker whose entry was taken over): nothing published
    assert [o.status for o in pub.publish([(entries[0].id, ev)])] == [ALREADY_ACKED]
    # a different entry with the same event id: the guard key stops it, the entry is still acked
    ev2 = pl.event(Work(entry=entries[1], ref=dup, picked_ns=time.time_ns()))
    assert [o.status for o in pub.publish([(entries[1].id, ev2)])] == [-1]
    assert rconn.xlen(keys.events) == 1 and pending_count(rconn, keys) == 0
    assert 0 < rconn.pttl(keys.event_guard("cam1:0")) <= 60_000


def test_dead_letter_after_max_deliveries(rconn, keys, wprefix, random_weights, start_worker):
    from core import bus

    settings = make_settings(wprefix, random_weights, max_deliveries=2, claim_idle_ms=200)
    bus.ensure_group(rconn, keys.frames, keys.worker_group)
    publish_frame(rconn, keys, "cam1", 0)
    (e,) = bus.read_group(rconn, keys.frames, keys.worker_group, "crashy", 1)
    rconn.xclaim(keys.frames, keys.worker_group, "crashy2", 0, [e.id])  # delivery 2 (crashed again)
    time.sleep(0.25)
    wt = start_worker(settings=settings)  # its claim is delivery 3 > max_deliveries
    wait_for(lambda: rconn.xlen(keys.frames_dead) == 1, what="dead letter")
    (_, f), = rconn.xrange(keys.frames_dead)
    assert f[b"_reason"].startswith(b"delivered 3 times") and f[b"_deliveries"] == b"3"
    assert rconn.xlen(keys.events) == 0 and pending_count(rconn, keys) == 0
    publish_frame(rconn, keys, "cam1", 1)
    wait_for(lambda: rconn.xlen(keys.events) == 1, what="worker still serving")
    assert wt.worker.stats["dead_lettered"] == 1


def test_healthz_and_metrics(rconn, keys, wprefix, random_weights, start_worker):
    port = free_port()
    settings = make_settings(wprefix, random_weights, http_port=port, http_host="127.0.0.1")
    wt = start_worker(settings=settings)
    publish_frame(rconn, keys, "cam-h", 0)
    wait_for(lambda: rconn.xlen(keys.events) == 1, what="event")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        body = json.loads(resp.read())
    assert resp.status == 200 and body["status"] == "ok"
    assert body["checks"]["model"]["ok"] and body["checks"]["redis"]["ok"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for name in ("facestream_worker_batch_size_bucket", "facestream_worker_inference_seconds_bucket",
                 'facestream_worker_events_total{camera="cam-h"}', "facestream_worker_events_per_second",
                 "facestream_worker_group_lag", "facestream_frames_dropped_total", 'role="worker"'):
        assert name in text, name

    def scraped():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    # stream lengths are sampled by the heartbeat (every 200 ms here): the one event is counted
    wait_for(lambda: 'facestream_stream_length{stream="events"} 1.0' in scraped(), what="stream_length")
    # Redis unreachable -> 503 naming the failing check
    bad = settings.redis.model_copy(update={"url": f"redis://127.0.0.1:{free_port()}/0"})
    wt.worker.settings = wt.worker.settings.model_copy(update={"redis": bad})
    wt.worker._health_redis = None
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert err.value.code == 503
    assert json.loads(err.value.read())["checks"]["redis"]["ok"] is False


def test_heartbeat_hash(rconn, keys, start_worker):
    wt = start_worker(worker_id="hb-worker")
    key = keys.worker_heartbeat("hb-worker")
    h = wait_for(lambda: rconn.hgetall(key), what="heartbeat")
    assert h[b"worker_id"] == b"hb-worker" and int(h[b"events"]) == 0 and rconn.pttl(key) > 0
    wt.close()
    assert not rconn.exists(key)


def test_worker_recreates_the_group_when_redis_comes_back_empty(rconn, keys, start_worker):
    wt = start_worker()
    publish_frame(rconn, keys, "cam1", 0)
    wait_for(lambda: rconn.xlen(keys.events) == 1, what="first event")
    rconn.delete(keys.frames)  # what a restarted Redis without persistence looks like: no stream, no group
    time.sleep(0.3)
    for seq in (1, 2):
        publish_frame(rconn, keys, "cam1", seq)
    wait_for(lambda: rconn.xlen(keys.events) == 3, what="events after the group vanished")
    assert wt.thread.is_alive()


@pytest.mark.chaos
def test_worker_survives_a_real_redis_restart_that_loses_everything(private_redis, wprefix, random_weights,
                                                                    start_worker):
    from core import bus
    from core.keys import Keys
    from core.settings import RedisSettings

    rs = RedisSettings(url=private_redis.url, prefix=wprefix, retry_attempts=1, socket_timeout_s=2,
                       retry_backoff_max_s=0.2)
    settings = make_settings(wprefix, random_weights).model_copy(update={"redis": rs})
    k = Keys(wprefix)
    wt = start_worker(settings=settings)
    r = bus.connect(rs)
    publish_frame(r, k, "cam1", 0)
    wait_for(lambda: r.xlen(k.events) == 1, what="event before the restart")
    private_redis.restart()  # no persistence: stream, group and events are gone
    time.sleep(0.5)
    r = bus.connect(rs)
    publish_frame(r, k, "cam1", 1)
    publish_frame(r, k, "cam1", 2)
    wait_for(lambda: r.xlen(k.events) == 2, timeout=20, what="events after the restart")
    assert [e.event_id for e in read_events(r, k.events)] == ["cam1:1", "cam1:2"]
    assert wt.thread.is_alive()  # redis-py's retry may hide the outage; the group was recreated (NOGROUP)


def test_series_of_a_camera_that_went_away_are_removed(rconn, keys, start_worker):
    from core import metrics as core_metrics

    wt = start_worker()
    publish_frame(rconn, keys, "gone-cam", 0)
    publish_frame(rconn, keys, "kept-cam", 0)
    wait_for(lambda: rconn.xlen(keys.events) >= 2, what="events")
    assert 'camera="gone-cam"' in core_metrics.render()[0].decode()
    wt.worker.camera_seen["kept-cam"] += 10_000  # seen "later" than the cut-off below
    gone = wt.worker.forget_idle_cameras(now=time.monotonic() + wt.worker.ws.camera_forget_s + 1)
    assert gone == ["gone-cam"]
    page = core_metrics.render()[0].decode()
    assert 'camera="gone-cam"' not in page and 'camera="kept-cam"' in page


def test_replay_run_events_expire(rconn, keys, start_worker):
    wt = start_worker()
    publish_frame(rconn, keys, "cam-r", 0, run_id="ttl-run")
    wait_for(lambda: rconn.xlen(keys.run_events("ttl-run")) >= 1, what="run event")
    ttl = rconn.pttl(keys.run_events("ttl-run"))
    assert 0 < ttl <= wt.worker.settings.ingest.run_ttl_s * 1000


def test_a_live_frame_never_waits_behind_a_replay(rconn, keys, start_worker):
    """Issue 11.2: 150 replay frames queued, then a live frame: it is served next, not 150th."""
    for seq in range(150):
        publish_frame(rconn, keys, "cam-rep", seq, run_id="big-run")
    wt = start_worker()
    wait_for(lambda: rconn.xlen(keys.run_events("big-run")) >= 8, what="replay being served")
    publish_frame(rconn, keys, "cam-live", 0)
    wait_for(lambda: rconn.xlen(keys.events) >= 9 and any(e.camera_id == "cam-live"
                                                             for e in read_events(rconn, keys.events)),
             timeout=30, what="the live event")
    order = [e.camera_id for e in read_events(rconn, keys.events)]
    live = next(e for e in read_events(rconn, keys.events) if e.camera_id == "cam-live")
    assert live.timings_ms.total < 2000  # within the staleness budget: not dropped as stale
    # served within a batch or two of its arrival, not after the ~140 replay frames queued before it
    assert order.index("cam-live") < 60, order.index("cam-live")
    wait_for(lambda: rconn.xlen(keys.run_events("big-run")) >= 150, timeout=60, what="replay finished")
    wt.close()


def test_live_trimming_never_touches_unread_replay_frames(rconn, keys):
    for seq in range(5):
        publish_frame(rconn, keys, "cam-rep", seq, run_id="r-trim")
    for seq in range(50):
        publish_frame(rconn, keys, "cam-live", seq, maxlen=10)  # the live stream's exact MAXLEN trim
    assert rconn.xlen(keys.frames) == 10 and rconn.xlen(keys.frames_replay) == 5


@pytest.mark.parametrize("depth", [1, 2])
def test_next_batch_is_fetched_while_this_one_is_inferred(rconn, keys, wprefix, random_weights, start_worker,
                                                          detector, depth):
    """pipeline_depth 2: while inference of batch 1 is held, batch 2 is already read and decoded; 1: it is
    not. Either way every frame gives exactly one event."""
    import threading

    release, inferring = threading.Event(), threading.Event()

    class Held:
        info = detector.info
        runtime = detector.runtime
        armed = False  # the start-up warm-up runs through

        def detect(self, images):
            if self.armed:
                inferring.set()
                assert release.wait(30)
            return detector.detect(images)

    settings = make_settings(wprefix, random_weights, max_batch=4, max_wait_ms=50, pipeline_depth=depth)
    held = Held()
    start_worker(settings=settings, det=held)
    held.armed = True
    for s in range(8):
        publish_frame(rconn, keys, f"cam{s % 2}", s)
    assert inferring.wait(30)
    if depth == 2:
        wait_for(lambda: pending_count(rconn, keys) == 8, what="the second batch read during inference")
    else:
        time.sleep(0.5)
        assert pending_count(rconn, keys) == 4
    release.set()
    wait_for(lambda: rconn.xlen(keys.events) == 8, what="events")
    ids = [e.event_id for e in read_events(rconn, keys.events)]
    assert sorted(ids) == sorted(f"cam{s % 2}:{s}" for s in range(8))
    wait_for(lambda: pending_count(rconn, keys) == 0, what="acks")
