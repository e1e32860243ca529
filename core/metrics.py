"""Prometheus metrics shared by the roles.

All facestream metrics live in one registry (``REGISTRY``) so a process that runs several roles
(``facestream demo``) exposes them on one /metrics. Names: ``facestream_<role>_<what>[_unit][_total]``.

Roles define their own metrics with the idempotent helpers (safe on re-import and in tests)::

    from core import metrics
    FRAMES = metrics.counter("ingest_frames_total", "Frames decoded", ["camera"])
    FRAMES.labels(camera=cam).inc()

``render()`` returns (body, content_type) for an HTTP /metrics handler; ``serve(port, host)`` starts
prometheus_client's own HTTP server on REGISTRY.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

NAMESPACE = "facestream"
REGISTRY = CollectorRegistry(auto_describe=True)

# Latency buckets in seconds: 1 ms .. 10 s (frame pipeline latencies).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

_lock = threading.Lock()
_metrics: dict[str, object] = {}


def metric_name(name: str) -> str:
    """'worker_batches_total' -> 'facestream_worker_batches_total' (idempotent)."""
    return name if name.startswith(NAMESPACE + "_") else f"{NAMESPACE}_{name}"


def _get_or_create(cls, name: str, doc: str, labels: Sequence[str], **kw):
    full = metric_name(name)
    with _lock:
        m = _metrics.get(full)
        if m is None:
            m = cls(full, doc, list(labels), registry=REGISTRY, **kw)
            _metrics[full] = m
        elif not isinstance(m, cls) or tuple(m._labelnames) != tuple(labels):
            raise ValueError(f"metric {full} already defined as {type(m).__name__}{tuple(m._labelnames)}")
        return m


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    return _get_or_create(Counter, name, doc, labels)


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    return _get_or_create(Gauge, name, doc, labels)


def histogram(
    name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
) -> Histogram:
    return _get_or_create(Histogram, name, doc, labels, buckets=tuple(buckets))


def remove_series(metric, label: str, value: str) -> int:
    """Remove every child of ``metric`` whose ``label`` is ``value`` (whatever its other labels):
    a camera that goes away must not leave series behind. Returns how many were removed."""
    names = list(metric._labelnames)  # prometheus_client keeps children keyed by label-value tuples
    if label not in names:
        return 0
    i = names.index(label)
    with metric._lock:
        gone = [k for k in metric._metrics if k[i] == value]
    for k in gone:
        metric.remove(*k)
    return len(gone)


def render() -> tuple[bytes, str]:
    """(body, content type) of the /metrics page."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# -- shared metrics ---------------------------------------------------------------------------------

BUILD_INFO = Info(metric_name("build"), "facestream version and role", registry=REGISTRY)


def set_build_info(role: str) -> None:
    """facestream_build_info{version, role}: which release a scraped process runs."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("facestream")
    except PackageNotFoundError:  # a source tree that was never installed
        v = "0+unknown"
    BUILD_INFO.info({"version": v, "role": role})

REDIS_ERRORS = counter("redis_errors_total", "Redis command failures", ["role", "op"])
FRAMES_DROPPED = counter(
    "frames_dropped_total",
    "Frames dropped, by reason (stale, expired_payload, queue_full, decode_error, dead_letter)",
    ["camera", "reason"],
)
STREAM_LENGTH = gauge("stream_length", "Length of a Redis stream (XLEN), sampled", ["stream"])
FRAME_AGE = histogram("frame_age_seconds", "Capture to processing time of a frame, by stage", ["stage"])
