"""core.metrics: idempotent helpers, shared registry, exposition."""

from __future__ import annotations

import pytest

from core import metrics


def test_helpers_are_idempotent_and_prefixed():
    c = metrics.counter("test_things_total", "things", ["camera"])
    assert metrics.counter("test_things_total", "things", ["camera"]) is c
    c.labels(camera="cam1").inc(2)
    body, ctype = metrics.render()
    assert b'facestream_test_things_total{camera="cam1"} 2.0' in body and "text/plain" in ctype
    with pytest.raises(ValueError):
        metrics.gauge("test_things_total", "things", ["camera"])


def test_shared_metrics_exist():
    metrics.FRAMES_DROPPED.labels(camera="c", reason="stale").inc()
    metrics.FRAME_AGE.labels(stage="queue").observe(0.02)
    body, _ = metrics.render()
    for name in (b"facestream_frames_dropped_total", b"facestream_frame_age_seconds_bucket",
                 b"facestream_redis_errors_total", b"facestream_stream_length"):
        assert name in body
