"""RTSP camera -> `facestream ingest` -> worker -> events; and a Redis restart in the middle."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.settings import RedisSettings
from testkit.clips import make_clip
from testkit.redis_service import RedisServer
from tests.e2e.procs import facestream, facestream_env
from tests.worker.conftest import make_settings
from tests.worker.helpers import read_events, wait_for

pytestmark = pytest.mark.rtsp

INGEST_ENV = dict(
    FACESTREAM_INGEST__OPEN_TIMEOUT_S="3", FACESTREAM_INGEST__READ_TIMEOUT_S="2",
    FACESTREAM_INGEST__BACKOFF_MIN_S="0.2", FACESTREAM_INGEST__BACKOFF_MAX_S="1",
    FACESTREAM_INGEST__LEASE_TTL_MS="3000", FACESTREAM_INGEST__LEASE_RENEW_MS="500",
    FACESTREAM_INGEST__STATUS_INTERVAL_S="0.3", FACESTREAM_INGEST__HTTP_PORT="0",
    FACESTREAM_INGEST__MAX_FRAME_AGE_MS="3000",
)


@pytest.fixture(scope="module")
def clip640(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "cam.mp4", frames=100, fps=25, width=640, height=480)


def start_camera(tmp_path, env, server, procs, cam="cam-rtsp"):
    add = facestream("camera-add", ["camera", "add", cam, server.url, "--fps", "5", "--detect-size", "320"],
                     env, tmp_path)
    assert add.wait(60) == 0, add.output()
    ingest = facestream("ingest", ["ingest"], env, tmp_path)
    procs.append(ingest)
    return server, ingest


def test_rtsp_camera_to_events(tmp_path, wprefix, rconn, keys, random_weights, low_threshold_detector,
                               start_worker, procs, clip640, rtsp_server_factory):
    env = facestream_env(wprefix, **INGEST_ENV)
    server, _ingest = start_camera(tmp_path, env, rtsp_server_factory(clip640, shared=True), procs)
    try:
        t0 = time.time_ns()
        start_worker(det=low_threshold_detector)
        wait_for(lambda: rconn.xlen(keys.events) >= 8, timeout=40, what="events from the RTSP camera")
        evs = read_events(rconn, keys.events)
    finally:
        server.stop()
    seqs = [e.frame.seq for e in evs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for ev in evs:
        assert ev.camera_id == "cam-rtsp" and ev.source.kind == "live"
        assert ev.event_id == f"cam-rtsp:{ev.frame.seq}"
        assert (ev.frame.width, ev.frame.height) == (640, 480)  # original size, payload was 320x240
        assert ev.frame.pts is not None and ev.frame.time_base
        assert t0 - 60 * 10**9 < ev.frame.capture_ns < time.time_ns()
        assert ev.model == low_threshold_detector.info
        assert ev.timings_ms.infer > 0 and 0 <= ev.timings_ms.queue <= ev.timings_ms.total < 5000
        assert len(ev.detections) == 5
        b = np.array([d.box for d in ev.detections])
        assert (b >= 0).all() and (b[:, 0::2] <= 640).all() and (b[:, 1::2] <= 480).all()
    # boxes are in original pixels: a 320x240 payload's random boxes reach past 320 once scaled
    allb = np.array([d.box for ev in evs for d in ev.detections])
    assert allb[:, 2].max() > 330
    # sampled at ~5 fps: pts steps of ~0.2 s
    pts_s = [e.frame.pts * eval(e.frame.time_base) for e in evs]
    assert 0.1 < float(np.median(np.diff(pts_s))) < 0.4


@pytest.mark.chaos
def test_redis_restart_ingest_and_worker_resume(tmp_path, wprefix, random_weights, detector, start_worker,
                                                procs, clip640, rtsp_server_factory):
    # AOF on, so the restarted server still has the camera registry, the streams and the group
    redis_srv = RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always")).start()
    try:
        env = facestream_env(wprefix, redis_url=redis_srv.url, **INGEST_ENV)
        settings = make_settings(wprefix, random_weights)
        settings = settings.model_copy(update={"redis": RedisSettings(url=redis_srv.url, prefix=wprefix,
                                                                      retry_attempts=2, socket_timeout_s=2)})
        from core import bus
        from core.keys import Keys

        keys = Keys(wprefix)
        r = bus.connect(settings.redis)
        server, ingest = start_camera(tmp_path, env, rtsp_server_factory(clip640, shared=True), procs)
        try:
            wt = start_worker(settings=settings)
            wait_for(lambda: r.xlen(keys.events) >= 3, timeout=40, what="events before the restart")
            before = max(e.frame.seq for e in read_events(r, keys.events))
            redis_srv.stop()
            time.sleep(1.0)
            redis_srv.start()
            wait_for(lambda: _max_seq(r, keys) > before + 5, timeout=40, what="events after the restart")
            assert ingest.alive() and wt.thread.is_alive()
            assert wt.worker.stats["redis_errors"] >= 1
        finally:
            server.stop()
            r.close()
    finally:
        redis_srv.close()


def _max_seq(r, keys) -> int:
    try:
        evs = read_events(r, keys.events)
    except Exception:
        return -1
    return max((e.frame.seq for e in evs), default=-1)
