"""Detector workers: consume FrameRefs from the frames stream (consumer group), batch them across
cameras, run the detector, publish one DetectionEvent per frame, ack.

Modules: ``consumer`` (group reads, reclaim, dead letters), ``batcher`` (max batch / max wait),
``pipeline`` (payload decode -> detector -> original pixels -> events), ``publisher`` (atomic
publish + ack, idempotent), ``health`` (/healthz, /metrics), ``main`` (run loop, signals).
See docs/worker.md.
"""
